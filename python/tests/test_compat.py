"""tfla.compat: the mlstm_kernels drop-ins (signatures, return conventions, results against mlstm_kernels'
own PyTorch kernels on CPU) and the registry switch with its undo. mlstm_kernels is imported when installed
(tests only; skipped otherwise)."""
from __future__ import annotations

import inspect

import pytest
import torch

import reference as R
import tfla.compat as tc

mk = pytest.importorskip("mlstm_kernels.torch", reason="mlstm_kernels is not installed (pip install mlstm_kernels)")
from mlstm_kernels.torch import chunkwise as mk_chunkwise  # noqa: E402
from mlstm_kernels.torch import get_mlstm_kernel, get_mlstm_sequence_kernel, get_mlstm_step_kernel  # noqa: E402
from mlstm_kernels.torch import recurrent as mk_recurrent  # noqa: E402


def _theirs(module: str, name: str):
    try:
        mod = __import__(module, fromlist=[name])
    except Exception as e:  # their Triton modules need triton to import
        pytest.skip(f"{module} does not import here: {e}")
    return getattr(mod, name)


SIGNATURE_PAIRS = [
    (tc.mlstm_chunkwise__xl_chunk, "mlstm_kernels.torch.chunkwise.triton_xl_chunk", "mlstm_chunkwise__xl_chunk"),
    (tc.mlstm_siging_chunkwise__xl_chunk, "mlstm_kernels.torch.chunkwise.triton_xl_chunk_siging",
     "mlstm_siging_chunkwise__xl_chunk"),
    (tc.mlstm_chunkwise__limit_chunk, "mlstm_kernels.torch.chunkwise.triton_limit_chunk",
     "mlstm_chunkwise__limit_chunk"),
    (tc.mlstm_recurrent_step__tfla, "mlstm_kernels.torch.recurrent.native_step", "mlstm_recurrent_step__native"),
    (tc.mlstm_recurrent_sequence__tfla, "mlstm_kernels.torch.recurrent.native_sequence",
     "mlstm_recurrent_sequence__native_fw"),
]


@pytest.mark.parametrize("ours,module,name", SIGNATURE_PAIRS, ids=[p[2] for p in SIGNATURE_PAIRS])
def test_signatures_match_mlstm_kernels(ours, module, name):
    """Same parameters in the same order with the same defaults; ours adds **kwargs (ignored tuning args)."""
    theirs = _theirs(module, name)
    ps_ours = [p for p in inspect.signature(ours).parameters.values() if p.kind != p.VAR_KEYWORD]
    ps_theirs = [p for p in inspect.signature(theirs).parameters.values() if p.kind != p.VAR_KEYWORD]
    assert [p.name for p in ps_ours] == [p.name for p in ps_theirs]
    for a, b in zip(ps_ours, ps_theirs):
        assert a.default == b.default or (a.default is b.default), a.name
        assert a.kind == b.kind, a.name
    assert any(p.kind == p.VAR_KEYWORD for p in inspect.signature(ours).parameters.values())


def _inputs(B=2, H=2, S=128, Dk=16, Dv=32, state=True, seed=31):
    d = R.random_inputs(B, H, S, Dk, Dv, state=state, seed=seed)
    if state:
        d["m0"] = d["m0"].unsqueeze(-1)  # mlstm_kernels' (B, NH, 1)
    return d


def _fwbw(fn, d, names=("q", "k", "v", "i", "f"), states=False, dh=None, **kw):
    leaves = {k: d[k].clone().requires_grad_(True) for k in names}
    args = [leaves[k] for k in ("q", "k", "v", "i", "f")]
    if states:
        kw.update(c_initial=d["c0"], n_initial=d["n0"], m_initial=d["m0"])
    out = fn(*args, **kw)
    h = out[0] if isinstance(out, tuple) else out
    h.backward(dh if dh is not None else torch.ones_like(h))
    return out, {k: leaves[k].grad for k in names}


