"""Hand-computed MACs on toy networks, against the cost table and fvcore's count of what ran.

Each toy is small enough to count by hand: D = 8 channels, MLP hidden 16, n = 5 tokens."""
import torch
from torch import nn

from ccbench.core.backbones import ViTBackbone, ViTConfig
from ccbench.core.trace import Trace
from ccbench.measurement.cost import CostTable, executed_macs, useful_macs

D, H, N_PATCH = 8, 16, 4           # 16 px / patch 8 -> 4 patches, 5 tokens with the class token
CFG = ViTConfig(img_size=16, patch_size=8, embed_dim=D, depth=2, num_heads=2, mlp_ratio=H / D, num_classes=3)
N = N_PATCH + 1
LN = 5 * D                          # fvcore: 5 MACs per LayerNorm element
BLOCK = N * (LN + 3 * D * D + D * D + LN + 2 * D * H) + 2 * N * N * D   # one block on N tokens, by hand
PATCH = N_PATCH * (3 * 8 * 8) * D
HEAD = LN + D * 3


def _backbone() -> ViTBackbone:
    torch.manual_seed(0)
    return ViTBackbone(CFG).eval()


def test_hand_counts_match_the_table():
    t = CostTable.from_config(CFG)
    assert (t.block(N), t.patch_embed, t.head) == (BLOCK, PATCH, HEAD)
    assert t.dense_macs() == PATCH + 2 * BLOCK + HEAD


def test_linear_layer():
    assert executed_macs(nn.Linear(7, 5), torch.randn(3, 7)).macs == 3 * 7 * 5


def test_one_attention_block_at_n_tokens():
    block = _backbone().blocks[0]
    for n in (1, 5, 9):
        assert executed_macs(block, torch.randn(1, n, D)).macs == CostTable.from_config(CFG).block(n)
    assert executed_macs(block, torch.randn(1, N, D)).macs == BLOCK


class _DropThenRun(nn.Module):
    """Block 0 on all tokens, then keep the class token and 2 patches for block 1."""

    def __init__(self):
        super().__init__()
        self.bb = _backbone()

    def forward(self, images):
        x = self.bb.blocks[0](self.bb.embed(images))
        x = self.bb.blocks[1](x[:, :3])
        return self.bb.classify(x[:, 0])


def test_token_drop():
    trace = Trace({"tokens_per_block": torch.tensor([[N, 3]])})
    hand = PATCH + BLOCK + (3 * (2 * LN + 4 * D * D + 2 * D * H) + 2 * 9 * D) + HEAD
    assert useful_macs(CostTable.from_config(CFG), trace).item() == hand
    assert executed_macs(_DropThenRun(), torch.randn(1, 3, 16, 16)).macs == hand


E = 4  # experts


class _Top1MoEBlock(nn.Module):
    """Block 0 with its MLP replaced by a top-1 mixture of E experts (hidden H each); tokens are
    sorted by expert and each expert runs only on its own tokens."""

    def __init__(self):
        super().__init__()
        self.bb = _backbone()
        self.router = nn.Linear(D, E, bias=False)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(D, H), nn.GELU(), nn.Linear(H, D)) for _ in range(E))
        self.routed = None

    def forward(self, images):
        blk = self.bb.blocks[0]
        x = self.bb.embed(images)
        x = x + blk.attn(blk.norm1(x))
        h = blk.norm2(x)[0]                                  # [N, D], batch 1
        expert = self.router(h).argmax(-1)
        order = expert.argsort()
        counts = torch.bincount(expert, minlength=E).tolist()
        self.routed = counts
        outs, start = [], 0
        for e, c in enumerate(counts):
            if c:
                outs.append(self.experts[e](h[order[start:start + c]]))
            start += c
        y = torch.empty_like(h).index_copy(0, order, torch.cat(outs))
        x = x + y[None]
        return self.bb.classify(x[:, 0])


