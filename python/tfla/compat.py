"""Drop-ins for mlstm_kernels (2.0.x) and the switch that makes mlstm_kernels, xlstm and transformers' xLSTM run
on tfla.

Drop-ins (same signatures and return conventions as the mlstm_kernels functions of the same name; their
Triton tuning keyword arguments, and any unknown keyword argument, are accepted and ignored):
    mlstm_chunkwise__xl_chunk            -> h | (h, (c, n, m))     mLSTMexp, m of shape (B, NH, 1)
    mlstm_siging_chunkwise__xl_chunk     -> h | (h, (c, n))        mLSTMsig (m_initial is ignored)
    mlstm_chunkwise__limit_chunk         -> h | (h, (c, n, m))     mLSTMexp
    mlstm_recurrent_step__tfla           -> h, (c, n, m)           one step, mlstm_kernels' step-kernel interface
    mlstm_recurrent_sequence__tfla       -> h | (h, (c, n, m))     mlstm_kernels' sequence-kernel interface
Differences that are not in the signature: chunk_size is a tuning hint here (tfla computes the same function
at any chunk size; on CUDA it is rounded up to a multiple of 64); any sequence length works (no padding
needed); gradients keep the final-state terms of the forget-gate gradient and honour dn_last (the spec's
exact convention; mlstm_kernels drops them). Under torch.autocast (CUDA), q, k, v, i, f are cast to
autocast_kernel_dtype like mlstm_kernels' custom_fwd does; states stay float32.

The switch:
    import tfla.compat
    tfla.compat.use_tfla()          # before building the model, or use_tfla(model) to rebind a built one
    ...
    tfla.compat.restore()           # undo (restore(model) rebinds a built model back)
use_tfla() replaces the Triton entries of mlstm_kernels' kernel registries ("chunkwise--triton_xl_chunk",
"chunkwise--triton_xl_chunk_siging", "chunkwise--triton_limit_chunk", step "triton", sequence
"native_sequence__triton"; with native=True also the native ones), which mLSTMBackend, the xlstm package's
xLSTMLarge (xLSTM-7B) and transformers' xLSTM model (when the xlstm package is installed) look up; and, when
transformers' xLSTM runs its own built-in kernels (no xlstm package), those module functions.
mLSTMBackend objects resolve their kernels when they are built: pass the model (or any nn.Module) to rebind
the backends inside it.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from typing import Any, Callable, Optional

import torch

from .ops import mlstm

__all__ = [
    "mlstm_chunkwise__xl_chunk", "mlstm_siging_chunkwise__xl_chunk", "mlstm_chunkwise__limit_chunk",
    "mlstm_recurrent_step__tfla", "mlstm_recurrent_sequence__tfla", "use_tfla", "restore", "tfla_kernels",
    "is_active",
]

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


# --------------------------------------------------------------------------------------------- helpers
def _autocast_enabled() -> bool:
    try:
        return bool(torch.is_autocast_enabled("cuda"))
    except TypeError:  # torch < 2.4 spelling
        return bool(torch.is_autocast_enabled())


def _prepare(q, k, v, i, f, autocast_kernel_dtype: Optional[torch.dtype]):
    """mlstm_kernels' input conventions -> tfla.mlstm's (dtypes only; shapes are checked by tfla.mlstm)."""
    if autocast_kernel_dtype is not None and _autocast_enabled() and q.device.type == "cuda":
        # custom_fwd(device_type="cuda", cast_inputs=autocast_kernel_dtype)
        q, k, v, i, f = (t.to(autocast_kernel_dtype) if t.is_floating_point() else t for t in (q, k, v, i, f))
    x = q.dtype
    if k.dtype != x or v.dtype != x:
        x = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    if x not in _FLOATS:
        x = torch.float32
    q, k, v = (t if t.dtype == x else t.to(x) for t in (q, k, v))
    g = i.dtype if i.dtype == f.dtype and i.dtype in _FLOATS else torch.float32
    i, f = (t if t.dtype == g else t.to(g) for t in (i, f))
    return q, k, v, i, f


def _chunk(chunk_size: Optional[int], device: torch.device) -> Optional[int]:
    if chunk_size is None:
        return None
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        return None
    if device.type == "cuda":
        return max(64, -(-chunk_size // 64) * 64)
    return chunk_size


def _exp_call(q, k, v, i, f, c_initial, n_initial, m_initial, return_last_states, eps, chunk_size,
              autocast_kernel_dtype):
    q, k, v, i, f = _prepare(q, k, v, i, f, autocast_kernel_dtype)
    out = mlstm(q, k, v, i, f, variant="exp", c0=c_initial, n0=n_initial, m0=m_initial,
                return_last_state=bool(return_last_states), chunk_size=_chunk(chunk_size, q.device), eps=eps)
    if return_last_states:
        h, (c, n, m) = out
        return h, (c, n, m.unsqueeze(-1))
    return out


# --------------------------------------------------------------------------------------------- drop-ins
def mlstm_chunkwise__xl_chunk(
    q: torch.Tensor,  # (B, NH, S, DHQK)
    k: torch.Tensor,  # (B, NH, S, DHQK)
    v: torch.Tensor,  # (B, NH, S, DHHV)
    i: torch.Tensor,  # (B, NH, S)
    f: torch.Tensor,  # (B, NH, S)
    c_initial: torch.Tensor = None,  # (B, NH, DHQK, DHHV)
    n_initial: torch.Tensor = None,  # (B, NH, DHQK)
    m_initial: torch.Tensor = None,  # (B, NH, 1)
    return_last_states: bool = False,
    eps: float = 1e-6,
    chunk_size: int = 128,
    chunk_size_inter: int | None = None,
    chunk_size_intra: int | None = None,
    siz_b_L_parallel: int | None = None,
    siz_b_L_loop: int | None = None,
    siz_b_DH_parallel: int | None = None,
    siz_b_DH_loop: int | None = None,
    num_warps_intra: int | None = None,
    num_warps_inter: int | None = None,
    num_stages_intra: int | None = None,
    num_stages_inter: int | None = None,
    recompute_states_in_bw: bool = True,
    autocast_kernel_dtype: torch.dtype = torch.float32,
    **kwargs: Any,
):
    """mLSTMexp on tfla with the interface of mlstm_kernels' mlstm_chunkwise__xl_chunk.

    Returns h (B, NH, S, DHHV), or (h, (c_last, n_last, m_last)) with return_last_states (float32 states,
    m_last of shape (B, NH, 1)). The Triton tuning arguments are ignored."""
    return _exp_call(q, k, v, i, f, c_initial, n_initial, m_initial, return_last_states, eps, chunk_size,
                     autocast_kernel_dtype)


def mlstm_siging_chunkwise__xl_chunk(
    q: torch.Tensor,  # (B, NH, S, DHQK)
    k: torch.Tensor,  # (B, NH, S, DHQK)
    v: torch.Tensor,  # (B, NH, S, DHHV)
    i: torch.Tensor,  # (B, NH, S)
    f: torch.Tensor,  # (B, NH, S)
    c_initial: torch.Tensor = None,  # (B, NH, DHQK, DHHV)
    n_initial: torch.Tensor = None,  # (B, NH, DHQK)
    m_initial: torch.Tensor = None,  # unused (mLSTMsig has no stabilizer)
    return_last_states: bool = False,
    eps: float = 1e-6,
    normalize: bool = True,
    chunk_size: int = 128,
    chunk_size_inter: int | None = None,
    chunk_size_intra: int | None = None,
    siz_b_L_parallel: int | None = None,
    siz_b_L_loop: int | None = None,
    siz_b_DH_parallel: int | None = None,
    siz_b_DH_loop: int | None = None,
    num_warps_intra: int | None = None,
    num_warps_inter: int | None = None,
    num_stages_intra: int | None = None,
    num_stages_inter: int | None = None,
    recompute_states_in_bw: bool = True,
    autocast_kernel_dtype: torch.dtype = torch.float32,
    **kwargs: Any,
):
    """mLSTMsig on tfla with the interface of mlstm_kernels' mlstm_siging_chunkwise__xl_chunk.

    Returns h, or (h, (c_last, n_last)) with return_last_states (float32 states)."""
    if autocast_kernel_dtype not in _FLOATS:
        raise ValueError(f"Unsupported kernel dtype {autocast_kernel_dtype}.")
    q, k, v, i, f = _prepare(q, k, v, i, f, autocast_kernel_dtype)
    out = mlstm(q, k, v, i, f, variant="sig", normalize=bool(normalize), c0=c_initial, n0=n_initial,
                return_last_state=bool(return_last_states), chunk_size=_chunk(chunk_size, q.device), eps=eps)
    if return_last_states:
        h, (c, n, _) = out
        return h, (c, n)
    return out


def mlstm_chunkwise__limit_chunk(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: torch.Tensor,
    f: torch.Tensor,
    c_initial: torch.Tensor = None,
    n_initial: torch.Tensor = None,
    m_initial: torch.Tensor = None,
    return_last_states: bool = False,
    eps: float = 1e-6,
    chunk_size: int = 64,
    autocast_kernel_dtype: torch.dtype = torch.float32,
    **kwargs: Any,
):
    """mLSTMexp on tfla with the interface of mlstm_kernels' mlstm_chunkwise__limit_chunk."""
    return _exp_call(q, k, v, i, f, c_initial, n_initial, m_initial, return_last_states, eps, chunk_size,
                     autocast_kernel_dtype)


