"""The mLSTM cell as torch.library custom ops over the C ABI, with fake (meta) kernels and autograd.

Ops (namespace `tfla`):
  tfla::mlstm_fwd(q, k, v, i, f, c0?, n0?, m0?, variant, normalize, scale, eps, chunk_size, want_last, seq_major)
      -> (h, c_last, n_last, m_last, m_token, den_token)
  tfla::mlstm_bwd(q, k, v, i, f, c0?, n0?, m0?, m_token, den_token, dh, dc_last?, dn_last?,
                  variant, normalize, scale, eps, chunk_size, grad_mask, seq_major)
      -> (dq, dk, dv, di, df, dc0, dn0)
Shapes are the spec's (B, H, S, D) logical shapes with any strides the backend accepts; `tfla.mlstm` is the
user-facing function (argument checks, layouts, state dtypes). scale 0 and chunk_size 0 select the
library's defaults (Dk^-1/2; the backend's chunk size). With want_last False, c_last/n_last/m_last come back
empty (0 elements). grad_mask bits 0..6 select dq, dk, dv, di, df, dc0, dn0; unselected ones come back
empty. m_token/den_token are the per-token stabilizer and normalizer the backward consumes (fp32).
seq_major: h, dq, dk, dv (and di, df) are allocated in (B, S, H, D) memory order (returned as (B, H, S, D)
views), else in (B, H, S, D) order. The output layout depends on this flag only, never on the inputs'
strides, so the fake kernels agree with the real ones whatever strides the compiler picks for the inputs.

Gradients are the spec's (docs/spec-mlstm.md, "Gradients"): exact derivatives of h, c_last and n_last with
den and every m held constant; m0 gets no gradient, nor do m_last, m_token and den_token.

On CUDA, q/k/v/dh views whose strides the kernels cannot take (last dim not contiguous, rows not 16-byte
aligned) are copied to contiguous memory inside the op; CPU takes any strides.
"""
import ctypes
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from . import _lib

_DTYPES = {torch.float32: _lib.DTYPE_F32, torch.bfloat16: _lib.DTYPE_BF16, torch.float16: _lib.DTYPE_F16}
_VARIANTS = {"exp": _lib.VARIANT_EXP, "sig": _lib.VARIANT_SIG}

# (No `from __future__ import annotations` in this file: torch < 2.5 cannot read string annotations of custom ops.)

# Tests set this to fill every output with NaN before the library runs (the spec: every output element must
# be written). Not for production use: it costs one fill per output.
POISON_OUTPUTS = False

# grad_mask bits of tfla::mlstm_bwd
GRAD_Q, GRAD_K, GRAD_V, GRAD_I, GRAD_F, GRAD_C0, GRAD_N0 = (1 << b for b in range(7))
GRAD_ALL = (1 << 7) - 1


# --------------------------------------------------------------------------------------------- helpers
def _cuda_rows_ok(t: Tensor) -> bool:
    """Stride rule of the CUDA backend for q, k, v, h, dh, dq, dk, dv (alignment of the data is checked apart)."""
    if t.stride(-1) != 1:
        return False
    vec = 16 // t.element_size()
    return all(s % vec == 0 for s in t.stride()[:-1])


def _cuda_ready(t: Tensor) -> Tensor:
    """t itself when the CUDA backend can read it in place, else a contiguous copy."""
    if _cuda_rows_ok(t) and t.data_ptr() % 16 == 0:
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _alloc(shape, dtype: torch.dtype, device: torch.device, seq_major: bool) -> Tensor:
    """A new tensor of logical shape (B, H, S[, D]); seq_major: stored in (B, S, H[, D]) order."""
    if not seq_major:
        return torch.empty(shape, dtype=dtype, device=device)
    perm = [0, 2, 1] + list(range(3, len(shape)))
    return torch.empty([shape[d] for d in perm], dtype=dtype, device=device).transpose(1, 2)


