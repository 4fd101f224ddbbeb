"""Parity with mlstm_kernels 2.0.6's Triton kernels on the same inputs (skipped without a CUDA device or without
mlstm_kernels and triton importable, e.g. from PYTHONPATH): h and every gradient, chunk <= 128 (where the Triton
reference is known to be right), and the drop-ins against the Triton functions of the same name."""
from __future__ import annotations

import pytest
import torch

import reference as R
from harness import output_grads, run_reference, run_tfla

pytestmark = pytest.mark.gpu

VARIANTS = [("exp", True), ("sig", True), ("sig", False)]
VARIANT_IDS = ["exp", "sig", "sig_nonorm"]
DT = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def _triton_fns():
    try:
        import triton  # noqa: F401  (the Triton kernels need it)
        from mlstm_kernels.torch.chunkwise.triton_xl_chunk import mlstm_chunkwise__xl_chunk
        from mlstm_kernels.torch.chunkwise.triton_xl_chunk_siging import mlstm_siging_chunkwise__xl_chunk
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"mlstm_kernels' Triton kernels are not importable ({e}); put mlstm_kernels 2.0.6 on PYTHONPATH")
    return mlstm_chunkwise__xl_chunk, mlstm_siging_chunkwise__xl_chunk


@pytest.mark.parametrize("chunk", [64, 128])
@pytest.mark.parametrize("dtype", ["bf16", "f32"])
@pytest.mark.parametrize("variant,normalize", VARIANTS, ids=VARIANT_IDS)
def test_parity_with_mlstm_kernels_triton(variant, normalize, dtype, chunk, record):
    """h and every gradient (loss through h; initial states given) of tfla and of mlstm_kernels 2.0.6's Triton
    kernels against the fp64 reference: tfla must be within the accuracy rule with Triton as the comparison
    implementation (err_tfla <= 2 err_triton + 1e-5) or the plain one, whichever is larger."""
    exp_fn, sig_fn = _triton_fns()
    B, H, S, Dk, Dv = 2, 4, 256, 128, 128
    x = DT[dtype]
    gate = torch.float32 if variant == "exp" else x  # the Triton mLSTMexp kernel needs fp32 gates
    inp = R.random_inputs(B, H, S, Dk, Dv, dtype=x, gate_dtype=gate, state=True, device="cuda", seed=49)
    dh, _, _ = output_grads(inp, state_grads=False)
    names = ("q", "k", "v", "i", "f", "c0", "n0")

    def triton_run():
        leaves = {k: inp[k].clone().requires_grad_(True) for k in names}
        args = [leaves[k] for k in "qkvif"]
        if variant == "exp":
            h = exp_fn(*args, c_initial=leaves["c0"], n_initial=leaves["n0"], m_initial=inp["m0"][..., None],
                       chunk_size=chunk, eps=1e-6)
        else:
            h = sig_fn(*args, c_initial=leaves["c0"], n_initial=leaves["n0"], normalize=normalize, chunk_size=chunk,
                       eps=1e-6)
        grads = torch.autograd.grad(h, [leaves[k] for k in names], dh, allow_unused=True)
        return h.detach(), dict(zip(names, grads))

    h_tr, g_tr = triton_run()
    out, grads = run_tfla(inp, dh, None, None, variant=variant, normalize=normalize, chunk_size=chunk)
    ref_o, ref_g = run_reference(R.parallel, inp, dh, None, None, variant=variant, normalize=normalize,
                                 dtype=torch.float64)
    pl_o, pl_g = run_reference(R.parallel, inp, dh, None, None, variant=variant, normalize=normalize)
    infos, ok = [], True
    for name, ours, tri, pl, ref in [("h", out["h"], h_tr, pl_o["h"], ref_o["h"])] + [
            ("d" + k, grads[k], g_tr[k], pl_g[k], ref_g[k]) for k in names]:
        if tri is None:
            infos.append({"name": name, "triton": "no gradient"})
            continue
        # autograd gives None where an input does not reach the loss at all (n0 reaches h only through the
        # stop-gradient normalizer): that gradient is exactly zero.
        ref = torch.zeros_like(ours) if ref is None else ref
        pl = torch.zeros_like(ours) if pl is None else pl
        info = {"name": name, "tfla_vs_triton_rel_l2": R.rel_l2(ours, tri)}
        for metric, fn in (("max_abs", R.max_abs), ("rms", R.rms)):
            e_ours, e_tri, e_pl = fn(ours, ref), fn(tri, ref), fn(pl, ref)
            bound = 2 * max(e_tri, e_pl) + 1e-5
            info[metric] = {"tfla": e_ours, "triton": e_tri, "plain": e_pl, "bound": bound}
            good = bool(torch.isfinite(ours).all()) and e_ours <= bound
            info[metric]["ok"] = good
            ok &= good
        infos.append(info)
    record(kind="parity_triton", device=torch.cuda.get_device_name(), variant=variant, normalize=normalize,
           dtype=dtype, chunk=chunk, ok=ok, results=infos)
    assert ok, [i for i in infos if not (i.get("max_abs", {}).get("ok", True) and i.get("rms", {}).get("ok", True))]


@pytest.mark.parametrize("variant", ["exp", "sig"])
def test_dropin_parity_with_triton_dropin(variant):
    """tfla.compat's drop-in and the Triton function of the same name, called the same way, agree (h, states)."""
    exp_fn, sig_fn = _triton_fns()
    import tfla.compat as tc

    inp = R.random_inputs(2, 2, 256, 64, 64, dtype=torch.bfloat16, gate_dtype=torch.float32, state=False,
                          device="cuda", seed=50)
    args = [inp[x] for x in "qkvif"]
    if variant == "exp":
        ours = tc.mlstm_chunkwise__xl_chunk(*args, return_last_states=True, chunk_size=128)
        theirs = exp_fn(*args, return_last_states=True, chunk_size=128)
    else:
        ours = tc.mlstm_siging_chunkwise__xl_chunk(*args, return_last_states=True, chunk_size=128)
        theirs = sig_fn(*args, return_last_states=True, chunk_size=128)
    assert len(ours[1]) == len(theirs[1])
    assert ours[0].dtype == theirs[0].dtype and ours[0].shape == theirs[0].shape
    assert R.rel_l2(ours[0], theirs[0]) < 2e-2
    for a, b in zip(ours[1], theirs[1]):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert R.rel_l2(a, b) < 2e-2
