"""GPU tests (skipped without a CUDA device): every output and gradient against the fp64 reference under the
spec's accuracy rule, CUDA-graph capture and replay bit-equal to eager, torch's current stream, strided and
misaligned views, CUDA argument errors, the drop-in under autocast.

Parity with mlstm_kernels' Triton kernels is in test_gpu_parity.py; opcheck and torch.compile on CUDA are in
test_torch.py (parametrized over the available devices)."""
from __future__ import annotations

import pytest
import torch

import reference as R
import tfla
from conftest import poisoned_outputs
from harness import accuracy_rule, output_grads, run_reference, run_tfla

pytestmark = pytest.mark.gpu

VARIANTS = [("exp", True), ("sig", True), ("sig", False)]
VARIANT_IDS = ["exp", "sig", "sig_nonorm"]
DT = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def _check_all(out, grads, ref_o, ref_g, pl_o, pl_g, names_out=("h", "c", "n"),
               names_grad=("q", "k", "v", "i", "f", "c0", "n0")):
    infos, ok = [], True
    for k in names_out:
        o, info = accuracy_rule(k, out[k], pl_o[k], ref_o[k])
        ok &= o
        infos.append(info)
    for k in names_grad:
        if k not in ref_g:
            continue
        o, info = accuracy_rule("d" + k, grads[k], pl_g[k], ref_g[k])
        ok &= o
        infos.append(info)
    return ok, infos


# shape: (B, H, S, Dk, Dv)
GRID = [
    ("small", (2, 3, 200, 64, 64)),
    ("dk_ne_dv", (1, 4, 333, 64, 128)),
    ("xlstm7b_heads", (1, 2, 512, 256, 512)),
]


@pytest.mark.parametrize("chunk", [64, 128])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("dtype", ["bf16", "f16", "f32"])
@pytest.mark.parametrize("variant,normalize", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("shape_name,shape", GRID, ids=[g[0] for g in GRID])
def test_accuracy_rule_against_fp64(shape_name, shape, variant, normalize, dtype, layout, chunk, record):
    B, H, S, Dk, Dv = shape
    x = DT[dtype]
    gate = torch.float32 if dtype == "f32" else x
    inp = R.random_inputs(B, H, S, Dk, Dv, dtype=x, gate_dtype=gate, state=True, device="cuda", seed=41)
    dh, dc, dn = output_grads(inp)
    with poisoned_outputs():
        out, grads = run_tfla(inp, dh, dc, dn, variant=variant, normalize=normalize, layout=layout, chunk_size=chunk)
    torch.cuda.synchronize()
    ref_o, ref_g = run_reference(R.parallel, inp, dh, dc, dn, variant=variant, normalize=normalize,
                                 dtype=torch.float64)
    pl_o, pl_g = run_reference(R.parallel, inp, dh, dc, dn, variant=variant, normalize=normalize)
    ok, infos = _check_all(out, grads, ref_o, ref_g, pl_o, pl_g)
    record(kind="accuracy", device=torch.cuda.get_device_name(), shape=shape, variant=variant, normalize=normalize,
           dtype=dtype, layout=layout, chunk=chunk, ok=ok, results=infos)
    assert ok, [(i["name"], i.get("max_abs"), i.get("rms"), i.get("worst")) for i in infos if not i["ok"]]


def test_extreme_gates_finite_on_cuda():
    inp = R.random_inputs(1, 2, 256, 64, 64, dtype=torch.bfloat16, gate_dtype=torch.float32, state=True,
                          device="cuda", seed=42)
    sign = lambda: torch.where(torch.rand(1, 2, 256, device="cuda") < 0.5, -1e4, 1e4)  # noqa: E731
    inp["i"], inp["f"] = sign(), sign()
    dh, dc, dn = output_grads(inp)
    for variant, normalize in VARIANTS:
        with poisoned_outputs():
            out, grads = run_tfla(inp, dh, dc, dn, variant=variant, normalize=normalize)
        for k, t in list(out.items()) + list(grads.items()):
            assert torch.isfinite(t).all(), (variant, normalize, k)


@pytest.mark.parametrize("variant", ["exp", "sig"])
def test_cuda_graph_capture_and_replay_bit_equal(variant):
    """Forward and backward captured in one CUDA graph, replayed bit-equal to eager, also on new inputs.

    Capture follows torch's recipe: the leaves used in the graph get their autograd nodes on the capture stream
    (created and warmed up there), and the eager comparison runs on other leaves. Leaves first used on the
    default stream would make the end-of-backward leaf sync join the legacy stream into the capture
    (cudaErrorStreamCaptureImplicit: pytorch/pytorch#164302, #189591) -- a torch rule, not a tfla one."""
    names = ("q", "k", "v", "i", "f", "c0", "n0", "m0")
    inp = R.random_inputs(2, 2, 300, 64, 64, dtype=torch.bfloat16, gate_dtype=torch.float32, state=True,
                          device="cuda", seed=43)
    dh = torch.randn(2, 2, 300, 64, device="cuda", dtype=torch.bfloat16)

    def leaves(src):
        return [src[x].detach().clone().requires_grad_(x != "m0") for x in names]

    def run(ls):
        q, k, v, i, f, c0, n0, m0 = ls
        h, (c, n, m) = tfla.mlstm(q, k, v, i, f, variant=variant, c0=c0, n0=n0, m0=m0, return_last_state=True,
                                  chunk_size=64)
        grads = torch.autograd.grad([h, c], ls[:7], [dh, torch.ones_like(c)])
        return (h, c, n, m) + tuple(grads)

    eager_leaves = leaves(inp)
    eager = [t.clone() for t in run(eager_leaves)]
    eager2 = [t.clone() for t in run(eager_leaves)]
    assert all(torch.equal(a, b) for a, b in zip(eager, eager2)), "eager runs are not deterministic"
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        static = leaves(inp)
        for _ in range(2):
            run(static)
    s.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=s):
        captured = run(static)
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(captured, eager):
        assert torch.equal(a, b)
    # new inputs in the same buffers: the replay computes on them, bit-equal to eager on the same values
    fresh = R.random_inputs(2, 2, 300, 64, 64, dtype=torch.bfloat16, gate_dtype=torch.float32, state=True,
                            device="cuda", seed=44)
    with torch.no_grad():
        for t, name in zip(static, names):
            t.copy_(fresh[name])
    graph.replay()
    torch.cuda.synchronize()
    expect = run(leaves(fresh))
    assert not all(torch.equal(a, b) for a, b in zip(expect, eager)), "new inputs gave the old results"
    for a, b in zip(captured, expect):
        assert torch.equal(a, b)