def mlstm_recurrent_step__tfla(
    q: torch.Tensor,  # (B, NH, DHQK)
    k: torch.Tensor,  # (B, NH, DHQK)
    v: torch.Tensor,  # (B, NH, DHV)
    i: torch.Tensor,  # (B, NH, 1)
    f: torch.Tensor,  # (B, NH, 1)
    c: torch.Tensor,  # (B, NH, DHQK, DHV)
    n: torch.Tensor,  # (B, NH, DHQK)
    m: torch.Tensor,  # (B, NH, 1)
    eps: float = 1e-6,
    dtype_state: torch.dtype = torch.float32,
    **kwargs: Any,
):
    """One mLSTMexp step on tfla, interface of mlstm_kernels' step kernels: h (B, NH, DHV), (c, n, m) in
    dtype_state."""
    q, k, v, i, f = _prepare(q[:, :, None, :], k[:, :, None, :], v[:, :, None, :], i, f, None)
    h, (c1, n1, m1) = mlstm(q, k, v, i, f, variant="exp", c0=c, n0=n, m0=m, return_last_state=True, eps=eps)
    return h[:, :, 0, :], (c1.to(dtype_state), n1.to(dtype_state), m1.unsqueeze(-1).to(dtype_state))


def mlstm_recurrent_sequence__tfla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: torch.Tensor,
    f: torch.Tensor,
    c_initial: torch.Tensor = None,
    n_initial: torch.Tensor = None,
    m_initial: torch.Tensor = None,
    return_last_states: bool = False,
    eps: float = 1e-6,
    dtype_state: torch.dtype = torch.float32,
    **kwargs: Any,
):
    """mLSTMexp over a (short) sequence on tfla, interface of mlstm_kernels' sequence kernels."""
    out = _exp_call(q, k, v, i, f, c_initial, n_initial, m_initial, return_last_states, eps, None, None)
    if return_last_states:
        h, (c1, n1, m1) = out
        return h, (c1.to(dtype_state), n1.to(dtype_state), m1.to(dtype_state))
    return out