@pytest.mark.parametrize("states", [False, True], ids=["nostate", "state"])
def test_xl_chunk_dropin_matches_native_kernels_on_cpu(states):
    """Forward (h and final states) against mlstm_kernels' native_autograd, gradients against its native_custbw
    (the stop-gradient convention of the Triton kernels), fp32 on CPU, loss through h only."""
    d = _inputs()
    dh = torch.randn(2, 2, 128, 32)
    ours, g_ours = _fwbw(tc.mlstm_chunkwise__xl_chunk, d, states=states, dh=dh, return_last_states=True,
                         chunk_size=64, siz_b_L_parallel=64, num_warps_intra=4)  # tuning args are ignored
    ref = _theirs("mlstm_kernels.torch.chunkwise.native", "mlstm_chunkwise__native_autograd")(
        *(d[k] for k in "qkvif"), return_last_states=True, chunk_size=64,
        **(dict(c_initial=d["c0"], n_initial=d["n0"], m_initial=d["m0"]) if states else {}))
    h, (c, n, m) = ours
    hr, (cr, nr, mr) = ref
    assert m.shape == mr.shape == (2, 2, 1) and c.dtype == torch.float32
    for a, b in ((h, hr), (c, cr), (n, nr), (m, mr)):
        assert R.rel_l2(a, b) < 1e-5
    custbw = _theirs("mlstm_kernels.torch.chunkwise.native", "mlstm_chunkwise__native_custbw")
    _, g_ref = _fwbw(custbw, d, states=states, dh=dh, chunk_size=64)
    for k in "qkvif":
        assert R.rel_l2(g_ours[k], g_ref[k]) < 1e-4, (k, R.rel_l2(g_ours[k], g_ref[k]))


@pytest.mark.parametrize("normalize", [True, False])
def test_siging_dropin_matches_native_parallel_on_cpu(normalize):
    d = _inputs(state=False)
    dh = torch.randn(2, 2, 128, 32)
    h, g_ours = _fwbw(tc.mlstm_siging_chunkwise__xl_chunk, d, dh=dh, normalize=normalize, chunk_size=64)
    custbw = _theirs("mlstm_kernels.torch.parallel.native_siging", "mlstm_siging_parallel__native_custbw")
    hr, g_ref = _fwbw(custbw, d, dh=dh, normalize=normalize)
    assert R.rel_l2(h, hr) < 1e-5
    for k in "qkvif":
        assert R.rel_l2(g_ours[k], g_ref[k]) < 1e-4, (k, R.rel_l2(g_ours[k], g_ref[k]))
    out = tc.mlstm_siging_chunkwise__xl_chunk(*(d[k] for k in "qkvif"), return_last_states=True)
    assert isinstance(out, tuple) and len(out[1]) == 2  # (h, (c, n)): mLSTMsig has no m


def test_step_and_sequence_dropins_match_native():
    d = _inputs(S=12)
    step_ref = _theirs("mlstm_kernels.torch.recurrent.native_step", "mlstm_recurrent_step__native")
    c, n, m = d["c0"], d["n0"], d["m0"]
    cr, nr, mr = c, n, m
    for t in range(12):
        args = [d["q"][:, :, t], d["k"][:, :, t], d["v"][:, :, t], d["i"][:, :, t, None], d["f"][:, :, t, None]]
        h, (c, n, m) = tc.mlstm_recurrent_step__tfla(*args, c, n, m, eps=1e-6)
        hr, (cr, nr, mr) = step_ref(*args, cr, nr, mr, eps=1e-6)
        assert h.shape == hr.shape and m.shape == mr.shape == (2, 2, 1)
        assert R.rel_l2(h, hr) < 1e-5 and R.rel_l2(c, cr) < 1e-5 and R.rel_l2(m, mr) < 1e-6
    seq_ref = _theirs("mlstm_kernels.torch.recurrent.native_sequence", "mlstm_recurrent_sequence__native_fw")
    kw = dict(c_initial=d["c0"], n_initial=d["n0"], m_initial=d["m0"], return_last_states=True)
    h, st = tc.mlstm_recurrent_sequence__tfla(*(d[k] for k in "qkvif"), **kw)
    hr, str_ = seq_ref(*(d[k] for k in "qkvif"), **kw)
    assert R.rel_l2(h, hr) < 1e-5
    for a, b in zip(st, str_):
        assert a.shape == b.shape and R.rel_l2(a, b) < 1e-5


