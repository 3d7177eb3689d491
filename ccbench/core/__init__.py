"""The shared machinery methods are built from: the method protocol (``ConditionalModel``,
``MethodOutput``), dense image backbones and text encoders, the per-sample decision trace, the sampler,
token operations and exit heads. Imports only ``ccbench.common``."""
