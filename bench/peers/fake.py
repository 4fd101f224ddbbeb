#!/usr/bin/env python3
"""A stand-in worker for `bench/suite.py --dry-run`: no GPU, no torch. It prints rows of the same form as
the real workers (or, with --tfla-bench, one line of the form of `tfla-bench --json`) with made-up times:
the runtime model's prediction (bench/runtime_model.py, H100 ceilings) times a per-kernel factor near the
measured ratios of ../shared/ANCHORS.md, plus noise. Its numbers are NOT measurements; they exist to test
the driver, the report and the plots end to end.

Fault injection (to test the driver's crash and timeout handling):
  --crash-at I   exit with status 139 (as a segfault does) when point I (0-based) starts
  --hang-at I    stop printing and sleep when point I starts (the driver's watchdog must kill it)
  --fatal-at I   report point I as failed with a CUDA error, then exit with status 3 (as common.py does when
                 the CUDA context is lost)
  --refuse-fwbw  forward+backward refused as FLA's Hopper guard does: at the first point, then not tried again
                 (the rows say so, as bench/peers/common.py writes them)
"""
import argparse
import json
import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import runtime_model as rm  # noqa: E402

# fw and fwbw time over the model prediction (roofline, H100) at the chunk size used; ANCHORS-like.
FACTORS = {
    "tfla_sig_norm0": (4.0, 4.8), "tfla_exp": (4.1, 4.9),
    "triton_sig_norm0": (2.1, 2.5), "triton_exp": (2.9, 3.2), "triton_limit_exp": (2.0, 2.4),
    "fla_simple_gla": (2.0, 2.9), "mamba2_ssd": (2.6, 3.0),
}
ATTN_TFLOPS = {"sdpa_cudnn": (600e12, 410e12), "sdpa_flash": (270e12, 260e12), "sdpa_math": (50e12, 50e12)}


def fake_times(kernel, pt, rnd, reps):
    B, H, S, dk, dv = pt["B"], pt["H"], pt["S"], pt["dk"], pt["dv"]
    L = pt.get("chunk") or 64
    ceil = rm.Ceilings()
    if kernel in ATTN_TFLOPS:
        Ha, D = pt.get("attn_heads") or H, pt.get("attn_dim") or dv
        ff, fb = ATTN_TFLOPS[kernel]
        fw = rm.attn_fw_flops(B, Ha, S, D) / ff * 1e3 + 0.02
        fwbw = fw + rm.attn_bw_flops(B, Ha, S, D) / fb * 1e3 + 0.05
        mem = B * Ha * S * D * 2 * 4 + B * Ha * S * 4
        return fw, fwbw, mem, 0.4 * mem
    gb = 4 if kernel in ("tfla_exp", "triton_exp", "triton_limit_exp") else 2
    p = rm.predict(B, H, S, dk, dv, L, ceil, gb)
    f1, f2 = FACTORS.get(kernel, (3.0, 3.5))
    if kernel.startswith("triton") and L > 128:  # Triton's large chunks cost more than the model says
        f1, f2 = f1 * (1 + 0.3 * math.log2(L / 128)), f2 * (1 + 0.3 * math.log2(L / 128))
    if kernel.startswith("tfla") and S >= 32768:  # the sequential state walk of v1 at B = 1, 2
        f1, f2 = f1 * 1.6, f2 * 1.5
    states = 2 * B * H * math.ceil(S / min(L, S)) * dk * dv * 4
    fw_extra = B * H * S * dv * 2 + states // 2
    fwbw_extra = B * H * S * (2 * dk + 2 * dv) * 2 + states
    return p["fw_pred_ms"] * f1, p["fwbw_pred_ms"] * f2, fwbw_extra, fw_extra


def series(med, n, rnd):
    return [round(med * (1 + rnd.gauss(0, 0.01)), 6) for _ in range(n)]


