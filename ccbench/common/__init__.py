"""Foundations every layer may import, none of them torch at import time: one-line user errors,
safe names, progress messages, atomic and safe (safetensors) files, provenance, the YAML specs (tasks,
budget tiers), the registries (methods, tasks, budgets, backbones, metrics) with the metrics themselves
(numpy), and the transfer protocols as data. Imports nothing else of ccbench."""