def _view(t: Optional[Tensor]) -> _lib.Tensor:
    v = _lib.Tensor()
    if t is None:
        return v
    v.data = t.data_ptr()
    v.dtype = _DTYPES[t.dtype]
    for d, s in enumerate(t.stride()):
        v.stride[d] = s
    return v


def _problem(q: Tensor, v: Tensor, variant: int, normalize: bool, scale: float, eps: float,
             chunk_size: int) -> _lib.Problem:
    p = _lib.Problem()
    _lib.lib.tfla_mlstm_problem_init(p)
    p.batch, p.heads, p.seq_len, p.dim_qk = (int(x) for x in q.shape)
    p.dim_v = int(v.shape[-1])
    p.variant = variant
    p.normalize = 1 if normalize else 0
    p.scale = scale
    p.eps = eps
    p.chunk_size = chunk_size
    if q.device.type == "cuda":
        p.device_type = _lib.DEVICE_CUDA
        p.device_index = q.device.index if q.device.index is not None else torch.cuda.current_device()
    else:
        p.device_type = _lib.DEVICE_CPU
        p.device_index = 0
    return p


def _stream(device: torch.device) -> Optional[int]:
    if device.type == "cuda":
        return torch.cuda.current_stream(device).cuda_stream
    return None


def _run(size_fn, run_fn, params, device: torch.device, what: str) -> None:
    """Query the workspace, allocate it from torch (caching allocator; graph-capturable), run on torch's
    current stream."""
    nbytes = ctypes.c_size_t(0)
    _lib.check(size_fn(ctypes.byref(params), ctypes.byref(nbytes)), what)
    n = nbytes.value
    ws = None
    ptr = None
    if n > 0:
        ws = torch.empty(n + 256, dtype=torch.uint8, device=device)  # 256-byte aligned inside
        ptr = (ws.data_ptr() + 255) & ~255
    _lib.check(run_fn(ctypes.byref(params), ptr, n, _stream(device)), what)
    del ws  # the caching allocator keeps the block stream-ordered: safe to release after the launch


def _poison(outs) -> None:
    if POISON_OUTPUTS:
        for t in outs:
            t.fill_(float("nan"))


