#!/usr/bin/env python3
"""The runtime model of docs/spec-mlstm.md ("Runtime model") as a tool: FLOPs, bytes, arithmetic intensity,
the floor and the predicted time and best chunk size of the chunkwise mLSTM on a GPU whose two ceilings
(bf16 GEMM rate, device copy bandwidth) were measured (bench/peers/ceilings.py; the suite stores them in
env.json).

Counts, per (batch, head), N = S tokens, L = min(chunk, S), c = 1/2 (masked causal tiles skipped), bf16
q/k/v/h (b_in = 2 bytes), gates of b_gate bytes, fp32 boundary states (b_state = 4):

  forward   FLOPs = N * [4*Dk*Dv + 2*c*L*(Dk+Dv)]                      (spec; = tfla-bench's count)
            bytes = N * [(2*Dk + 2*Dv)*b_in + 2*b_gate]                (q, k, v, i, f read; h written)
                  + 2 * ceil(N/L) * Dk*Dv * b_state                    (boundary states written, read back)
  backward  FLOPs = N * [8*Dk*Dv + 2*c*L*(3*Dk + 2*Dv)]                (tfla-bench's count)
            bytes = N * [(2*Dk + 2*Dv)*b_in + (2*Dk + Dv)*b_in + 4*b_gate]   (q, k, v, dh, i, f read;
                                                                              dq, dk, dv, di, df written)
                  + 4 * ceil(N/L) * Dk*Dv * b_state                    (states C and dC, each written and read)

Predicted time (roofline, perfect overlap): t(L) = max(FLOPs(L) / GEMM rate, bytes(L) / copy bandwidth).
The predicted best chunk size is the L of the candidate list (multiples of 64, powers of two up to S) with the
smallest t(L) (ties: the smaller L). The additive model t = FLOPs/rate + bytes/bandwidth (no overlap) is
given too: its continuous optimum is L* = sqrt(state-bytes term / intra-chunk FLOP term).

The floor no design beats: max(io bytes / bandwidth, recurrent FLOPs / rate), with io bytes = the inputs read
once and the outputs written once (no state traffic) and recurrent FLOPs = N * 4*Dk*Dv (forward) or
N * 12*Dk*Dv (forward + backward). "Fraction of the floor" = floor / measured time (1.0 = at the floor).

Attention (causal, for the peers' TFLOP/s only): forward 4*S^2*D/2 per (batch, head), backward 2.5x that.

usage: python3 bench/runtime_model.py -H 16 --dk 128 --dv 256 -S 8192 [--tokens 65536] [--variant sig|exp]
           [--env bench/results/<run>/env.json | --gemm-tflops 780 --copy-tbs 3.02] [--json]
"""
import argparse
import json
import math
import sys

# Fallback ceilings (H100 80GB HBM3, ../shared/ANCHORS.md) when none were measured: bf16 GEMM 8192^3 and
# device-to-device copy (bytes read + written).
DEFAULT_GEMM_FLOPS = 780e12
DEFAULT_COPY_BPS = 3.02e12


def _nchunks(S, L):
    return math.ceil(S / L)


def eff_chunk(S, L):
    return min(int(L), int(S))


def fw_flops(B, H, S, Dk, Dv, L):
    L = eff_chunk(S, L)
    return B * H * S * (4 * Dk * Dv + L * (Dk + Dv))


def bw_flops(B, H, S, Dk, Dv, L):
    L = eff_chunk(S, L)
    return B * H * S * (8 * Dk * Dv + L * (3 * Dk + 2 * Dv))


def fw_io_bytes(B, H, S, Dk, Dv, b_in=2, b_gate=2):
    return B * H * S * ((2 * Dk + 2 * Dv) * b_in + 2 * b_gate)


def bw_io_bytes(B, H, S, Dk, Dv, b_in=2, b_gate=2):
    return B * H * S * ((2 * Dk + 2 * Dv) * b_in + (2 * Dk + Dv) * b_in + 4 * b_gate)


def fw_bytes(B, H, S, Dk, Dv, L, b_in=2, b_gate=2, b_state=4):
    L = eff_chunk(S, L)
    return fw_io_bytes(B, H, S, Dk, Dv, b_in, b_gate) + 2 * B * H * _nchunks(S, L) * Dk * Dv * b_state


