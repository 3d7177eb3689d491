"""Built-in methods: one file per method, each with a literal ``METADATA`` dict and ``build``."""
