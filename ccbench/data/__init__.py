"""Datasets: image splits decoded into a uint8 cache, augmentation, GLUE/IMDB/Amazon text splits,
corruptions and shift splits, and where a task's data comes from. Imports only ``ccbench.common``."""
