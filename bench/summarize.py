#!/usr/bin/env python3
"""Summarize a benchmark JSONL (tfla-bench --json lines and bench/peers/*.py lines) as a Markdown table.

For each S and variant: tfla at each chunk size against the Triton reference at chunk 128 (ratio > 1 means
tfla is faster), the forward's TFLOP/s (spec runtime model) and its time over the read-once/write-once floor
(q, k, v, i, f read once, h written once, at the copy bandwidth measured in ../shared/ANCHORS.md: 3.02 TB/s).
usage: python3 bench/summarize.py results.jsonl
"""
import json
import sys

COPY_BW = 3.02e12  # bytes/s, device-to-device copy (read + write), H100 80GB HBM3, ANCHORS.md


def floor_ms(r):
    n = r["B"] * r["H"] * r["S"]
    dk, dv = r.get("Dk", r.get("dk")), r.get("Dv", r.get("dv"))
    xb = 2  # bf16
    gb = 4 if r.get("gate_dtype", "f32") == "f32" else 2
    return n * ((2 * dk + 2 * dv) * xb + 2 * gb) / COPY_BW * 1e3


def main() -> int:
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
    tri = {}
    for r in rows:
        if r.get("kernel", "").startswith("triton") and r.get("ok"):
            tri[(r["S"], r["variant"])] = r
    print("| S | variant | kernel | L | fw ms | fwbw ms | fw speedup vs Triton | fwbw speedup | fw TFLOP/s | fw / floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("tool") == "tfla-bench":
            key = (r["S"], r["variant"])
            t = tri.get(key)
            fw, fwbw = r["fwd_ms"], r["fwdbwd_ms"]
            sp = f"{t['fw_ms'] / fw:.2f}x" if t else "-"
            spb = f"{t['fwbw_ms'] / fwbw:.2f}x" if t else "-"
            name = f"tfla {r['variant']}" + (" norm0" if r["variant"] == "sig" and not r["normalize"] else "")
            if r.get("forward_path", "auto") != "auto":
                name += f" ({r['forward_path']} fw)"
            if r.get("backward_path", "auto") != "auto":
                name += f" ({r['backward_path']} bw)"
            print(f"| {r['S']} | {r['variant']} | {name} | {r['chunk']} | {fw:.3f} | {fwbw:.3f} | {sp} | {spb} | "
                  f"{r['fwd_tflops']:.0f} | {fw / floor_ms(r):.1f}x |")
        elif r.get("kernel", "").startswith("triton"):
            if r.get("ok"):
                print(f"| {r['S']} | {r['variant']} | {r['kernel']} | {r['chunk']} | {r['fw_ms']:.3f} | "
                      f"{r['fwbw_ms']:.3f} | 1.00x | 1.00x | - | - |")
            else:
                print(f"| {r['S']} | {r['variant']} | {r['kernel']} | {r['chunk']} | failed: {r.get('error', '')[:60]} |||||")
    return 0


if __name__ == "__main__":
    sys.exit(main())
