"""The run side: budgeted training, backbone pretraining and distillation (teacher, mimetic
init), data-parallel training, the trained-model store, compute knobs, a modality's workload and the
run context with its record header. Imports ``common``, ``core``, ``data``, ``measurement`` and, of
reporting, only ``records``/``record_schema``; never a driver or a method directly."""