def bw_bytes(B, H, S, Dk, Dv, L, b_in=2, b_gate=2, b_state=4):
    L = eff_chunk(S, L)
    return bw_io_bytes(B, H, S, Dk, Dv, b_in, b_gate) + 4 * B * H * _nchunks(S, L) * Dk * Dv * b_state


def attn_fw_flops(B, H, S, D, causal=True):
    return 4 * B * H * S * S * D * (0.5 if causal else 1.0)


def attn_bw_flops(B, H, S, D, causal=True):
    return 2.5 * attn_fw_flops(B, H, S, D, causal)


def attn_fw_io_bytes(B, H, S, D, b_in=2):
    return B * H * S * 4 * D * b_in  # q, k, v read, o written


def attn_bw_io_bytes(B, H, S, D, b_in=2):
    return B * H * S * 8 * D * b_in  # q, k, v, o, do read; dq, dk, dv written


def candidate_chunks(S, lo=64, hi=4096):
    out, L = [], lo
    while L <= min(S, hi):
        out.append(L)
        L *= 2
    return out or [min(S, lo)]


class Ceilings:
    def __init__(self, gemm_flops=DEFAULT_GEMM_FLOPS, copy_bps=DEFAULT_COPY_BPS, source="ANCHORS.md (H100)"):
        self.gemm = float(gemm_flops)
        self.bw = float(copy_bps)
        self.source = source

    @classmethod
    def from_env(cls, env):
        c = (env or {}).get("ceilings") or {}
        if c.get("gemm_tflops") and c.get("copy_tbs"):
            return cls(c["gemm_tflops"] * 1e12, c["copy_tbs"] * 1e12, "measured: " + c.get("device", "this GPU"))
        return cls()

    def ridge(self):
        """Arithmetic intensity (FLOP/byte) where the two roofs meet."""
        return self.gemm / self.bw


def predict(B, H, S, Dk, Dv, L, ceil, b_gate=2, b_in=2, b_state=4):
    """Model numbers of one (shape, chunk) on one GPU; times in ms."""
    ff, fb = fw_flops(B, H, S, Dk, Dv, L), fw_bytes(B, H, S, Dk, Dv, L, b_in, b_gate, b_state)
    bf, bb = bw_flops(B, H, S, Dk, Dv, L), bw_bytes(B, H, S, Dk, Dv, L, b_in, b_gate, b_state)
    t = lambda fl, by: max(fl / ceil.gemm, by / ceil.bw) * 1e3
    ts = lambda fl, by: (fl / ceil.gemm + by / ceil.bw) * 1e3
    fio, bio = fw_io_bytes(B, H, S, Dk, Dv, b_in, b_gate), bw_io_bytes(B, H, S, Dk, Dv, b_in, b_gate)
    tok = B * H * S
    return {
        "chunk": eff_chunk(S, L),
        "fw_flops": ff, "fw_bytes": fb, "fw_ai": ff / fb,
        "fwbw_flops": ff + bf, "fwbw_bytes": fb + bb, "fwbw_ai": (ff + bf) / (fb + bb),
        "fw_pred_ms": t(ff, fb), "fwbw_pred_ms": t(ff, fb) + t(bf, bb),
        "fw_pred_serial_ms": ts(ff, fb), "fwbw_pred_serial_ms": ts(ff, fb) + ts(bf, bb),
        "fw_bound": "compute" if ff / ceil.gemm > fb / ceil.bw else "memory",
        "fw_floor_ms": max(fio / ceil.bw, tok * 4 * Dk * Dv / ceil.gemm) * 1e3,
        "fwbw_floor_ms": max((fio + bio) / ceil.bw, tok * 12 * Dk * Dv / ceil.gemm) * 1e3,
    }


def best_chunk(B, H, S, Dk, Dv, ceil, b_gate=2, which="fw", candidates=None):
    """(best L, its predicted ms) over the candidate chunk sizes, by the roofline time; ties -> smaller L."""
    cands = candidates or candidate_chunks(S)
    key = f"{which}_pred_ms"
    best = min(cands, key=lambda L: (round(predict(B, H, S, Dk, Dv, L, ceil, b_gate)[key], 9), L))
    return best, predict(B, H, S, Dk, Dv, best, ceil, b_gate)[key]