def _empty0(device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.empty(0, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------- forward op
def _fwd_outputs(q: Tensor, v: Tensor, want_last: bool, seq_major: bool):
    B, H, S, Dk = q.shape
    Dv = v.shape[-1]
    dev = q.device
    h = _alloc(v.shape, v.dtype, dev, seq_major)
    f32 = dict(dtype=torch.float32, device=dev)
    if want_last:
        c_last = torch.empty((B, H, Dk, Dv), **f32)
        n_last = torch.empty((B, H, Dk), **f32)
        m_last = torch.empty((B, H), **f32)
    else:
        c_last, n_last, m_last = _empty0(dev), _empty0(dev), _empty0(dev)
    m_token = torch.empty((B, H, S), **f32)
    den_token = torch.empty((B, H, S), **f32)
    return h, c_last, n_last, m_last, m_token, den_token


@torch.library.custom_op("tfla::mlstm_fwd", mutates_args=())
def mlstm_fwd(q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, c0: Optional[Tensor], n0: Optional[Tensor],
              m0: Optional[Tensor], variant: int, normalize: bool, scale: float, eps: float, chunk_size: int,
              want_last: bool, seq_major: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    outs = _fwd_outputs(q, v, want_last, seq_major)
    _poison(outs)
    h, c_last, n_last, m_last, m_token, den_token = outs
    if q.device.type == "cuda":
        q, k, v = _cuda_ready(q), _cuda_ready(k), _cuda_ready(v)
    p = _lib.FwdParams()
    p.problem = _problem(q, v, variant, normalize, scale, eps, chunk_size)
    for name, t in (("q", q), ("k", k), ("v", v), ("igate", i), ("fgate", f), ("c0", c0), ("n0", n0), ("m0", m0),
                    ("h", h), ("m_token", m_token), ("den_token", den_token)):
        setattr(p, name, _view(t))
    if want_last:
        p.c_last, p.n_last, p.m_last = _view(c_last), _view(n_last), _view(m_last)
    _run(_lib.lib.tfla_mlstm_fwd_workspace_size, _lib.lib.tfla_mlstm_fwd, p, q.device, "tfla_mlstm_fwd")
    return outs


@mlstm_fwd.register_fake
def _mlstm_fwd_fake(q, k, v, i, f, c0, n0, m0, variant, normalize, scale, eps, chunk_size, want_last, seq_major):
    return _fwd_outputs(q, v, want_last, seq_major)


# --------------------------------------------------------------------------------------------- backward op
def _bwd_outputs(q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, grad_mask: int, seq_major: bool):
    B, H, _, Dk = q.shape
    Dv = v.shape[-1]
    dev = q.device
    f32 = dict(dtype=torch.float32, device=dev)

    def pick(bit, make, dtype=torch.float32):
        return make() if grad_mask & bit else _empty0(dev, dtype)

    dq = pick(GRAD_Q, lambda: _alloc(q.shape, q.dtype, dev, seq_major), q.dtype)
    dk = pick(GRAD_K, lambda: _alloc(k.shape, k.dtype, dev, seq_major), k.dtype)
    dv = pick(GRAD_V, lambda: _alloc(v.shape, v.dtype, dev, seq_major), v.dtype)
    di = pick(GRAD_I, lambda: _alloc(i.shape, i.dtype, dev, seq_major), i.dtype)
    df = pick(GRAD_F, lambda: _alloc(f.shape, f.dtype, dev, seq_major), f.dtype)
    dc0 = pick(GRAD_C0, lambda: torch.empty((B, H, Dk, Dv), **f32))
    dn0 = pick(GRAD_N0, lambda: torch.empty((B, H, Dk), **f32))
    return dq, dk, dv, di, df, dc0, dn0


@torch.library.custom_op("tfla::mlstm_bwd", mutates_args=())
def mlstm_bwd(q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, c0: Optional[Tensor], n0: Optional[Tensor],
              m0: Optional[Tensor], m_token: Tensor, den_token: Tensor, dh: Tensor, dc_last: Optional[Tensor],
              dn_last: Optional[Tensor], variant: int, normalize: bool, scale: float, eps: float, chunk_size: int,
              grad_mask: int, seq_major: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    outs = _bwd_outputs(q, k, v, i, f, grad_mask, seq_major)
    if grad_mask == 0:
        return outs
    _poison(outs)
    if q.device.type == "cuda":
        q, k, v, dh = _cuda_ready(q), _cuda_ready(k), _cuda_ready(v), _cuda_ready(dh)
    p = _lib.BwdParams()
    p.problem = _problem(q, v, variant, normalize, scale, eps, chunk_size)
    for name, t in (("q", q), ("k", k), ("v", v), ("igate", i), ("fgate", f), ("c0", c0), ("n0", n0), ("m0", m0),
                    ("m_token", m_token), ("den_token", den_token), ("dh", dh), ("dc_last", dc_last),
                    ("dn_last", dn_last)):
        setattr(p, name, _view(t))
    bits = (GRAD_Q, GRAD_K, GRAD_V, GRAD_I, GRAD_F, GRAD_C0, GRAD_N0)
    for name, bit, t in zip(("dq", "dk", "dv", "digate", "dfgate", "dc0", "dn0"), bits, outs):
        if grad_mask & bit:
            setattr(p, name, _view(t))
    _run(_lib.lib.tfla_mlstm_bwd_workspace_size, _lib.lib.tfla_mlstm_bwd, p, q.device, "tfla_mlstm_bwd")
    return outs


@mlstm_bwd.register_fake
def _mlstm_bwd_fake(q, k, v, i, f, c0, n0, m0, m_token, den_token, dh, dc_last, dn_last, variant, normalize, scale,
                    eps, chunk_size, grad_mask, seq_major):
    return _bwd_outputs(q, k, v, i, f, grad_mask, seq_major)


# --------------------------------------------------------------------------------------------- autograd
def _setup_context(ctx, inputs, output):
    q, k, v, i, f, c0, n0, m0, variant, normalize, scale, eps, chunk_size, want_last, seq_major = inputs
    _, _, _, m_last, m_token, den_token = output
    ctx.save_for_backward(q, k, v, i, f, c0, n0, m0, m_token, den_token)
    ctx.tfla_args = (variant, normalize, scale, eps, chunk_size, seq_major)
    ctx.mark_non_differentiable(m_last, m_token, den_token)


def _backward(ctx, dh, dc_last, dn_last, dm_last, dm_token, dden_token):
    q, k, v, i, f, c0, n0, m0, m_token, den_token = ctx.saved_tensors
    need = ctx.needs_input_grad
    bits = (GRAD_Q, GRAD_K, GRAD_V, GRAD_I, GRAD_F, GRAD_C0, GRAD_N0)
    mask = 0
    for b, n in zip(bits, need[:7]):
        if n:
            mask |= b
    if mask == 0:
        return (None,) * 15
    if dh is None:
        dh = torch.zeros(v.shape, dtype=q.dtype, device=q.device)
    if dc_last is not None and dc_last.numel() == 0:
        dc_last = None
    if dn_last is not None and dn_last.numel() == 0:
        dn_last = None
    if dc_last is not None and dc_last.dtype != torch.float32:
        dc_last = dc_last.float()
    if dn_last is not None and dn_last.dtype != torch.float32:
        dn_last = dn_last.float()
    if dh.dtype != q.dtype:
        dh = dh.to(q.dtype)
    variant, normalize, scale, eps, chunk_size, seq_major = ctx.tfla_args
    grads = torch.ops.tfla.mlstm_bwd(q, k, v, i, f, c0, n0, m0, m_token, den_token, dh, dc_last, dn_last, variant,
                                     normalize, scale, eps, chunk_size, mask, seq_major)
    out = tuple(g if n else None for g, n in zip(grads, need[:7]))
    return out + (None,) * 8  # m0 (no gradient: the stabilizer is held constant) and the non-tensor args


torch.library.register_autograd("tfla::mlstm_fwd", _backward, setup_context=_setup_context)


# --------------------------------------------------------------------------------------------- user function
def _err(msg: str) -> ValueError:
    return ValueError(f"tfla.mlstm: {msg}")


def _shape(t: Tensor) -> tuple:
    return tuple(int(s) for s in t.shape)


def mlstm(q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, *, variant: str = "exp", normalize: bool = True,
          c0: Optional[Tensor] = None, n0: Optional[Tensor] = None, m0: Optional[Tensor] = None,
          return_last_state: bool = False, chunk_size: Optional[int] = None, eps: float = 1e-6,
          scale: Optional[float] = None, layout: str = "bhsd"):
    """The mLSTM cell (docs/spec-mlstm.md) with autograd, on CPU or CUDA tensors.

    Args:
        q, k: queries and keys, (B, H, S, Dk) (layout "bhsd") or (B, S, H, Dk) (layout "bshd").
        v: values, (B, H, S, Dv) or (B, S, H, Dv). q, k, v share one dtype: float32, bfloat16 or float16.
        i, f: input- and forget-gate pre-activations (logits), (B, H, S) or (B, S, H); one dtype of the three.
        variant: "exp" (mLSTMexp, exponential input gate, max-stabilized) or "sig" (mLSTMsig, sigmoid input gate).
        normalize: sig only; False gives h = C^T q without the normalizer. exp always normalizes.
        c0, n0, m0: optional initial state, (B, H, Dk, Dv), (B, H, Dk), (B, H) (m0 may also be (B, H, 1));
            any float dtype (computed in float32); absent = zeros. m0 is ignored by "sig".
        return_last_state: also return the final state (c, n, m) in float32 ((B, H, Dk, Dv), (B, H, Dk), (B, H);
            m is zeros for "sig").
        chunk_size: chunk length L; None = the backend's default (CPU 64, CUDA 128). CUDA needs a multiple of 64.
        eps: added to the normalizer (>= 0). scale: multiplies q; None = Dk^-1/2.
        layout: "bhsd" (default) or "bshd" (sequence-major memory, read through strides without a copy).

    Returns:
        h, in the layout and dtype of v's inputs; with return_last_state, (h, (c_last, n_last, m_last)).

    Gradients flow to q, k, v, i, f, c0, n0 (and through c_last, n_last) with the normalizer and every
    stabilizer held constant (the spec's and mlstm_kernels' convention); m0 gets none.
    The CPU backend computes in float64 (reference grade); CUDA needs Dk and Dv multiples of 8.
    """
    tensors = (("q", q), ("k", k), ("v", v), ("i", i), ("f", f))
    for name, t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"tfla.mlstm: {name} must be a torch.Tensor, got {type(t).__name__}")
    if layout not in ("bhsd", "bshd"):
        raise _err(f"layout is {layout!r}; expected 'bhsd' or 'bshd'")
    if variant not in _VARIANTS:
        raise _err(f"variant is {variant!r}; expected 'exp' or 'sig'")
    if variant == "exp" and not normalize:
        raise _err("normalize=False is defined only for variant='sig' (mLSTMexp always normalizes)")
    if q.dim() != 4:
        raise _err(f"q must have 4 dims, {'(B, H, S, Dk)' if layout == 'bhsd' else '(B, S, H, Dk)'}; got shape "
                   f"{_shape(q)}")
    if layout == "bshd":
        B, S, H, Dk = q.shape
    else:
        B, H, S, Dk = q.shape
    if v.dim() != 4:
        raise _err(f"v must have 4 dims; got shape {_shape(v)}")
    Dv = v.shape[-1]
    names = "B, S, H" if layout == "bshd" else "B, H, S"
    bsh = (B, H, S) if layout == "bhsd" else (B, S, H)
    expect = {"k": (bsh + (Dk,), f"({names}, Dk)"), "v": (bsh + (Dv,), f"({names}, Dv)"),
              "i": (bsh, f"({names})"), "f": (bsh, f"({names})")}
    for name, t in tensors[1:]:
        shp, desc = expect[name]
        if tuple(t.shape) != tuple(shp):
            raise _err(f"{name} has shape {_shape(t)}; expected {desc} = {tuple(int(x) for x in shp)} (from q's shape "
                       f"{_shape(q)}, layout {layout!r})")
    if B < 1 or H < 1 or S < 1 or Dk < 1 or Dv < 1:
        raise _err(f"every size must be >= 1; got B={int(B)}, H={int(H)}, S={int(S)}, Dk={int(Dk)}, Dv={int(Dv)}")
    dev = q.device
    if dev.type not in ("cpu", "cuda", "meta"):
        raise _err(f"q is on device {dev}; tfla runs on 'cpu' and 'cuda' tensors")
    for name, t in tensors[1:]:
        if t.device != dev:
            raise _err(f"{name} is on {t.device}, but q is on {dev}; every tensor must be on one device")
    if q.dtype not in _DTYPES:
        raise _err(f"q has dtype {q.dtype}; expected torch.float32, torch.bfloat16 or torch.float16")
    for name in ("k", "v"):
        t = k if name == "k" else v
        if t.dtype != q.dtype:
            raise _err(f"{name} has dtype {t.dtype}; expected q's dtype {q.dtype} (q, k, v share one dtype)")
    if i.dtype not in _DTYPES:
        raise _err(f"i has dtype {i.dtype}; expected torch.float32, torch.bfloat16 or torch.float16")
    if f.dtype != i.dtype:
        raise _err(f"f has dtype {f.dtype}; expected i's dtype {i.dtype} (the gates share one dtype)")
    if dev.type == "cuda":
        if not _lib.has_cuda():
            raise RuntimeError(
                "tfla.mlstm: the tensors are on CUDA, but this build of tfla has no CUDA backend (it was built "
                "without nvcc): reinstall with the CUDA toolkit present, e.g. `TFLA_CUDA=ON pip install .`")
        if Dk % 8 != 0 or Dv % 8 != 0:
            raise _err(f"the CUDA backend needs Dk and Dv to be multiples of 8; got Dk={int(Dk)} (q), Dv={int(Dv)} (v)")
    if chunk_size is None:
        chunk = 0
    else:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise _err(f"chunk_size is {chunk_size!r}; expected None or an int >= 1")
        if dev.type == "cuda" and chunk_size % 64:
            raise _err(f"chunk_size is {chunk_size}; the CUDA backend needs a multiple of 64 (None picks its default)")
        chunk = chunk_size
    eps = float(eps)
    if not (eps >= 0.0 and eps != float("inf")):
        raise _err(f"eps is {eps}; expected a finite number >= 0")
    if scale is None:
        scale_v = 0.0
    else:
        scale_v = float(scale)
        if scale_v != scale_v or scale_v in (float("inf"), float("-inf")) or scale_v == 0.0:
            raise _err(f"scale is {scale}; expected a finite nonzero number (or None for Dk^-1/2)")

    def state(name, t, shape, desc):
        if t is None:
            return None
        if not isinstance(t, Tensor):
            raise TypeError(f"tfla.mlstm: {name} must be a torch.Tensor or None, got {type(t).__name__}")
        if name == "m0" and t.dim() == 3 and t.shape[-1] == 1:
            t = t.squeeze(-1)  # mlstm_kernels' (B, H, 1)
        if tuple(t.shape) != tuple(shape):
            raise _err(f"{name} has shape {_shape(t)}; expected {desc} = {tuple(int(x) for x in shape)}")
        if t.device != dev:
            raise _err(f"{name} is on {t.device}, but q is on {dev}")
        if not t.is_floating_point():
            raise _err(f"{name} has dtype {t.dtype}; expected a floating dtype (it is used in float32)")
        return t if t.dtype == torch.float32 else t.float()

    c0 = state("c0", c0, (B, H, Dk, Dv), "(B, H, Dk, Dv)")
    n0 = state("n0", n0, (B, H, Dk), "(B, H, Dk)")
    m0 = state("m0", m0, (B, H), "(B, H)")
    if variant == "sig":
        m0 = None  # mLSTMsig has no stabilizer state

    if layout == "bshd":
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        i, f = i.transpose(1, 2), f.transpose(1, 2)

    h, c_last, n_last, m_last, _, _ = torch.ops.tfla.mlstm_fwd(
        q, k, v, i, f, c0, n0, m0, _VARIANTS[variant], bool(normalize), scale_v, eps, chunk, bool(return_last_state),
        layout == "bshd")
    if layout == "bshd":
        h = h.transpose(1, 2)
    if return_last_state:
        return h, (c_last, n_last, m_last)
    return h


def default_chunk_size(device: Union[str, torch.device] = "cpu", *, batch: int = 1, heads: int = 1, seq_len: int = 1,
                       dim_qk: int = 64, dim_v: int = 64, variant: str = "exp") -> int:
    """The chunk size that chunk_size=None selects for a problem on this device."""
    dev = torch.device(device)
    p = _lib.Problem()
    _lib.lib.tfla_mlstm_problem_init(p)
    p.batch, p.heads, p.seq_len, p.dim_qk, p.dim_v = batch, heads, seq_len, dim_qk, dim_v
    p.variant = _VARIANTS[variant]
    p.device_type = _lib.DEVICE_CUDA if dev.type == "cuda" else _lib.DEVICE_CPU
    p.device_index = dev.index or 0
    out = ctypes.c_int64(0)
    _lib.check(_lib.lib.tfla_mlstm_default_chunk_size(ctypes.byref(p), ctypes.byref(out)))
    return int(out.value)
