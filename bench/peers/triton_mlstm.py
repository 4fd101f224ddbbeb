#!/usr/bin/env python3
"""Time the Triton reference (mlstm_kernels 2.0.6, TFLA "xl_chunk" kernels) on one shape; print one JSON line.

A measuring stick only: it imports the peer from PYTHONPATH (wheels carried to the GPU machine, see
../../bench/README.md); none of its code is part of tfla. Run one process per kernel so that a peer crash
is recorded and does not end the whole run.

Method (as in ../shared/ANCHORS.md): bf16 q/k/v ~ randn, igate ~ randn, fgate ~ 3 + randn; the mLSTMexp
kernel gets fp32 gates (its bf16-gate build crashes Triton 3.6); median of triton.testing.do_bench
(warm-up 25 ms, rep 100 ms); fwbw = forward + backward(randn_like(h)).
"""
import argparse
import json
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", choices=["exp", "sig"], required=True)
    ap.add_argument("--normalize", type=int, default=0, help="sig only (default 0, as in the anchors)")
    ap.add_argument("-S", type=int, required=True)
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("-H", type=int, default=16)
    ap.add_argument("--dk", type=int, default=128)
    ap.add_argument("--dv", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=128)
    args = ap.parse_args()

    import torch
    import triton

    rec = {"kernel": f"triton_{args.variant}" + ("" if args.variant == "exp" else f"_norm{args.normalize}"),
           "variant": args.variant, "S": args.S, "B": args.tokens // args.S, "H": args.H, "dk": args.dk,
           "dv": args.dv, "chunk": args.chunk, "torch": torch.__version__, "triton": triton.__version__,
           "device": torch.cuda.get_device_name()}
    try:
        if args.variant == "exp":
            from mlstm_kernels.torch.chunkwise.triton_xl_chunk import mlstm_chunkwise__xl_chunk as fn
            kw = {}
        else:
            from mlstm_kernels.torch.chunkwise.triton_xl_chunk_siging import mlstm_siging_chunkwise__xl_chunk as fn
            kw = {"normalize": bool(args.normalize)}
        B = args.tokens // args.S
        dev = "cuda"
        torch.manual_seed(0)
        q = torch.randn(B, args.H, args.S, args.dk, device=dev, dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(B, args.H, args.S, args.dk, device=dev, dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(B, args.H, args.S, args.dv, device=dev, dtype=torch.bfloat16, requires_grad=True)
        gdt = torch.float32 if args.variant == "exp" else torch.bfloat16
        i = torch.randn(B, args.H, args.S, device=dev, dtype=gdt, requires_grad=True)
        f = (3.0 + torch.randn(B, args.H, args.S, device=dev, dtype=gdt)).requires_grad_(True)

        def fw():
            with torch.no_grad():
                return fn(q, k, v, i, f, chunk_size=args.chunk, **kw)

        dh = torch.randn(B, args.H, args.S, args.dv, device=dev, dtype=torch.bfloat16)

        def fwbw():
            h = fn(q, k, v, i, f, chunk_size=args.chunk, **kw)
            h.backward(dh)

        rec["fw_ms"] = triton.testing.do_bench(fw, warmup=25, rep=100, return_mode="median")
        rec["fwbw_ms"] = triton.testing.do_bench(fwbw, warmup=25, rep=100, grad_to_none=[q, k, v, i, f],
                                                 return_mode="median")
        rec["ok"] = True
    except Exception as e:  # recorded, not fatal: the driver keeps going with the next kernel
        rec["ok"] = False
        rec["error"] = f"{type(e).__name__}: {e}"[:500]
    print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
