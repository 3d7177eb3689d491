"""Budget tiers (one YAML per tier), shipped with ccbench as package data."""
