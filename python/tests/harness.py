"""Run tfla.mlstm and the references on the same inputs and output gradients; the accuracy rule."""
from __future__ import annotations

import torch

import reference as R
import tfla

GRAD_NAMES = ("q", "k", "v", "i", "f", "c0", "n0")


def output_grads(inp, *, seed=1, state_grads=True):
    """dh (dtype of v), dc_last, dn_last (fp32, or None) for the inputs of random_inputs()."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    B, H, S, Dv = inp["v"].shape
    Dk = inp["q"].shape[-1]
    dev = inp["v"].device
    dh = torch.randn(B, H, S, Dv, generator=g, dtype=torch.float64).to(inp["v"].dtype).to(dev)
    if not state_grads:
        return dh, None, None
    dc = torch.randn(B, H, Dk, Dv, generator=g, dtype=torch.float64).float().to(dev)
    dn = torch.randn(B, H, Dk, generator=g, dtype=torch.float64).float().to(dev)
    return dh, dc, dn


def _leaves(inp, dtype=None):
    out = {}
    for name, t in inp.items():
        x = t.detach().clone()
        if dtype is not None:
            x = x.to(dtype)
        out[name] = x.requires_grad_(name != "m0")
    return out


def _grads(outs, leaves, dh, dc, dn):
    h, (c, n, _) = outs
    targets = [h] + ([c] if dc is not None else []) + ([n] if dn is not None else [])
    gouts = [dh.to(h.dtype)] + ([dc.to(c.dtype)] if dc is not None else []) + ([dn.to(n.dtype)] if dn is not None else [])
    names = [k for k in GRAD_NAMES if k in leaves]
    gr = torch.autograd.grad(targets, [leaves[k] for k in names], gouts, allow_unused=True)
    return dict(zip(names, gr))


def run_tfla(inp, dh, dc, dn, *, variant="exp", normalize=True, layout="bhsd", chunk_size=None, eps=1e-6,
             scale=None):
    """Outputs {h, c, n, m} and gradients {q, k, v, i, f, c0, n0}, all in (B, H, ...) order."""
    leaves = _leaves(inp)
    kw = dict(variant=variant, normalize=normalize, c0=leaves.get("c0"), n0=leaves.get("n0"), m0=leaves.get("m0"),
              return_last_state=True, chunk_size=chunk_size, eps=eps, scale=scale)
    if layout == "bshd":
        # sequence-major leaves: the gradients come back in that layout too
        sm = {k: leaves[k].detach().transpose(1, 2).contiguous().requires_grad_(True) for k in "qkvif"}
        h, st = tfla.mlstm(sm["q"], sm["k"], sm["v"], sm["i"], sm["f"], layout="bshd", **kw)
        h = h.transpose(1, 2)
        grads = _grads((h, st), {**leaves, **sm}, dh, dc, dn)
        for k in "qkvif":
            grads[k] = grads[k].transpose(1, 2)
    else:
        h, st = tfla.mlstm(leaves["q"], leaves["k"], leaves["v"], leaves["i"], leaves["f"], **kw)
        grads = _grads((h, st), leaves, dh, dc, dn)
    c, n, m = st
    return dict(h=h.detach(), c=c.detach(), n=n.detach(), m=m.detach()), grads


def run_reference(fn, inp, dh, dc, dn, *, variant="exp", normalize=True, eps=1e-6, scale=None, dtype=None):
    """fn = reference.recurrent or reference.parallel; dtype=torch.float64 for the fp64 reference, None to run
    in the inputs' own dtypes (the plain implementation)."""
    leaves = _leaves(inp, dtype)
    outs = fn(leaves["q"], leaves["k"], leaves["v"], leaves["i"], leaves["f"], variant=variant, normalize=normalize,
              c0=leaves.get("c0"), n0=leaves.get("n0"), m0=leaves.get("m0"), eps=eps, scale=scale)
    grads = _grads(outs, leaves, dh, dc, dn)
    h, (c, n, m) = outs
    return dict(h=h.detach(), c=c.detach(), n=n.detach(), m=m.detach()), grads


def accuracy_rule(name, kernel, plain, ref, factor=2.0, abs_tol=1e-5):
    """The spec's rule, max-abs and RMS: err(kernel) <= factor * err(plain) + abs_tol. Returns (ok, info)."""
    if kernel is None or ref is None:
        return kernel is None and ref is None, {"name": name, "missing": True}
    finite = bool(torch.isfinite(kernel).all())
    info = {"name": name, "finite": finite}
    ok = finite
    for metric, fn in (("max_abs", R.max_abs), ("rms", R.rms)):
        ek, ep = fn(kernel, ref), fn(plain, ref)
        bound = factor * ep + abs_tol
        info[metric] = {"kernel": ek, "plain": ep, "bound": bound, "ratio": ek / bound if bound else float("inf")}
        ok = ok and ek <= bound
    if finite:  # where the kernel is worst: index, values and the magnitude of the output (for diagnosis)
        err = (kernel.detach().double() - ref.detach().double()).abs()
        at = int(err.reshape(-1).argmax())
        idx = tuple(int(x) for x in torch.unravel_index(torch.tensor(at), err.shape))
        flat = lambda t: t.detach().double().reshape(-1)[at].item()  # noqa: E731
        info["worst"] = {"index": idx, "kernel": flat(kernel), "ref": flat(ref), "plain": flat(plain),
                         "ref_absmax": ref.detach().double().abs().max().item()}
    info["ok"] = ok
    return ok, info