# transformers' built-in (no xlstm package) kernel interfaces use other argument names.
def _hf_chunkwise(query, key, value, igate, fgate, c_initial=None, n_initial=None, m_initial=None,
                  return_last_states=False, eps=1e-6, chunk_size=64, autocast_kernel_dtype=None, **kwargs):
    return _exp_call(query, key, value, igate, fgate, c_initial, n_initial, m_initial, return_last_states, eps,
                     chunk_size, autocast_kernel_dtype)


def _hf_sequence(query, key, value, igate, fgate, c_initial=None, n_initial=None, m_initial=None,
                 return_last_states=False, eps=1e-6, dtype_state=torch.float32, **kwargs):
    return mlstm_recurrent_sequence__tfla(query, key, value, igate, fgate, c_initial, n_initial, m_initial,
                                          return_last_states, eps, dtype_state)


def _hf_step(query, key, value, igate, fgate, cstate, nstate, mstate, eps=1e-6, dtype_state=torch.float32,
             **kwargs):
    return mlstm_recurrent_step__tfla(query, key, value, igate, fgate, cstate, nstate, mstate, eps, dtype_state)


# --------------------------------------------------------------------------------------------- the switch
_MISSING = object()
_patches: dict = {}  # (id(container), key) -> (container, key, original or _MISSING)


def _set_item(container: dict, key: str, value: Callable) -> None:
    ident = (id(container), key)
    if ident not in _patches:
        _patches[ident] = (container, key, container.get(key, _MISSING), "item")
    container[key] = value


def _set_attr(obj: Any, name: str, value: Callable) -> None:
    ident = (id(obj), name)
    if ident not in _patches:
        _patches[ident] = (obj, name, getattr(obj, name, _MISSING), "attr")
    setattr(obj, name, value)


