"""PyTorch references of the mLSTM cell for the tests (docs/spec-mlstm.md), with the spec's gradient convention:
the normalizer den and every stabilizer m are held constant (detached).

- recurrent(...): the step equations, one token at a time (fp64 in the tests): the definition.
- parallel(...):  the attention-like form. In fp64 it is the reference for larger problems; in a low-precision
  dtype it is the spec's "plain implementation" of the accuracy rule (input-dtype matrix products with fp32
  accumulation, every scalar op in fp32).
Inputs are (B, H, S, D) / (B, H, S) tensors; states c0 (B, H, Dk, Dv), n0 (B, H, Dk), m0 (B, H).
Both return h, (c_last, n_last, m_last).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def recurrent(q, k, v, i, f, *, variant="exp", normalize=True, c0=None, n0=None, m0=None, scale=None, eps=1e-6):
    B, H, S, Dk = q.shape
    Dv = v.shape[-1]
    dt = q.dtype
    scale = Dk ** -0.5 if scale is None else scale
    exp = variant == "exp"
    C = c0.to(dt) if c0 is not None else torch.zeros(B, H, Dk, Dv, dtype=dt, device=q.device)
    n = n0.to(dt) if n0 is not None else torch.zeros(B, H, Dk, dtype=dt, device=q.device)
    m = (m0.to(dt) if m0 is not None else torch.zeros(B, H, dtype=dt, device=q.device)) if exp else None
    m = m.detach() if m is not None else None
    logf = F.logsigmoid(f.to(dt))
    iota = i.to(dt) if exp else F.logsigmoid(i.to(dt))
    hs = []
    for t in range(S):
        phi, io = logf[:, :, t], iota[:, :, t]
        if exp:
            m_new = torch.maximum(phi + m, io).detach()
            fa = torch.exp(phi + m - m_new)
            ia = torch.exp(io - m_new)
            m = m_new
        else:
            fa, ia = torch.exp(phi), torch.exp(io)
        kt, vt = k[:, :, t].to(dt), v[:, :, t].to(dt)
        C = fa[..., None, None] * C + ia[..., None, None] * (kt[..., :, None] * vt[..., None, :])
        n = fa[..., None] * n + ia[..., None] * kt
        qt = q[:, :, t].to(dt) * scale
        num = torch.einsum("bhk,bhkv->bhv", qt, C)
        if exp or normalize:
            nq = (n * qt).sum(-1)
            lower = torch.exp(-m) if exp else torch.ones_like(nq)
            den = torch.maximum(nq.abs(), lower).detach()
            hs.append(num / (den + eps)[..., None])
        else:
            hs.append(num)
    h = torch.stack(hs, dim=2)
    m_last = m if exp else torch.zeros(B, H, dtype=dt, device=q.device)
    return h, (C, n, m_last)


def parallel(q, k, v, i, f, *, variant="exp", normalize=True, c0=None, n0=None, m0=None, scale=None, eps=1e-6):
    """Parallel form. fp64 inputs: computed in fp64. Low-precision inputs (q, k, v in x): the plain
    implementation, matrix products on x operands (fp32 accumulation), everything else in fp32; outputs h in
    x, states fp32."""
    B, H, S, Dk = q.shape
    Dv = v.shape[-1]
    x = q.dtype
    acc = torch.float64 if x == torch.float64 else torch.float32
    scale = Dk ** -0.5 if scale is None else scale
    exp = variant == "exp"
    dev = q.device
    logf = F.logsigmoid(f.to(acc))
    iota = i.to(acc) if exp else F.logsigmoid(i.to(acc))
    Fc = torch.cumsum(logf, dim=-1)  # (B, H, S)
    m0v = (m0.to(acc) if m0 is not None else torch.zeros(B, H, dtype=acc, device=dev)) if exp else \
        torch.zeros(B, H, dtype=acc, device=dev)
    m0v = m0v.detach()
    logD = Fc[..., :, None] - Fc[..., None, :] + iota[..., None, :]  # (B, H, t, s)
    mask = torch.ones(S, S, dtype=torch.bool, device=dev).tril()
    logD = logD.masked_fill(~mask, -math.inf)
    w0 = Fc + m0v[..., None]  # log-weight of the initial state
    if exp:
        m = torch.maximum(logD.max(dim=-1).values, w0).detach()
    else:
        m = torch.zeros(B, H, S, dtype=acc, device=dev)
    E = torch.exp(logD - m[..., None])
    e0 = torch.exp(w0 - m)

    def mm(a, b):  # a matrix product: operands rounded to x, accumulated (and returned) in acc
        return torch.matmul(a.to(x).to(acc), b.to(x).to(acc))

    qk = mm(q, k.transpose(-1, -2)) * scale
    P = qk * E
    c0x = c0 if c0 is not None else torch.zeros(B, H, Dk, Dv, dtype=acc, device=dev)
    n0x = n0 if n0 is not None else torch.zeros(B, H, Dk, dtype=acc, device=dev)
    qn0 = mm(q, n0x[..., None])[..., 0]
    nq = scale * e0 * qn0 + P.sum(-1)
    if exp or normalize:
        lower = torch.exp(-m) if exp else torch.ones_like(nq)
        den = torch.maximum(nq.abs(), lower).detach()
        div = den + eps
    else:
        div = torch.ones_like(nq)
    intra = mm(P / div[..., None], v)
    inter = mm(q, c0x) * (scale * e0 / div)[..., None]
    h = (intra + inter).to(x)
    # final state
    m_last = m[..., -1]
    fin = torch.exp(Fc[..., -1:] - Fc + iota - m_last[..., None])  # (B, H, S)
    fin0 = torch.exp(Fc[..., -1] + m0v - m_last)
    kf = (k.to(acc) * fin[..., None]).to(x)
    c_last = mm(kf.transpose(-1, -2), v)
    n_last = kf.to(acc).sum(-2)
    if c0 is not None:
        c_last = c_last + fin0[..., None, None] * c0.to(acc)
    if n0 is not None:
        n_last = n_last + fin0[..., None] * n0.to(acc)
    if not exp:
        m_last = torch.zeros_like(m_last)
    return h, (c_last, n_last, m_last)


def random_inputs(B, H, S, Dk, Dv, *, dtype=torch.float32, gate_dtype=None, device="cpu", seed=0, state=False,
                  fgate_bias=3.0, igate_scale=1.0):
    """q, k, v ~ N(0, 1); i ~ N(0, igate_scale); f ~ fgate_bias + N(0, 1); optional c0, n0, m0 (fp32).
    Values are rounded to their dtypes; returns a dict of leaf tensors."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    gate_dtype = gate_dtype or dtype

    def rnd(*shape, dt, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dt).to(device)

    d = dict(q=rnd(B, H, S, Dk, dt=dtype), k=rnd(B, H, S, Dk, dt=dtype), v=rnd(B, H, S, Dv, dt=dtype),
             i=rnd(B, H, S, dt=gate_dtype, scale=igate_scale), f=rnd(B, H, S, dt=gate_dtype, shift=fgate_bias))
    if state:
        d["c0"] = rnd(B, H, Dk, Dv, dt=torch.float32, scale=0.5)
        d["n0"] = rnd(B, H, Dk, dt=torch.float32, scale=0.5)
        d["m0"] = rnd(B, H, dt=torch.float32)
    return d


def f64(t):
    return None if t is None else t.detach().to(torch.float64).requires_grad_(t.requires_grad)


def rel_l2(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    nb = b.norm().item()
    d = (a - b).norm().item()
    return d / nb if nb > 0 else d


def max_abs(a, b) -> float:
    return (a.detach().double() - b.detach().double()).abs().max().item()


def rms(a, b) -> float:
    return (a.detach().double() - b.detach().double()).pow(2).mean().sqrt().item()
