#!/usr/bin/env python3
"""Time the Triton reference (mlstm_kernels 2.0.6) on one shape or a list of shapes; print JSON lines.

Kernels: --kernel xl (TFLA "xl_chunk": mLSTMexp, or mLSTMsig "xl_chunk_siging" with --variant sig and
--normalize 0|1) or --kernel limit ("limit_chunk", mLSTMexp, chunk <= 64).

A measuring stick only: it imports the peer from PYTHONPATH (wheels carried to the GPU machine, see
bench/NOTES.md); none of its code is part of tfla. Run one process per kernel so that a peer crash is
recorded and does not end the whole run (bench/suite.py does).

Inputs as in ../shared/ANCHORS.md: bf16 q/k/v ~ randn, igate ~ randn, fgate ~ 3 + randn; the mLSTMexp
kernels get fp32 gates (their bf16-gate build crashes Triton 3.6), mLSTMsig bf16 gates; fwbw = forward +
backward(dh) with dh ~ randn. Timing method: bench/peers/common.py (CUDA events, L2 flush, fresh inputs,
gradients cleared, median of --reps, peak memory).

Two ways to call it:
  one point (as scripts/gpu_check.sh does; one JSON line with fw_ms, fwbw_ms, ok):
    triton_mlstm.py --variant sig --normalize 0 -S 8192 [--tokens 65536 -H 16 --dk 128 --dv 256 --chunk 128]
  a list of points (bench/suite.py):
    triton_mlstm.py --kernel xl --variant exp --points '[{"B":8,"H":16,"S":8192,"dk":128,"dv":256,"chunk":128}]'
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def kernel_name(kind, variant, normalize):
    if kind == "limit":
        return "triton_limit_exp"
    return "triton_exp" if variant == "exp" else f"triton_sig_norm{normalize}"


def main():
    ap = common.base_parser(__doc__)
    ap.add_argument("--kernel", choices=["xl", "limit"], default="xl")
    ap.add_argument("--variant", choices=["exp", "sig"], default="exp")
    ap.add_argument("--normalize", type=int, default=0, help="sig only (default 0, as in the anchors)")
    ap.add_argument("-S", type=int, help="one point: sequence length (B = tokens / S)")
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("-H", type=int, default=16)
    ap.add_argument("--dk", type=int, default=128)
    ap.add_argument("--dv", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=None, help="one point: chunk size [xl: 128, limit: 64]")
    args = ap.parse_args()
    if args.kernel == "limit" and args.variant != "exp":
        ap.error("--kernel limit exists for mLSTMexp only")
    points = common.load_points(args.points)
    legacy = not points  # one point from the command line, as scripts/gpu_check.sh calls it: no meta line
    if not points:
        if not args.S:
            ap.error("give -S (one point) or --points")
        chunk = args.chunk or (64 if args.kernel == "limit" else 128)
        points = [{"B": max(1, args.tokens // args.S), "H": args.H, "S": args.S, "dk": args.dk, "dv": args.dv,
                   "chunk": chunk, "tokens": args.tokens}]
    name = kernel_name(args.kernel, args.variant, args.normalize)
    base = {"variant": args.variant, "normalize": 1 if args.variant == "exp" else args.normalize,
            "dtype": "bf16", "gate_dtype": "f32" if args.variant == "exp" else "bf16"}
    try:
        runner = common.Runner(args)
        t = runner.torch
        if args.kernel == "limit":
            from mlstm_kernels.torch.chunkwise.triton_limit_chunk import mlstm_chunkwise__limit_chunk as fn
            kw = {}
        elif args.variant == "exp":
            from mlstm_kernels.torch.chunkwise.triton_xl_chunk import mlstm_chunkwise__xl_chunk as fn
            kw = {}
        else:
            from mlstm_kernels.torch.chunkwise.triton_xl_chunk_siging import mlstm_siging_chunkwise__xl_chunk as fn
            kw = {"normalize": bool(args.normalize)}
    except BaseException as e:  # not installed, no GPU: one row per point says so
        return common.emit_unavailable(name, base, points, e)

    def build(pt, r):
        B, H, S, dk, dv, L = pt["B"], pt["H"], pt["S"], pt["dk"], pt["dv"], pt["chunk"]
        bf = t.bfloat16
        gdt = t.float32 if args.variant == "exp" else t.bfloat16
        q = common.randn(r, (B, H, S, dk), bf, requires_grad=True)
        k = common.randn(r, (B, H, S, dk), bf, requires_grad=True)
        v = common.randn(r, (B, H, S, dv), bf, requires_grad=True)
        i = common.randn(r, (B, H, S), gdt, requires_grad=True)
        f = common.randn(r, (B, H, S), gdt, mean=3.0, requires_grad=True)
        dh = common.randn(r, (B, H, S, dv), bf)

        def fw():
            return fn(q, k, v, i, f, chunk_size=L, **kw)

        def fwbw():
            fn(q, k, v, i, f, chunk_size=L, **kw).backward(dh)

        return common.Setup(fw, fwbw, refresh=[(q, 0.0), (k, 0.0), (v, 0.0), (i, 0.0), (f, 3.0), (dh, 0.0)],
                            grads=[q, k, v, i, f], io_bytes=common.nbytes(q, k, v, i, f, dh))

    return runner.run(name, points, build, meta_extra={"mlstm_kernels": common.pkg_version("mlstm_kernels")},
                      base_fields=base, meta=not legacy)


if __name__ == "__main__":
    sys.exit(main())
