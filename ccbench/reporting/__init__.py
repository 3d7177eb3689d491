"""Reporting: typed records and their atomic commit, the column registry, tables, shift/transfer
tables, the leaderboard, the checkpoint manifest, markdown escaping and plots. Reads JSON; imports only
``ccbench.common`` and itself: never torch, timm, transformers, fvcore or the run side."""
