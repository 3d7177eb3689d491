"""Drivers, one per command: ``run`` (``runner``), ``shift``, ``transfer``, ``bench`` (and its
profile) and ``sweep`` (spec, jobs, claims, executors). They reach methods through the registry only."""