def test_top1_moe_dispatch():
    toy = _Top1MoEBlock().eval()
    images = torch.randn(1, 3, 16, 16)
    executed = executed_macs(toy, images).macs
    assert sum(toy.routed) == N  # top-1: every token runs exactly one expert
    units = {"moe_token": LN + D * E, "expert_token": 2 * D * H}      # norm2 + router; one expert row
    table = CostTable.from_config(CFG, units=units)
    trace = Trace({"tokens_per_block": torch.tensor([[N, 0]]), "mlp_tokens_per_block": torch.tensor([[0, 0]]),
                   "units/moe_token": torch.tensor([N]), "units/expert_token": torch.tensor([N])})
    attn_part = N * (LN + 4 * D * D) + 2 * N * N * D
    hand = PATCH + attn_part + N * (LN + D * E) + N * 2 * D * H + HEAD
    assert useful_macs(table, trace).item() == hand == executed


class _ExitAfterBlock0(nn.Module):
    """Exit head (LayerNorm + linear on the class token) after block 0; leave there when
    ``exit_now``, else run block 1 and the final classifier."""

    def __init__(self, exit_now: bool):
        super().__init__()
        self.bb = _backbone()
        self.exit_head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, 3))
        self.exit_now = exit_now

    def forward(self, images):
        x = self.bb.blocks[0](self.bb.embed(images))
        early = self.exit_head(x[:, 0])
        if self.exit_now:
            return early
        x = self.bb.blocks[1](x)
        return self.bb.classify(x[:, 0]) + 0 * early   # the head ran: keep it in the graph


def test_early_exit_at_block1_and_at_the_end():
    table = CostTable.from_config(CFG, units={"exit_head": HEAD})
    images = torch.randn(1, 3, 16, 16)
    at_block1 = Trace({"tokens_per_block": torch.tensor([[N, 0]]), "final_head_runs": torch.tensor([0]),
                       "units/exit_head": torch.tensor([1])})
    at_end = Trace({"tokens_per_block": torch.tensor([[N, N]]), "final_head_runs": torch.tensor([1]),
                    "units/exit_head": torch.tensor([1])})
    assert useful_macs(table, at_block1).item() == PATCH + BLOCK + HEAD
    assert useful_macs(table, at_end).item() == PATCH + 2 * BLOCK + 2 * HEAD
    assert executed_macs(_ExitAfterBlock0(True), images).macs == PATCH + BLOCK + HEAD
    assert executed_macs(_ExitAfterBlock0(False), images).macs == PATCH + 2 * BLOCK + 2 * HEAD


def test_skipped_block_is_counted_as_zero():
    bb = _backbone()
    trace = Trace({"tokens_per_block": torch.tensor([[N, 0]])})
    assert useful_macs(CostTable.from_config(CFG), trace).item() == PATCH + BLOCK + HEAD

    class SkipSecond(nn.Module):
        def __init__(self):
            super().__init__()
            self.bb = bb

        def forward(self, images):
            return self.bb.classify(self.bb.blocks[0](self.bb.embed(images))[:, 0])

    assert executed_macs(SkipSecond(), torch.randn(1, 3, 16, 16)).macs == PATCH + BLOCK + HEAD


class _BranchOnlyHead(_ExitAfterBlock0):
    """The exit head's output only decides a branch (the early-exit pattern) and is then dropped."""

    def forward(self, images):
        x = self.bb.blocks[0](self.bb.embed(images))
        if bool(self.exit_head(x[:, 0]).softmax(-1).max() > 2.0):  # never true: run on
            return x[:, 0, :3]
        return self.bb.classify(self.bb.blocks[1](x)[:, 0])


def test_fvcore_drops_a_head_that_only_drives_a_branch():
    """The trap the trace-derived count exists for: fvcore misses the head, the trace does not."""
    executed = executed_macs(_BranchOnlyHead(False), torch.randn(1, 3, 16, 16)).macs
    assert executed == PATCH + 2 * BLOCK + HEAD  # one head short: the exit head vanished
    table = CostTable.from_config(CFG, units={"exit_head": HEAD})
    trace = Trace({"tokens_per_block": torch.tensor([[N, N]]), "units/exit_head": torch.tensor([1])})
    assert useful_macs(table, trace).item() == PATCH + 2 * BLOCK + 2 * HEAD