def serial_optimum(B, H, S, Dk, Dv, ceil, which="fw", b_state=4):
    """Continuous L minimizing the additive (no-overlap) model: sqrt(state term / intra-chunk term)."""
    tok = B * H * S
    if which == "fw":
        a = tok * (Dk + Dv) / ceil.gemm                       # seconds per unit of L
        b = 2 * B * H * S * Dk * Dv * b_state / ceil.bw       # seconds * L
    else:
        a = tok * ((Dk + Dv) + (3 * Dk + 2 * Dv)) / ceil.gemm
        b = 6 * B * H * S * Dk * Dv * b_state / ceil.bw
    return math.sqrt(b / a)


def gate_bytes(gate_dtype):
    return 4 if str(gate_dtype) in ("f32", "fp32", "float32") else 2


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-H", type=int, default=16)
    ap.add_argument("--dk", type=int, default=128)
    ap.add_argument("--dv", type=int, default=256)
    ap.add_argument("-S", type=int, default=8192)
    ap.add_argument("--tokens", type=int, default=65536, help="B = tokens / S")
    ap.add_argument("--variant", choices=["sig", "exp"], default="sig", help="exp: fp32 gates; sig: bf16 gates")
    ap.add_argument("--env", help="env.json of a suite run (its measured ceilings)")
    ap.add_argument("--gemm-tflops", type=float)
    ap.add_argument("--copy-tbs", type=float)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = ap.parse_args(argv)
    ceil = Ceilings()
    if a.env:
        ceil = Ceilings.from_env(json.load(open(a.env)))
    if a.gemm_tflops:
        ceil.gemm, ceil.source = a.gemm_tflops * 1e12, "command line"
    if a.copy_tbs:
        ceil.bw, ceil.source = a.copy_tbs * 1e12, "command line"
    B = max(1, a.tokens // a.S)
    gb = 4 if a.variant == "exp" else 2
    rows = [predict(B, a.H, a.S, a.dk, a.dv, L, ceil, gb) for L in candidate_chunks(a.S)]
    bf, bft = best_chunk(B, a.H, a.S, a.dk, a.dv, ceil, gb, "fw")
    bb, bbt = best_chunk(B, a.H, a.S, a.dk, a.dv, ceil, gb, "fwbw")
    out = {"B": B, "H": a.H, "S": a.S, "dk": a.dk, "dv": a.dv, "variant": a.variant,
           "gemm_tflops": ceil.gemm / 1e12, "copy_tbs": ceil.bw / 1e12, "ceilings": ceil.source,
           "best_chunk_fw": bf, "best_chunk_fwbw": bb,
           "serial_optimum_fw": serial_optimum(B, a.H, a.S, a.dk, a.dv, ceil, "fw"),
           "serial_optimum_fwbw": serial_optimum(B, a.H, a.S, a.dk, a.dv, ceil, "fwbw"), "per_chunk": rows}
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"mLSTM{a.variant} B={B} H={a.H} S={a.S} Dk={a.dk} Dv={a.dv}; ceilings ({ceil.source}): "
          f"GEMM {ceil.gemm / 1e12:.0f} TFLOP/s, copy {ceil.bw / 1e12:.2f} TB/s, ridge {ceil.ridge():.0f} FLOP/B")
    print(f"{'L':>5} {'fw GFLOP':>9} {'fw MB':>8} {'fw AI':>6} {'fw pred ms':>10} {'bound':>7} "
          f"{'fwbw GFLOP':>10} {'fwbw MB':>8} {'fwbw pred ms':>12}")
    for r in rows:
        print(f"{r['chunk']:>5} {r['fw_flops'] / 1e9:>9.1f} {r['fw_bytes'] / 1e6:>8.0f} {r['fw_ai']:>6.0f} "
              f"{r['fw_pred_ms']:>10.3f} {r['fw_bound']:>7} {r['fwbw_flops'] / 1e9:>10.1f} "
              f"{r['fwbw_bytes'] / 1e6:>8.0f} {r['fwbw_pred_ms']:>12.3f}")
    print(f"floor: fw {rows[0]['fw_floor_ms']:.3f} ms, fwbw {rows[0]['fwbw_floor_ms']:.3f} ms; predicted best L: "
          f"fw {bf} ({bft:.3f} ms), fwbw {bb} ({bbt:.3f} ms); additive-model optimum: fw L* = "
          f"{out['serial_optimum_fw']:.0f}, fwbw L* = {out['serial_optimum_fwbw']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
