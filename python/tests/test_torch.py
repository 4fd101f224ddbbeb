"""torch integration on every available device: torch.library.opcheck of both ops, torch.compile(fullgraph=True)
of a small block (projection, tfla, per-head norm) against eager, dynamic shapes, the current stream."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reference as R
import tfla
from conftest import DEVICES

VARIANTS = [("exp", True), ("sig", True), ("sig", False)]
VARIANT_IDS = ["exp", "sig", "sig_nonorm"]


def _fwd_args(device, dtype, variant, normalize, state, requires_grad=True, S=70, Dk=16, Dv=24, seq_major=False):
    inp = R.random_inputs(2, 3, S, Dk, Dv, dtype=dtype, gate_dtype=torch.float32, state=state, device=device, seed=21)
    if seq_major:  # (B, S, H, D) memory, viewed as (B, H, S, D)
        for k in "qkvif":
            inp[k] = inp[k].transpose(1, 2).contiguous().transpose(1, 2)
    for k in ("q", "k", "v", "i", "f", "c0", "n0"):
        if k in inp:
            inp[k].requires_grad_(requires_grad)
    chunk = 64 if device == "cuda" else 16
    return (inp["q"], inp["k"], inp["v"], inp["i"], inp["f"], inp.get("c0"), inp.get("n0"), inp.get("m0"),
            0 if variant == "exp" else 1, normalize, 0.0, 1e-6, chunk, state, seq_major)


@pytest.mark.parametrize("seq_major", [False, True], ids=["bhsd", "bshd"])
@pytest.mark.parametrize("state", [False, True], ids=["nostate", "state"])
@pytest.mark.parametrize("variant,normalize", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_forward(device, variant, normalize, state, seq_major):
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    args = _fwd_args(device, dtype, variant, normalize, state, seq_major=seq_major)
    torch.library.opcheck(torch.ops.tfla.mlstm_fwd.default, args)


@pytest.mark.parametrize("mask", [0b1111111, 0b0000101, 0b1100000])
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_backward(device, mask):
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    args = _fwd_args(device, dtype, "exp", True, True, requires_grad=False)
    h, c, n, m, mt, dt = torch.ops.tfla.mlstm_fwd(*args)
    dh = torch.randn_like(h)
    bargs = args[:8] + (mt, dt, dh, torch.randn_like(c), torch.randn_like(n)) + args[8:13] + (mask, False)
    torch.library.opcheck(torch.ops.tfla.mlstm_bwd.default, bargs)


class Block(nn.Module):
    """Projection -> tfla.mlstm (sequence-major, no transposes) -> per-head LayerNorm -> output projection."""

    def __init__(self, d=32, heads=2, dk=16, dv=16, variant="exp", normalize=True, chunk_size=None):
        super().__init__()
        self.h, self.dk, self.dv = heads, dk, dv
        self.qkv = nn.Linear(d, heads * (2 * dk + dv))
        self.gates = nn.Linear(d, 2 * heads)
        self.norm_w = nn.Parameter(torch.ones(heads, dv))
        self.out = nn.Linear(heads * dv, d)
        self.variant, self.normalize, self.chunk_size = variant, normalize, chunk_size

    def forward(self, x):
        B, S, _ = x.shape
        H, dk, dv = self.h, self.dk, self.dv
        qkv = self.qkv(x)
        q = qkv[..., : H * dk].view(B, S, H, dk)
        k = qkv[..., H * dk: 2 * H * dk].view(B, S, H, dk)
        v = qkv[..., 2 * H * dk:].view(B, S, H, dv)
        i, f = self.gates(x).float().chunk(2, dim=-1)
        h = tfla.mlstm(q, k, v, i, f + 3.0, variant=self.variant, normalize=self.normalize, layout="bshd",
                       chunk_size=self.chunk_size)
        h = F.layer_norm(h.float(), (dv,)) * self.norm_w
        return self.out(h.to(x.dtype).reshape(B, S, H * dv))


def _run_block(block, x, fn=None):
    block.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y = (fn if fn is not None else block)(x)
    y.pow(2).mean().backward()
    grads = {n: p.grad.detach().clone() for n, p in block.named_parameters()}
    return y.detach(), x.grad.detach(), grads


@pytest.mark.parametrize("variant,normalize", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_block_matches_eager(device, variant, normalize, record):
    torch._dynamo.reset()
    block = Block(variant=variant, normalize=normalize).to(device)
    x = torch.randn(2, 100, 32, device=device)
    y0, dx0, g0 = _run_block(block, x)
    compiled = torch.compile(block, fullgraph=True)  # inductor; raises on any graph break
    y1, dx1, g1 = _run_block(block, x, compiled)
    errs = {"y": R.rel_l2(y1, y0), "dx": R.rel_l2(dx1, dx0), **{n: R.rel_l2(g1[n], g0[n]) for n in g0}}
    record(kind="compile", device=device, variant=variant, normalize=normalize, rel_l2=errs)
    for name, e in errs.items():
        assert e < 1e-4, (name, e)


@pytest.mark.parametrize("device", DEVICES)
def test_compile_dynamic_shapes_no_recompile_per_length(device):
    torch._dynamo.reset()
    block = Block().to(device)
    compiled = torch.compile(block, fullgraph=True, dynamic=True, backend="aot_eager")
    for S in (64, 100, 129):
        x = torch.randn(2, S, 32, device=device)
        y0, dx0, _ = _run_block(block, x)
        y1, dx1, _ = _run_block(block, x, compiled)
        assert R.rel_l2(y1, y0) < 1e-5 and R.rel_l2(dx1, dx0) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_compile_with_states(device):
    """Final state returned and an initial state carried, through compile (c0/n0 gradients included)."""
    torch._dynamo.reset()
    inp = R.random_inputs(1, 2, 64, 16, 16, state=True, device=device, seed=22)

    def f(q, k, v, i, f, c0, n0, m0):
        h, (c, n, m) = tfla.mlstm(q, k, v, i, f, c0=c0, n0=n0, m0=m0, return_last_state=True)
        return (h.pow(2).sum() + c.sum() + n.sum()), m

    args = [inp[x].clone().requires_grad_(x != "m0") for x in ("q", "k", "v", "i", "f", "c0", "n0", "m0")]
    l0, m_0 = f(*args)
    g0 = torch.autograd.grad(l0, args[:7])
    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    l1, m_1 = cf(*args)
    g1 = torch.autograd.grad(l1, args[:7])
    assert torch.allclose(l0, l1) and torch.equal(m_0, m_1)
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
