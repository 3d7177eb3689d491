"""Task specs (one versioned YAML per task), shipped with ccbench as package data."""