def test_dropins_accept_any_length_and_mixed_dtypes():
    d = _inputs(S=77, state=False)
    h = tc.mlstm_chunkwise__xl_chunk(d["q"].bfloat16(), d["k"], d["v"], d["i"], d["f"].bfloat16(), chunk_size=100)
    assert h.shape == (2, 2, 77, 32)


def _originals():
    return (dict(mk_chunkwise.registry), dict(mk_recurrent.registry_step), dict(mk_recurrent.registry_sequence))


def test_use_tfla_and_restore_registry():
    before = _originals()
    try:
        tc.use_tfla()
        assert tc.is_active()
        assert get_mlstm_kernel("chunkwise--triton_xl_chunk") is tc.mlstm_chunkwise__xl_chunk
        assert get_mlstm_kernel("chunkwise--triton_xl_chunk_siging") is tc.mlstm_siging_chunkwise__xl_chunk
        assert get_mlstm_kernel("chunkwise--triton_limit_chunk") is tc.mlstm_chunkwise__limit_chunk
        assert get_mlstm_step_kernel("triton") is tc.mlstm_recurrent_step__tfla
        assert get_mlstm_sequence_kernel("native_sequence__triton") is tc.mlstm_recurrent_sequence__tfla
        assert get_mlstm_kernel("chunkwise--native_autograd") is before[0]["native_autograd"]  # native kept
        tc.use_tfla(native=True)  # idempotent; extends
        assert get_mlstm_kernel("chunkwise--native_autograd") is tc.mlstm_chunkwise__limit_chunk
    finally:
        tc.restore()
    assert not tc.is_active()
    assert _originals() == before


def test_backend_module_runs_on_tfla_and_rebinds():
    from mlstm_kernels.torch.backend_module import mLSTMBackend, mLSTMBackendConfig

    d = _inputs(S=100)
    args = [d[k] for k in "qkvif"]
    states = dict(c_initial=d["c0"], n_initial=d["n0"], m_initial=d["m0"])
    ref = mLSTMBackend(mLSTMBackendConfig(chunkwise_kernel="chunkwise--native_autograd", mode="inference",
                                          chunk_size=32, autocast_kernel_dtype="float32"))
    hr, (cr, nr, mr) = ref(*args, **states)
    cfg = mLSTMBackendConfig(chunkwise_kernel="chunkwise--triton_xl_chunk", sequence_kernel="native_sequence__triton",
                             step_kernel="triton", mode="inference", chunk_size=32, autocast_kernel_dtype="float32")
    built_before = mLSTMBackend(cfg) if "triton_xl_chunk" in mk_chunkwise.registry else None
    try:
        tc.use_tfla()
        be = mLSTMBackend(cfg)  # built while active: resolves tfla
        assert be.chunkwise_kernel_fn is tc.mlstm_chunkwise__xl_chunk
        h, (c, n, m) = be(*args, **states)
        assert R.rel_l2(h, hr) < 1e-5 and R.rel_l2(c, cr) < 1e-5 and R.rel_l2(m, mr) < 1e-6
        h1, _ = be(*(a[:, :, :1] for a in args), **states)  # S == 1: the step kernel
        assert h1.shape == (2, 2, 1, 32)
        be_train = mLSTMBackend(mLSTMBackendConfig(chunkwise_kernel="chunkwise--triton_xl_chunk", mode="train",
                                                   chunk_size=64, return_last_states=False))
        assert R.rel_l2(be_train(*args, **states), hr) < 1e-5
        if built_before is not None:
            assert built_before.chunkwise_kernel_fn is not tc.mlstm_chunkwise__xl_chunk
            assert tc.use_tfla(built_before) == 1  # rebinding a backend built before the switch
            assert built_before.chunkwise_kernel_fn is tc.mlstm_chunkwise__xl_chunk
    finally:
        n_rebound = tc.restore(built_before) if built_before is not None else tc.restore()
    if built_before is not None:
        assert n_rebound == 1 and built_before.chunkwise_kernel_fn is not tc.mlstm_chunkwise__xl_chunk


def test_context_manager():
    with tc.tfla_kernels():
        assert get_mlstm_kernel("chunkwise--triton_xl_chunk") is tc.mlstm_chunkwise__xl_chunk
    assert not tc.is_active()
