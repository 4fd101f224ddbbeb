"""tfla.mlstm on the CPU backend: outputs and every gradient against the fp64 references (spec convention: den
and m held constant), layouts, dtypes, states, chunk sizes, strides, argument errors. Runs in CI."""
from __future__ import annotations

import pytest
import torch

import reference as R
import tfla
from conftest import poisoned_outputs
from harness import accuracy_rule, output_grads, run_reference, run_tfla

VARIANTS = [("exp", True), ("sig", True), ("sig", False)]
VARIANT_IDS = ["exp", "sig", "sig_nonorm"]


@pytest.mark.parametrize("variant,normalize", VARIANTS, ids=VARIANT_IDS)
def test_parallel_reference_matches_recurrent(variant, normalize):
    """The two fp64 references agree (outputs and gradients): the tests' yardstick is itself checked."""
    inp = R.random_inputs(2, 2, 40, 8, 12, dtype=torch.float64, state=True, seed=3)
    dh, dc, dn = output_grads(inp)
    o1, g1 = run_reference(R.recurrent, inp, dh, dc, dn, variant=variant, normalize=normalize, dtype=torch.float64)
    o2, g2 = run_reference(R.parallel, inp, dh, dc, dn, variant=variant, normalize=normalize, dtype=torch.float64)
    for k in o1:
        assert R.rel_l2(o2[k], o1[k]) < 1e-12, k
    for k in g1:
        assert R.rel_l2(g2[k], g1[k]) < 1e-11, k


@pytest.mark.parametrize("chunk", [None, 16, 37])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("state", [False, True], ids=["nostate", "state"])
@pytest.mark.parametrize("variant,normalize", VARIANTS, ids=VARIANT_IDS)
def test_f32_against_fp64_recurrent(variant, normalize, state, layout, chunk):
    B, H, S, Dk, Dv = 2, 3, 77, 8, 12
    inp = R.random_inputs(B, H, S, Dk, Dv, state=state, seed=5)
    dh, dc, dn = output_grads(inp)
    with poisoned_outputs():
        out, grads = run_tfla(inp, dh, dc, dn, variant=variant, normalize=normalize, layout=layout, chunk_size=chunk)
    ref_o, ref_g = run_reference(R.recurrent, inp, dh, dc, dn, variant=variant, normalize=normalize,
                                 dtype=torch.float64)
    assert out["h"].dtype == torch.float32 and out["h"].shape == (B, H, S, Dv)
    assert out["c"].shape == (B, H, Dk, Dv) and out["n"].shape == (B, H, Dk) and out["m"].shape == (B, H)
    for k in ("h", "c", "n", "m"):
        assert torch.isfinite(out[k]).all(), k
        assert R.rel_l2(out[k], ref_o[k]) < 2e-6, (k, R.rel_l2(out[k], ref_o[k]))
    if variant == "sig":
        assert (out["m"] == 0).all()
    for k in ("q", "k", "v", "i", "f") + (("c0", "n0") if state else ()):
        assert grads[k] is not None and torch.isfinite(grads[k]).all(), k
        assert grads[k].dtype == inp[k].dtype
        assert R.rel_l2(grads[k], ref_g[k]) < 2e-6, (k, R.rel_l2(grads[k], ref_g[k]))


