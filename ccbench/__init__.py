"""ccbench: benchmark for conditional computation."""
__version__ = "0.2.0"
