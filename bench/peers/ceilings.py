#!/usr/bin/env python3
"""Measure the GPU's two ceilings for the runtime model (bench/runtime_model.py); print one JSON line.

- bf16 GEMM: torch.matmul of two 8192 x 8192 bf16 matrices ~ randn (2 * 8192^3 FLOPs), median of --reps.
- device copy: dst.copy_(src) of --copy-mib MiB (default 2048), bytes read + written, median of --reps.
Each call is preceded by an L2 flush (a 256 MB buffer zeroed, outside the event pair). Also reports the
device name, SM count, L2 size, memory, torch/CUDA/cuDNN/Triton versions.
"""
import argparse
import json
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("-n", type=int, default=8192, help="GEMM size n (n x n times n x n)")
    ap.add_argument("--copy-mib", type=int, default=2048)
    a = ap.parse_args()
    rec = {"kind": "ceilings"}
    try:
        import torch
        rec.update({"torch": torch.__version__, "torch_cuda": torch.version.cuda})
        try:
            import triton
            rec["triton"] = triton.__version__
        except Exception:
            rec["triton"] = None
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device visible to torch")
        p = torch.cuda.get_device_properties(0)
        rec.update({"device": torch.cuda.get_device_name(), "sm_count": p.multi_processor_count,
                    "l2_bytes": getattr(p, "L2_cache_size", None), "total_memory_bytes": p.total_memory,
                    "compute_capability": f"{p.major}.{p.minor}", "cudnn": torch.backends.cudnn.version()})
        flush = torch.empty(256 * 1024 * 1024, dtype=torch.int8, device="cuda")

        def bench(fn):
            for _ in range(a.warmup):
                fn()
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(a.reps)]
            for e0, e1 in ev:
                flush.zero_()
                e0.record()
                fn()
                e1.record()
            torch.cuda.synchronize()
            return [e0.elapsed_time(e1) for e0, e1 in ev]

        def gemm_ms():
            x = torch.randn(a.n, a.n, device="cuda", dtype=torch.bfloat16)
            y = torch.randn(a.n, a.n, device="cuda", dtype=torch.bfloat16)
            out = torch.empty(a.n, a.n, device="cuda", dtype=torch.bfloat16)
            return bench(lambda: torch.matmul(x, y, out=out))

        ms = gemm_ms()
        t = statistics.median(ms)
        rec.update({"gemm_n": a.n, "gemm_ms": t, "gemm_tflops": 2 * a.n ** 3 / (t * 1e-3) / 1e12,
                    "gemm_ms_all": [round(v, 5) for v in ms]})
        nbytes = a.copy_mib * 1024 * 1024
        src = torch.randn(nbytes // 4, device="cuda", dtype=torch.float32)
        dst = torch.empty_like(src)
        ms = bench(lambda: dst.copy_(src))
        t = statistics.median(ms)
        rec.update({"copy_bytes": nbytes, "copy_ms": t, "copy_tbs": 2 * nbytes / (t * 1e-3) / 1e12,
                    "copy_ms_all": [round(v, 5) for v in ms]})
        rec["ok"] = True
    except Exception as e:
        rec.update({"ok": False, "error": f"{type(e).__name__}: {e}"[:500]})
    print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
