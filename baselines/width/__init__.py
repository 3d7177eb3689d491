"""The width family's shared pieces, beside its methods (``baselines/moe_topk.py``,
``moe_expert_choice.py``, ``soft_moe.py``, ``moefication.py``): the MoE layers (``moe``) and the model
whose chosen MLPs they replace (``moe_model``). A folder, not a ``.py`` file, so the method catalog does
not list it as a method."""
