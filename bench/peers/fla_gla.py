#!/usr/bin/env python3
"""Time FLA's chunk_simple_gla (flash-linear-attention / fla-core 0.6.0) on a list of points; JSON lines.

chunk_simple_gla with a per-token scalar forget gate is the unnormalized mLSTMsig without its input gate:
h_t = C_t^T q_t, C_t = exp(g_t) C_{t-1} + k_t v_t^T with g_t = logsigmoid(f_t). The forward computes g from
the forget-gate pre-activation f inside the timed call; the sigmoid input gate (one elementwise scaling of
k) is not applied. Layout (B, S, H, D) as FLA expects; bf16 q/k/v ~ randn, f ~ 3 + randn (fp32);
chunk size: FLA's default (64). Method: bench/peers/common.py.

FLA refuses its gated backward (chunk_bwd_dqkwg) on Hopper with Triton >= 3.4 and < 3.7.1, where it reports
wrong results (its issue #640). The guard is kept: the forward+backward row then carries FLA's own message
as fwbw_error, with fwbw_status "refused". (../shared/ANCHORS.md gives fwbw times taken with the guard
switched off, for timing only.) A forward+backward reaches that guard only after autotuning the fp32-state
forward and the dh kernels that run before it (by config count ~2/3 of the 91 s the first point took in
bench/results/2026-11-26-h100-suite-overrun, for nothing), so the worker asks the guard first: where FLA's own flags say it applies, it calls chunk_bwd_dqkwg on tiny tensors, which raises
the same error before launching anything, and no forward+backward is tried (fwbw_note says so). Where the
guard does not apply the forward+backward is timed as usual; a refusal met there is not retried at the
later points (bench/peers/common.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def guard_refusal(t, dev):
    """FLA's own refusal of its gated backward, asked up front: its message, or None where it does not apply.

    chunk_bwd_dqkwg raises on its first line when a gate is given on Hopper with Triton >= 3.4 and < 3.7.1
    (the flags it tests are module constants of fla.ops.common.chunk_o). It is called only when those flags
    say it will raise; the tensors are tiny but well formed, so that a backend FLA dispatches to instead
    (tilelang) would simply compute."""
    try:
        chunk_o = common.import_skipping_init("fla", "ops.common.chunk_o")
        if not (getattr(chunk_o, "IS_NVIDIA_HOPPER", False) and getattr(chunk_o, "TRITON_ABOVE_3_4_0", False)
                and not getattr(chunk_o, "TRITON_ABOVE_3_7_1", True)):
            return None
        B, T, H, K = 1, 64, 1, 16
        x = t.zeros(B, T, H, K, device=dev, dtype=t.bfloat16)
        h = t.zeros(B, 1, H, K, K, device=dev, dtype=t.float32)
        g = t.zeros(B, T, H, device=dev, dtype=t.float32)
        chunk_o.chunk_bwd_dqkwg(q=x, k=x, v=x, do=x, h=h, dh=h, g=g, scale=1.0, chunk_size=64)
    except RuntimeError as e:
        msg = f"{type(e).__name__}: {e}"
        return msg if "incorrect results" in msg else None
    except Exception:
        return None
    return None


def main():
    ap = common.base_parser(__doc__)
    args = ap.parse_args()
    points = common.load_points(args.points)
    name = "fla_simple_gla"
    base = {"variant": "sig", "normalize": 0, "dtype": "bf16", "gate_dtype": "f32", "layout": "bshd"}
    try:
        runner = common.Runner(args)
        t = runner.torch
        import torch.nn.functional as F
        # fla/__init__ also imports FLA's model classes (and transformers), which the kernel does not need
        chunk_simple_gla = common.import_skipping_init("fla", "ops.simple_gla").chunk_simple_gla
    except BaseException as e:
        return common.emit_unavailable(name, base, points, e)

    runner.refusal["fwbw"] = lambda msg: "incorrect results" in msg  # FLA's guard (fla/ops/common/chunk_o.py)
    if "fwbw" in args.modes.split(",") and runner.cuda:
        msg = guard_refusal(t, runner.dev)
        if msg:
            common.log(f"fwbw refused by FLA's guard (asked before the first call): {msg[:200]}")
            runner.refuse("fwbw", msg, "not tried: FLA's guard (chunk_bwd_dqkwg), called before the first "
                                      "forward+backward, raised this error; no kernel ran")

    def build(pt, r):
        B, H, S, dk, dv = pt["B"], pt["H"], pt["S"], pt["dk"], pt["dv"]
        L = pt.get("chunk") or 64
        bf = t.bfloat16 if r.cuda else t.float32
        q = common.randn(r, (B, S, H, dk), bf, requires_grad=True)
        k = common.randn(r, (B, S, H, dk), bf, requires_grad=True)
        v = common.randn(r, (B, S, H, dv), bf, requires_grad=True)
        f = common.randn(r, (B, S, H), t.float32, mean=3.0, requires_grad=True)
        do = common.randn(r, (B, S, H, dv), bf)
        kw = {"chunk_size": L}

        def fw():
            return chunk_simple_gla(q, k, v, g=F.logsigmoid(f), **kw)[0]

        def fwbw():
            o, _ = chunk_simple_gla(q, k, v, g=F.logsigmoid(f), **kw)
            o.backward(do)

        return common.Setup(fw, fwbw, refresh=[(q, 0.0), (k, 0.0), (v, 0.0), (f, 3.0), (do, 0.0)],
                            grads=[q, k, v, f], meta={"chunk": L}, io_bytes=common.nbytes(q, k, v, f, do))

    extra = {"fla_core": common.pkg_version("fla-core"),
             "flash_linear_attention": common.pkg_version("flash-linear-attention")}
    return runner.run(name, points, build, meta_extra=extra, base_fields=base)


if __name__ == "__main__":
    sys.exit(main())