def test_runs_on_torch_current_stream():
    """q is written on a side stream after a long sleep; tfla called on that stream must see it (a kernel on any
    other stream would read the NaN that was there before)."""
    inp = R.random_inputs(2, 2, 256, 64, 64, dtype=torch.bfloat16, device="cuda", seed=45)
    h0 = tfla.mlstm(*(inp[x] for x in "qkvif"))
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        q2 = torch.full_like(inp["q"], float("nan"))
        torch.cuda._sleep(100_000_000)
        q2.copy_(inp["q"])
        h1 = tfla.mlstm(q2, inp["k"], inp["v"], inp["i"], inp["f"])
        h1c = h1.clone()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    assert torch.equal(h0, h1c)


def test_dropin_follows_autocast_like_mlstm_kernels():
    import tfla.compat as tc

    inp = R.random_inputs(1, 2, 128, 64, 64, dtype=torch.float32, device="cuda", seed=51)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        h = tc.mlstm_chunkwise__xl_chunk(*(inp[x] for x in "qkvif"), autocast_kernel_dtype=torch.bfloat16)
    assert h.dtype == torch.bfloat16
    h32 = tc.mlstm_chunkwise__xl_chunk(*(inp[x] for x in "qkvif"))
    assert h32.dtype == torch.float32 and R.rel_l2(h, h32) < 2e-2


def test_strided_and_misaligned_views():
    """Views the kernels cannot read in place (last dim strided, rows not 16-byte aligned) are copied inside
    the op; sequence-major views are read in place. All give the contiguous result."""
    B, H, S, D = 1, 2, 130, 64
    inp = R.random_inputs(B, H, S, D, D, dtype=torch.bfloat16, device="cuda", seed=46)
    h_ref = tfla.mlstm(*(inp[x] for x in "qkvif"))
    big = torch.zeros(B, H, S, D + 1, dtype=torch.bfloat16, device="cuda")
    big[..., 1:] = inp["q"]
    q_mis = big[..., 1:]  # rows at an odd element offset
    qt = inp["q"].transpose(-1, -2).contiguous().transpose(-1, -2)  # last dim strided
    for q in (q_mis, qt):
        assert torch.equal(tfla.mlstm(q, inp["k"], inp["v"], inp["i"], inp["f"]), h_ref)


def test_cuda_argument_errors():
    inp = R.random_inputs(1, 1, 64, 64, 64, dtype=torch.bfloat16, device="cuda", seed=47)
    args = [inp[x] for x in "qkvif"]
    with pytest.raises(ValueError, match=r"chunk_size is 100; the CUDA backend needs a multiple of 64"):
        tfla.mlstm(*args, chunk_size=100)
    q12 = torch.zeros(1, 1, 64, 12, dtype=torch.bfloat16, device="cuda")
    with pytest.raises(ValueError, match=r"multiples of 8; got Dk=12"):
        tfla.mlstm(q12, q12, inp["v"], inp["i"], inp["f"])
    with pytest.raises(ValueError, match=r"k is on cpu, but q is on cuda"):
        tfla.mlstm(args[0], args[1].cpu(), *args[2:])


def test_mixed_devices_index():
    if torch.cuda.device_count() < 2:
        pytest.skip("one GPU")
    inp = R.random_inputs(1, 1, 64, 64, 64, dtype=torch.bfloat16, device="cuda:1", seed=48)
    h = tfla.mlstm(*(inp[x] for x in "qkvif"))
    assert h.device == torch.device("cuda:1")