@pytest.mark.parametrize("gate_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("variant,normalize", VARIANTS, ids=VARIANT_IDS)
def test_low_precision_accuracy_rule(variant, normalize, dtype, gate_dtype, record):
    """bf16/fp16 inputs: every output and gradient passes the spec's accuracy rule against the fp64 reference
    (2x the error of the plain implementation in the input dtype, + 1e-5)."""
    inp = R.random_inputs(1, 2, 96, 16, 16, dtype=dtype, gate_dtype=gate_dtype, state=True, seed=7)
    dh, dc, dn = output_grads(inp)
    out, grads = run_tfla(inp, dh, dc, dn, variant=variant, normalize=normalize, chunk_size=32)
    ref_o, ref_g = run_reference(R.parallel, inp, dh, dc, dn, variant=variant, normalize=normalize,
                                 dtype=torch.float64)
    pl_o, pl_g = run_reference(R.parallel, inp, dh, dc, dn, variant=variant, normalize=normalize)
    assert out["h"].dtype == dtype
    assert grads["i"].dtype == gate_dtype and grads["q"].dtype == dtype and grads["c0"].dtype == torch.float32
    infos, ok = [], True
    for k in ("h", "c", "n"):
        o, info = accuracy_rule(k, out[k], pl_o[k], ref_o[k])
        ok &= o
        infos.append(info)
    for k in ("q", "k", "v", "i", "f", "c0", "n0"):
        o, info = accuracy_rule("d" + k, grads[k], pl_g[k], ref_g[k])
        ok &= o
        infos.append(info)
    record(kind="accuracy", device="cpu", variant=variant, normalize=normalize, dtype=str(dtype),
           gate_dtype=str(gate_dtype), results=infos)
    assert ok, [i for i in infos if not i["ok"]]


def test_extreme_gates_stay_finite():
    inp = R.random_inputs(1, 2, 50, 8, 8, state=True, seed=9)
    inp["i"] = torch.where(torch.rand(1, 2, 50) < 0.5, -1e4, 1e4)
    inp["f"] = torch.where(torch.rand(1, 2, 50) < 0.5, -1e4, 1e4)
    dh, dc, dn = output_grads(inp)
    for variant, normalize in VARIANTS:
        out, grads = run_tfla(inp, dh, dc, dn, variant=variant, normalize=normalize)
        for k, t in list(out.items()) + list(grads.items()):
            assert torch.isfinite(t).all(), (variant, k)


@pytest.mark.parametrize("S,chunk", [(1, None), (1, 64), (5, 64), (64, 64), (65, 64), (130, 7)])
def test_sequence_lengths(S, chunk):
    inp = R.random_inputs(1, 2, S, 8, 4, state=True, seed=S)
    dh, dc, dn = output_grads(inp)
    out, grads = run_tfla(inp, dh, dc, dn, chunk_size=chunk)
    ref_o, ref_g = run_reference(R.recurrent, inp, dh, dc, dn, dtype=torch.float64)
    for k in ("h", "c", "n", "m"):
        assert R.rel_l2(out[k], ref_o[k]) < 2e-6, k
    for k in ref_g:
        assert R.rel_l2(grads[k], ref_g[k]) < 2e-6, k


def test_only_requested_gradients():
    """Gradients for a subset of inputs: the others stay None, the requested ones equal the full run's."""
    inp = R.random_inputs(1, 2, 33, 8, 8, state=True, seed=11)
    q, k, v, i, f = (inp[x].clone() for x in "qkvif")
    v.requires_grad_(True)
    f.requires_grad_(True)
    h = tfla.mlstm(q, k, v, i, f, c0=inp["c0"], n0=inp["n0"], m0=inp["m0"])
    dh = torch.randn_like(h)
    h.backward(dh)
    assert q.grad is None and k.grad is None and i.grad is None
    dh_, dc, dn = dh, None, None
    _, full = run_tfla(inp, dh_, dc, dn)
    assert torch.equal(v.grad, full["v"]) and torch.equal(f.grad, full["f"])


def test_m0_gets_no_gradient_and_state_shapes():
    inp = R.random_inputs(2, 2, 20, 8, 8, state=True, seed=12)
    m0 = inp["m0"].clone().unsqueeze(-1).requires_grad_(True)  # mlstm_kernels' (B, H, 1) is accepted
    c0 = inp["c0"].clone().requires_grad_(True)
    q = inp["q"].clone().requires_grad_(True)
    h, (c, n, m) = tfla.mlstm(q, inp["k"], inp["v"], inp["i"], inp["f"], c0=c0, m0=m0, return_last_state=True)
    assert m.shape == (2, 2) and not m.requires_grad
    (h.sum() + c.sum()).backward()
    assert m0.grad is None and c0.grad is not None and q.grad is not None


def test_no_grad_and_unused_outputs():
    inp = R.random_inputs(1, 1, 16, 8, 8, seed=13)
    with torch.no_grad():
        h = tfla.mlstm(*(inp[x] for x in "qkvif"))
    assert not h.requires_grad
    q = inp["q"].clone().requires_grad_(True)
    _, (c, _, _) = tfla.mlstm(q, inp["k"], inp["v"], inp["i"], inp["f"], return_last_state=True)
    c.sum().backward()  # h unused: its gradient is zero
    assert torch.isfinite(q.grad).all()


def test_strided_inputs_and_expanded_grad():
    """Views with arbitrary strides (slices, an expanded gate) on CPU, and a broadcast output gradient."""
    B, H, S, Dk, Dv = 2, 2, 30, 8, 8
    inp = R.random_inputs(B, H, S, Dk, Dv, seed=14)
    big = torch.randn(B, H, S, 3 * Dk)
    q = big[..., 5:5 + Dk].clone().requires_grad_(False)
    qs = big[..., 5:5 + Dk]  # a strided view
    f = torch.full((1, 1, 1), 3.0).expand(B, H, S)  # stride 0
    h1 = tfla.mlstm(qs, inp["k"], inp["v"], inp["i"], f)
    h2 = tfla.mlstm(q, inp["k"], inp["v"], inp["i"], f.contiguous())
    assert torch.equal(h1, h2)
    v = inp["v"].clone().requires_grad_(True)
    tfla.mlstm(q, inp["k"], v, inp["i"], f).sum().backward()  # dh = ones expanded (stride 0)
    v2 = inp["v"].clone().requires_grad_(True)
    h = tfla.mlstm(q, inp["k"], v2, inp["i"], f)
    h.backward(torch.ones_like(h))
    assert torch.equal(v.grad, v2.grad)


def test_scale_and_eps_are_passed():
    inp = R.random_inputs(1, 2, 24, 8, 8, seed=15)
    dh, dc, dn = output_grads(inp)
    out, grads = run_tfla(inp, dh, dc, dn, scale=0.3, eps=1e-2)
    ref_o, ref_g = run_reference(R.recurrent, inp, dh, dc, dn, scale=0.3, eps=1e-2, dtype=torch.float64)
    assert R.rel_l2(out["h"], ref_o["h"]) < 2e-6
    assert R.rel_l2(grads["q"], ref_g["q"]) < 2e-6


def test_default_chunk_size():
    assert tfla.default_chunk_size("cpu") >= 1


def _args(**over):
    inp = R.random_inputs(2, 3, 10, 8, 4, seed=16)
    args = [inp[x] for x in "qkvif"]
    names = "qkvif"
    for name, val in over.items():
        if name in names:
            args[names.index(name)] = val
    return args


@pytest.mark.parametrize("case,kwargs,exc,pattern", [
    ("k_shape", dict(k=torch.zeros(2, 3, 10, 9)), ValueError, r"k has shape \(2, 3, 10, 9\); expected \(B, H, S, Dk\)"),
    ("v_shape", dict(v=torch.zeros(2, 3, 11, 4)), ValueError, r"v has shape .* expected \(B, H, S, Dv\)"),
    ("i_shape", dict(i=torch.zeros(2, 3, 9)), ValueError, r"i has shape \(2, 3, 9\); expected \(B, H, S\)"),
    ("q_rank", dict(q=torch.zeros(2, 3, 10)), ValueError, r"q must have 4 dims"),
    ("k_dtype", dict(k=torch.zeros(2, 3, 10, 8, dtype=torch.float16)), ValueError,
     r"k has dtype torch.float16; expected q's dtype torch.float32"),
    ("q_dtype", dict(q=torch.zeros(2, 3, 10, 8, dtype=torch.float64), k=torch.zeros(2, 3, 10, 8, dtype=torch.float64),
                     v=torch.zeros(2, 3, 10, 4, dtype=torch.float64)), ValueError, r"q has dtype torch.float64"),
    ("f_dtype", dict(f=torch.zeros(2, 3, 10, dtype=torch.bfloat16)), ValueError, r"f has dtype torch.bfloat16; expected i's"),
    ("k_device", dict(k=torch.zeros(2, 3, 10, 8, device="meta")), ValueError, r"k is on meta, but q is on cpu"),
    ("not_tensor", dict(v=[1, 2]), TypeError, r"v must be a torch.Tensor"),
])
def test_argument_errors_name_the_argument(case, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        tfla.mlstm(*_args(**kwargs))


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(variant="tanh"), r"variant is 'tanh'; expected 'exp' or 'sig'"),
    (dict(normalize=False), r"normalize=False is defined only for variant='sig'"),
    (dict(chunk_size=0), r"chunk_size is 0; expected None or an int >= 1"),
    (dict(chunk_size=True), r"chunk_size is True"),
    (dict(eps=-1.0), r"eps is -1.0; expected a finite number >= 0"),
    (dict(scale=float("nan")), r"scale is nan"),
    (dict(layout="bsdh"), r"layout is 'bsdh'"),
    (dict(c0=torch.zeros(2, 3, 8, 5)), r"c0 has shape \(2, 3, 8, 5\); expected \(B, H, Dk, Dv\) = \(2, 3, 8, 4\)"),
    (dict(n0=torch.zeros(2, 3, 4)), r"n0 has shape \(2, 3, 4\); expected \(B, H, Dk\)"),
    (dict(m0=torch.zeros(3, 2)), r"m0 has shape \(3, 2\); expected \(B, H\)"),
    (dict(c0=torch.zeros(2, 3, 8, 4, dtype=torch.int32)), r"c0 has dtype torch.int32; expected a floating dtype"),
])
def test_option_errors(kwargs, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        tfla.mlstm(*_args(), **kwargs)


def test_bshd_shape_errors_use_bshd_names():
    q = torch.zeros(2, 10, 3, 8)
    with pytest.raises(ValueError, match=r"k has shape .*; expected \(B, S, H, Dk\)"):
        tfla.mlstm(q, torch.zeros(2, 3, 10, 8), torch.zeros(2, 10, 3, 4), torch.zeros(2, 10, 3), torch.zeros(2, 10, 3),
                   layout="bshd")


def test_library_errors_are_surfaced():
    """A call the Python checks let through reaches the C library, whose message names the argument."""
    inp = R.random_inputs(1, 1, 8, 8, 8, seed=17)
    with pytest.raises(tfla.TflaInvalidArgument, match=r"problem.chunk_size is -3"):
        torch.ops.tfla.mlstm_fwd(*(inp[x] for x in "qkvif"), None, None, None, 0, True, 0.0, 1e-6, -3, False, False)
    with pytest.raises(ValueError, match=r"problem.normalize = 0 is defined only for TFLA_VARIANT_SIG"):
        torch.ops.tfla.mlstm_fwd(*(inp[x] for x in "qkvif"), None, None, None, 0, False, 0.0, 1e-6, 0, False, False)


@pytest.mark.skipif(tfla.has_cuda(), reason="this build has the CUDA backend")
def test_cpu_only_build_rejects_cuda_tensors_clearly():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device to make a CUDA tensor on")
    q = torch.zeros(1, 1, 4, 8, device="cuda")
    with pytest.raises(RuntimeError, match="no CUDA backend"):
        tfla.mlstm(q, q, q, q[..., 0], q[..., 0])


def test_output_memory_layouts():
    """h (and the input gradients) come back contiguous in the layout of the call: no hidden copies."""
    inp = R.random_inputs(2, 3, 20, 8, 8, seed=18)
    q, k, v, i, f = (inp[x].transpose(1, 2).contiguous().requires_grad_(True) for x in "qkvif")
    h = tfla.mlstm(q, k, v, i, f, layout="bshd")
    assert h.shape == (2, 20, 3, 8) and h.is_contiguous()
    h.backward(torch.randn_like(h))
    assert all(t.grad.is_contiguous() for t in (q, k, v, i, f))
    h2 = tfla.mlstm(*(inp[x] for x in "qkvif"))
    assert h2.is_contiguous() and torch.equal(h2, h.detach().transpose(1, 2))
