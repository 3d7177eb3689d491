"""Measurement: what an evaluated split costs and shows. Useful MACs from traces (``cost``), the
compute summary and executed-MACs audit (``measure``), latency, statistics, routing statistics, the
families' shift/transfer analyses and the evaluation loop. Imports ``common``, ``core`` and ``data``;
never the run side, a driver, reporting or a method."""