def _import(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # not installed, or fails to import without a GPU stack: nothing to patch there
        return None


def _backend_modules(model: torch.nn.Module):
    """The kernel backends inside model: mlstm_kernels' mLSTMBackend and transformers' xLSTMBackend."""
    for mod in model.modules():
        if all(hasattr(mod, a) for a in ("config", "chunkwise_kernel_fn", "_train_fn", "_inference_fn")):
            yield mod


def _rebind(model: Optional[torch.nn.Module]) -> int:
    """Rebuild the kernel functions of every backend inside model from the (patched or restored) registries."""
    if model is None:
        return 0
    n = 0
    for mod in _backend_modules(model):
        fresh = type(mod)(mod.config)
        for a in ("chunkwise_kernel_fn", "sequence_kernel_fn", "step_kernel_fn", "_inference_fn", "_train_fn"):
            if hasattr(fresh, a):
                setattr(mod, a, getattr(fresh, a))
        n += 1
    return n


def use_tfla(model: Optional[torch.nn.Module] = None, *, native: bool = False, steps: bool = True) -> int:
    """Make mlstm_kernels' registries (and so mLSTMBackend, xlstm's xLSTMLarge and transformers' xLSTM) run
    the mLSTM on tfla. Undo with restore().

    model: also rebind the backends of an already built model (they resolve kernels when built).
    native: also replace mlstm_kernels' pure-PyTorch kernels ("chunkwise--native_autograd", ...).
    steps: also replace the step and sequence kernels used for generation.
    Returns the number of backends rebound in model."""
    ck = _import("mlstm_kernels.torch.chunkwise")
    if ck is not None:
        reg = ck.registry
        _set_item(reg, "triton_xl_chunk", mlstm_chunkwise__xl_chunk)
        _set_item(reg, "triton_xl_chunk_siging", mlstm_siging_chunkwise__xl_chunk)
        _set_item(reg, "triton_limit_chunk", mlstm_chunkwise__limit_chunk)
        if native:
            _set_item(reg, "native_autograd", mlstm_chunkwise__limit_chunk)
            _set_item(reg, "native_custbw", mlstm_chunkwise__limit_chunk)
    if steps:
        rec = _import("mlstm_kernels.torch.recurrent")
        if rec is not None:
            _set_item(rec.registry_step, "triton", mlstm_recurrent_step__tfla)
            _set_item(rec.registry_sequence, "native_sequence__triton", mlstm_recurrent_sequence__tfla)
            if native:
                _set_item(rec.registry_step, "native", mlstm_recurrent_step__tfla)
                _set_item(rec.registry_sequence, "native_sequence__native", mlstm_recurrent_sequence__tfla)
    # transformers' xLSTM with its built-in kernels (no xlstm package): patch the module functions it builds
    # its backend from (when transformers is installed).
    hf = sys.modules.get("transformers.models.xlstm.modeling_xlstm")
    if hf is None and importlib.util.find_spec("transformers") is not None:
        hf = _import("transformers.models.xlstm.modeling_xlstm")
    if hf is not None and not getattr(hf, "external_xlstm", True):
        _set_attr(hf, "mlstm_chunkwise_native_autograd", _hf_chunkwise)
        if steps:
            _set_attr(hf, "mlstm_recurrent_sequence_native", _hf_sequence)
            _set_attr(hf, "mlstm_recurrent_step_native", _hf_step)
    return _rebind(model)


def restore(model: Optional[torch.nn.Module] = None) -> int:
    """Undo use_tfla(): put back every registry entry and function it replaced (and rebind model's backends
    to them). Returns the number of backends rebound."""
    for container, key, original, kind in reversed(list(_patches.values())):
        if kind == "item":
            if original is _MISSING:
                container.pop(key, None)
            else:
                container[key] = original
        else:
            if original is _MISSING:
                with contextlib.suppress(AttributeError):
                    delattr(container, key)
            else:
                setattr(container, key, original)
    _patches.clear()
    return _rebind(model)


def is_active() -> bool:
    """True while use_tfla() is in effect."""
    return bool(_patches)


@contextlib.contextmanager
def tfla_kernels(model: Optional[torch.nn.Module] = None, **kwargs):
    """`with tfla_kernels(model): ...` runs the block on tfla and restores the previous kernels after it."""
    use_tfla(model, **kwargs)
    try:
        yield
    finally:
        restore(model)