def tfla_bench_mode(argv):
    ap = argparse.ArgumentParser()
    for o in ("-B", "-H", "-S", "--dk", "--dv", "--chunk", "--reps", "--warmup", "--normalize", "--seed"):
        ap.add_argument(o, type=int, default=0)
    for o in ("--variant", "--gate-dtype", "--dtype", "--device"):
        ap.add_argument(o, default="")
    for o in ("--json", "--no-check", "--no-header", "--flush-l2"):
        ap.add_argument(o, action="store_true")
    a = ap.parse_args(argv)
    kernel = "tfla_exp" if a.variant == "exp" else f"tfla_sig_norm{a.normalize}"
    rnd = random.Random(hash((kernel, a.B, a.S, a.dk, a.chunk)) & 0xffff)
    pt = {"B": a.B, "H": a.H, "S": a.S, "dk": a.dk, "dv": a.dv, "chunk": a.chunk}
    fw, fwbw, fwbw_extra, fw_extra = fake_times(kernel, pt, rnd, a.reps)
    bw = fwbw - fw
    tok = a.B * a.H * a.S
    io = tok * ((2 * a.dk + 2 * a.dv) * 2 + 2 * (4 if a.gate_dtype == "f32" else 2))
    ws = 2 * a.B * a.H * math.ceil(a.S / min(a.chunk, a.S)) * a.dk * a.dv * 4
    rec = {"tool": "tfla-bench", "tfla_version": "0.1.0", "device": "cuda",
           "device_name": "CUDA device 0: FAKE (dry run)", "variant": a.variant, "normalize": a.normalize,
           "B": a.B, "H": a.H, "S": a.S, "Dk": a.dk, "Dv": a.dv, "chunk": a.chunk, "dtype": "bf16",
           "gate_dtype": a.gate_dtype, "layout": "bhsd", "state": False, "reps": a.reps, "warmup": a.warmup,
           "fwd_ms": fw, "bwd_ms": bw, "fwdbwd_ms": fw + bw, "fwd_ms_all": series(fw, a.reps, rnd),
           "bwd_ms_all": series(bw, a.reps, rnd), "tensor_bytes": 2 * io, "io_bytes": io,
           "workspace_fwd_bytes": ws, "workspace_bwd_bytes": ws, "workspace_bytes": ws, "peak_bytes": 2 * io + ws,
           "fwd_extra_bytes": fw_extra, "fwdbwd_extra_bytes": fwbw_extra, "memgetinfo_delta_bytes": None,
           "l2_flush_bytes": 104857600, "fresh_inputs": False, "checked_pairs": 0, "errors": {}, "check": "skipped"}
    time.sleep(0.05)
    print(json.dumps(rec), flush=True)
    return 0


def main():
    if "--tfla-bench" in sys.argv:
        return tfla_bench_mode([x for x in sys.argv[1:] if x != "--tfla-bench"])
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--points", required=True)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--deadline", type=float, default=0)
    ap.add_argument("--crash-at", type=int, default=-1)
    ap.add_argument("--hang-at", type=int, default=-1)
    ap.add_argument("--fatal-at", type=int, default=-1)
    ap.add_argument("--refuse-fwbw", action="store_true")
    ap.add_argument("--base", default="{}", help="JSON of fields every row carries")
    a, _ = ap.parse_known_args()
    spec = open(a.points[1:]).read() if a.points.startswith("@") else a.points
    pts = json.loads(spec)
    print(json.dumps({"meta": {"kernel": a.kernel, "versions": {"fake": True, "torch": "n/a (dry run)"},
                               "reps": a.reps, "warmup": a.warmup, "l2_flush_bytes": 268435456,
                               "fresh_inputs": True}}), flush=True)
    refused_at = None
    for i, pt in enumerate(pts):
        if i == a.crash_at:
            print(f"fake: crashing at point {i}", file=sys.stderr, flush=True)
            os._exit(139)
        if i == a.hang_at:
            print(f"fake: hanging at point {i}", file=sys.stderr, flush=True)
            time.sleep(3600)
        rec = {"kernel": a.kernel, **json.loads(a.base), **pt, "reps": a.reps, "warmup": a.warmup,
               "l2_flush_bytes": 268435456, "fresh_inputs": True, "timing": "FAKE (dry run)"}
        if a.deadline and time.time() > a.deadline:
            rec.update({"status": "skipped", "ok": False, "error": "time budget of the suite used up"})
            print(json.dumps(rec), flush=True)
            continue
        if i == a.fatal_at:
            rec.update({"status": "error", "ok": False,
                        "error": "RuntimeError: CUDA error: an illegal memory access was encountered (fake)"})
            print(json.dumps(rec), flush=True)
            os._exit(3)
        rnd = random.Random(hash((a.kernel, pt.get("S"), pt.get("dk"), pt.get("chunk"))) & 0xffff)
        fw, fwbw, fwbw_extra, fw_extra = fake_times(a.kernel, pt, rnd, a.reps)
        rec.update({"fw_ms": fw, "fw_ms_all": series(fw, a.reps, rnd), "fw_peak_extra_bytes": int(fw_extra)})
        if a.refuse_fwbw:
            rec["fwbw_error"] = ("RuntimeError: Triton >= 3.4.0 and < 3.7.1 on Hopper GPUs produces incorrect "
                                 "results for gated chunk_bwd_dqkwg (see #640). (fake)")
            rec["fwbw_status"] = "refused"
            if refused_at is None:
                refused_at = i + 1
            else:
                rec["fwbw_note"] = (f"not tried again: the peer's own guard refused it at point {refused_at} of this "
                                    f"worker")
            rec["status"] = "partial"
        else:
            rec.update({"fwbw_ms": fwbw, "fwbw_ms_all": series(fwbw, a.reps, rnd),
                        "fwbw_peak_extra_bytes": int(fwbw_extra), "status": "ok"})
        rec["ok"] = rec["status"] == "ok"
        time.sleep(0.02)
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
