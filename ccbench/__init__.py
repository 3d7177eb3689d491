"""ccbench: benchmark for conditional computation."""
__version__ = "0.1.0"
