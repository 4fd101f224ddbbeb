#!/usr/bin/env python3
"""tfla benchmark suite: tfla (tfla-bench) side by side with its peers on one GPU, with the runtime model,
plots and a Markdown summary. Entry point on the GPU machine: scripts/gpu_bench_suite.sh.

What it runs (default mode, ~520 s on one H100 by --plan's estimate, cold Triton cache), all bf16, 65,536
tokens (B = 65,536 / S):
  A  head shape H=16, Dk=128, Dv=256 ("7B" heads): tfla (both variants) and Triton xl_chunk (exp, siging) at
     S = 512, 1024, ..., 65,536 (8 points, the headline); Triton limit_chunk at S = 65536; SDPA cuDNN at 512,
     65536; SDPA flash at 8192; FLA and Mamba2 at 8192, 65536 (their cost is compile/autotune or S^2 attention,
     not S: a cold Triton mLSTM point alone costs ~9 s of compile)
  L  chunk-size sweep at shape A, S = 8192 (time, memory): tfla (both) at L = 64 ... 1024, Triton mLSTMsig at
     L = 128, 256, 512
  D  head-dim sweep at S = 8192: H=32, Dk=64, Dv=128 (with A and B at S = 8192: constant width H*Dv = 4096):
     tfla (both) and Triton mLSTMsig
  B  head shape H=8, Dk=256, Dv=512 (the seed's): tfla (both) at S = 1024, 8192, 65536; Triton mLSTMsig and
     SDPA cuDNN at S = 65536. FLA and Mamba2 autotune again for every head shape (~50-90 s each): shape A only.
  Order (a budget stop loses the end): A tfla, A Triton xl_chunk; tfla L, D, B; Triton sig L+D+B (one worker),
  Triton limit_chunk A; SDPA cuDNN A+B (one worker), SDPA flash A; FLA A; Mamba2 A. `--plan` prints the tasks
  with estimates calibrated on real H100 runs (COST in bench/suite.py).
  --quick (~4 min): tfla and Triton at S = 2048 and 16384, the other peers at S = 16384, a tfla chunk sweep
  (L = 128, 256, 512), tfla at B and D; 10 repetitions.
Kernels: tfla mLSTMsig (normalize=0) and mLSTMexp (tfla-bench, one process per point); the Triton
reference mlstm_kernels 2.0.6 (xl_chunk exp, xl_chunk_siging normalize=False, limit_chunk); FLA
chunk_simple_gla; torch SDPA causal attention with the cuDNN and the flash backend at the same embedding
width (H*Dv); Mamba2's Triton SSD chunked scan. A peer that is not installed gives rows with its import
error; each Python peer runs in its own process (bench/peers/*.py) so that a crash is recorded, and the
worker is restarted for the points after the one that crashed or hung. FLA's forward+backward is refused
by its own guard on Hopper with Triton >= 3.4 and < 3.7.1: asked once per worker, recorded as `refused`
at every point, never retried.

Method (bench/peers/common.py; tfla-bench does the same in C++): CUDA events, warm-up, median of >= 30
repetitions (--reps), L2 flushed before every call, fresh random inputs per call (Python peers; tfla-bench
draws them once per process), gradients cleared between calls, peak memory above the inputs. The GPU's
ceilings (bf16 GEMM 8192^3, device copy) are measured first (bench/peers/ceilings.py) and feed the runtime
model (bench/runtime_model.py). Device, driver, CUDA, torch and peer versions go to env.json.

Output (bench/results/<date>-<gpu>/ unless --out): results.jsonl (one row per kernel and point, errors
included), results.csv, env.json, model.json, summary.md, PNG plots (bench/plot.py), logs/.
Progress goes to stderr; a time budget (--budget-s) stops starting new work --reserve-s before its end, and
what it skipped is recorded as such.

Modes without a GPU, to test the whole path:
  --dry-run     every kernel replaced by bench/peers/fake.py (made-up times from the model; NOT data)
  --smoke-cpu   tiny shapes; tfla through the CPU backend of tfla-bench (build/cpu), the Python peers in
                their --device cpu debug mode (they record errors where they need a GPU)
  --report DIR  rebuild summary, CSV and plots of an existing results folder

usage: python3 bench/suite.py [--quick] [--dry-run | --smoke-cpu] [--out DIR] [--budget-s S] [--plan]
"""
import argparse
import datetime as dt
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

# ------------------------------------------------------------------------------------------------ kernels

from kernels import KERNELS, KERNEL_ORDER, group_S  # noqa: E402

# ------------------------------------------------------------------------------------------------ plans

# The default suite's S subset for the peers whose cost is compile/autotune- or S^2-dominated (FLA, SDPA cuDNN
# and flash, Mamba2) in group A; tfla and the three Triton mLSTM kernels (the headline) run every S.
PEER_S_A = [512, 4096, 16384, 65536]


def plan_config(mode, quick):
    """Shapes, sweeps, repetitions and the task order of a run."""
    if mode == "smoke-cpu":
        return {
            "tokens": 256, "reps": 2, "warmup": 1,
            "shapes": {"A": {"H": 2, "dk": 16, "dv": 32, "attn_heads": 2, "attn_dim": 32},
                       "B": {"H": 1, "dk": 32, "dv": 64, "attn_heads": 2, "attn_dim": 32},
                       "D": {"H": 4, "dk": 8, "dv": 16}},
            "A_S": [64, 128, 256], "B_S": [128, 256], "L_S": 128, "D_S": 128,
            "L_tfla": [32, 64, 128], "L_triton": [32, 64, 128], "L_limit": [16, 32],
            "tfla_chunk": 64, "A_kernels": KERNEL_ORDER, "B_kernels": KERNEL_ORDER,
            "L_kernels": ["tfla_sig_norm0", "tfla_exp", "triton_sig_norm0", "triton_exp", "triton_limit_exp"],
            "D_kernels": ["tfla_sig_norm0", "tfla_exp", "triton_sig_norm0", "fla_simple_gla"],
        }
    shapes = {"A": {"H": 16, "dk": 128, "dv": 256, "attn_heads": 16, "attn_dim": 256},
              "B": {"H": 8, "dk": 256, "dv": 512, "attn_heads": 32, "attn_dim": 128},
              "D": {"H": 32, "dk": 64, "dv": 128}}
    if quick:  # every kernel once or twice at shape A, a short tfla chunk sweep, tfla at B and D; ~4 min
        return {
            "tokens": 65536, "reps": 10, "warmup": 2, "shapes": shapes,
            "A_S": [2048, 16384], "A_S_peers": [16384],
            "A_peers": ["fla_simple_gla", "sdpa_cudnn", "sdpa_flash", "mamba2_ssd"],
            "B_S": [8192], "L_S": 8192, "D_S": 8192,
            "L_tfla": [128, 256, 512], "L_triton": [], "L_limit": [], "tfla_chunk": 128,
            "A_kernels": KERNEL_ORDER, "B_kernels": ["tfla_sig_norm0", "tfla_exp"],
            "L_kernels": ["tfla_sig_norm0", "tfla_exp"], "D_kernels": ["tfla_sig_norm0", "tfla_exp"],
            "order": ["tfla_sig_norm0:A", "tfla_exp:A", "triton_sig_norm0:A", "triton_exp:A", "triton_limit_exp:A",
                      "tfla_sig_norm0:L", "tfla_exp:L", "tfla_sig_norm0:B", "tfla_exp:B", "tfla_sig_norm0:D",
                      "tfla_exp:D", "sdpa_cudnn:A", "sdpa_flash:A", "fla_simple_gla:A", "mamba2_ssd:A"],
        }
    # The default suite: ~500 s on one H100 with a cold Triton cache (est_task_s, COST), under the 525 s after
    # which `gpu_bench_suite.sh --budget-s 545` starts no new work. Subsets for the peers whose cost is compile,
    # autotune or S^2 attention rather than S (see COST; a cold Triton mLSTM point costs ~9 s of compile):
    # A  tfla (both variants) and Triton xl_chunk (exp, siging) at every S (the headline); Triton limit_chunk at
    #    S = 65536; SDPA cuDNN at 512, 65536; SDPA flash at 8192; FLA and Mamba2 at 8192, 65536.
    # L  S = 8192: tfla (both) at L = 64 ... 1024, Triton mLSTMsig at L = 128, 256, 512.
    # D  S = 8192: tfla (both) and Triton mLSTMsig at H=32/Dk=64/Dv=128 (A and B give the other head dims).
    # B  tfla (both) at S = 1024, 8192, 65536; Triton mLSTMsig and SDPA cuDNN at S = 65536.
    #    FLA and Mamba2 autotune again for every head shape (~50-90 s): shape A only.
    return {
        "tokens": 65536, "reps": 30, "warmup": 3, "shapes": shapes,
        "A_S": [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536],
        "A_S_peers": PEER_S_A, "A_peers": ["fla_simple_gla", "sdpa_cudnn", "sdpa_flash", "mamba2_ssd"],
        "A_S_by_kernel": {"triton_limit_exp": [65536], "sdpa_cudnn": [512, 65536], "sdpa_flash": [8192],
                          "fla_simple_gla": [8192, 65536], "mamba2_ssd": [8192, 65536]},
        "B_S": [1024, 8192, 65536],
        "B_S_peers": [65536], "B_peers": ["triton_sig_norm0", "sdpa_cudnn"],
        "L_S": 8192, "D_S": 8192,
        "L_tfla": [64, 128, 256, 512, 1024], "L_triton": [128, 256, 512], "L_limit": [],
        "tfla_chunk": 128, "A_kernels": KERNEL_ORDER,
        "B_kernels": ["tfla_sig_norm0", "tfla_exp", "triton_sig_norm0", "sdpa_cudnn"],
        "L_kernels": ["tfla_sig_norm0", "tfla_exp", "triton_sig_norm0"],
        "D_kernels": ["tfla_sig_norm0", "tfla_exp", "triton_sig_norm0"],
        # Priority order (a budget stop loses the end): the headline (group A, tfla and Triton); tfla's sweeps
        # and shape B (cheap); the Triton reference at L, D, B (one worker for L+D+B: one start-up and Triton
        # init instead of three); attention (cuDNN at A and B in one worker); then FLA and Mamba2 (the most
        # compile and autotune per point).
        "order": ["tfla_sig_norm0:A", "tfla_exp:A", "triton_sig_norm0:A", "triton_exp:A",
                  "tfla_sig_norm0:L", "tfla_exp:L", "tfla_sig_norm0:D", "tfla_exp:D", "tfla_sig_norm0:B",
                  "tfla_exp:B", "triton_sig_norm0:L+D+B", "triton_limit_exp:A", "sdpa_cudnn:A+B", "sdpa_flash:A",
                  "fla_simple_gla:A", "mamba2_ssd:A"],
    }


def subset_note(cfg):
    """One line on which kernels run a subset of S (for the log and the summary), or ''."""
    out = []
    for g in ("A", "B"):
        for k in cfg.get(f"{g}_kernels", ()):
            Ss = group_S(cfg, g, k)
            if list(Ss) != list(cfg[f"{g}_S"]):
                out.append(f"{g}: {k} at S = {', '.join(str(x) for x in Ss)}")
    return "; ".join(out)


def kernel_chunk(cfg, kernel):
    k = KERNELS[kernel]
    if k["family"] == "tfla":
        return cfg["tfla_chunk"]
    if cfg["tokens"] < 4096:  # smoke-cpu: tiny shapes
        return {"triton_limit_exp": 16, "mamba2_ssd": 32, "fla_simple_gla": 16}.get(kernel, 32)
    return k.get("chunk")


def point(cfg, group, shape_key, S, chunk):
    sh = cfg["shapes"][shape_key]
    p = {"group": group, "shape": shape_key, "B": max(1, cfg["tokens"] // S), "H": sh["H"], "S": S,
         "dk": sh["dk"], "dv": sh["dv"], "tokens": cfg["tokens"]}
    if chunk:
        p["chunk"] = chunk
    if "attn_heads" in sh:
        p["attn_heads"], p["attn_dim"] = sh["attn_heads"], sh["attn_dim"]
    return p


def group_points(cfg, kernel, group):
    """The points of `kernel` in `group` ([] when it does not run there)."""
    if group in ("A", "B"):
        if kernel not in cfg[f"{group}_kernels"]:
            return []
        return [point(cfg, group, group, S, kernel_chunk(cfg, kernel)) for S in group_S(cfg, group, kernel)]
    if group == "L":
        if kernel not in cfg["L_kernels"]:
            return []
        if KERNELS[kernel]["family"] == "tfla":
            Ls = cfg["L_tfla"]
        elif kernel == "triton_limit_exp":
            Ls = cfg["L_limit"]
        elif kernel == "triton_exp":
            Ls = cfg.get("L_triton_exp", cfg["L_triton"])
        else:
            Ls = cfg["L_triton"]
        return [point(cfg, "L", "A", cfg["L_S"], L) for L in Ls]
    if group == "D":
        if kernel not in cfg["D_kernels"]:
            return []
        return [point(cfg, "D", "D", cfg["D_S"], kernel_chunk(cfg, kernel))]
    raise ValueError(group)


def default_order(cfg):
    """Task order when the config names none: the headline (tfla and the Triton reference at shape A) first,
    then the other peers at A, then L, B, D, each kernel in its own process per group."""
    first = {"tfla_sig_norm0": 0, "tfla_exp": 0, "triton_sig_norm0": 1, "triton_exp": 1}
    rank = {"A": 0, "L": 2, "B": 3, "D": 4}
    items = [(k, g) for g in "ALBD" for k in KERNEL_ORDER]
    items.sort(key=lambda kg: (rank[kg[1]] + (0 if kg[1] != "A" or kg[0] in first else 1), KERNEL_ORDER.index(kg[0])))
    return [f"{k}:{g}" for k, g in items]


def make_plan(cfg, only=None, skip=None, groups="A,L,B,D"):
    """Ordered tasks: {kernel, group, points}; the order is the priority under the time budget. A task is one
    worker process (Python peers) or one tfla-bench process per point; "L+D+B" runs the points of several
    groups in one worker, in that order."""
    want = lambda k: (not only or k in only) and not (skip and k in skip)
    gs = [g for g in groups.split(",") if g]
    tasks, done = [], set()
    order = list(cfg.get("order") or default_order(cfg))
    order += [x for x in default_order(cfg) if x not in order]  # anything the order forgot, at the end
    for item in order:
        k, grp = item.split(":")
        if not want(k):
            continue
        pts, used = [], []
        for g in grp.split("+"):
            if g not in gs or (k, g) in done:
                continue
            done.add((k, g))
            gp = group_points(cfg, k, g)
            if gp:
                pts += gp
                used.append(g)
        if pts:
            tasks.append({"kernel": k, "group": "+".join(used), "points": pts})
    return tasks


# ---- the time estimate of a task on an H100 (seconds), for --plan and the log
#
# Calibrated on the suite run bench/results/2026-11-26-h100-suite-overrun/ (H100 80GB HBM3, torch 2.11, Triton
# 3.6, reps 30 + 3 warm-up; from the timestamps of logs/suite.log and the tfla-bench logs). Measured there:
# - tfla-bench: ~4.5 s per point, of which ~3.1-3.5 s before 'copying inputs to the GPU' (the host-side input
#   fill, since made parallel and vectorized: ~0.3-0.5 s expected on 16 cores) and 33 x (fwd + bwd) of timing.
# - a Python worker: ~5 s to start (torch, CUDA context, flush buffer), 0.5-1.8 s to exit.
# - Triton xl_chunk: B, S and the strides are tl.constexpr, so every point compiles its kernels again:
#   +4.3 s (siging) / +5.0 s (exp) per point, +6 s for the first compile of a process (16 s to the first
#   point); limit_chunk +2.5 s per point. A point compiled earlier in the run hits Triton's disk cache (~1 s).
# - SDPA: +0.45 s per point, cuDNN +3 s for its first graph; the rest is 34 x (fw + fwbw).
# - FLA chunk_simple_gla: 91 s to the first point (autotune of its forward kernels and of the backward kernels
#   that run before the guard refuses), then ~1 s per point. The worker now asks FLA's guard before the
#   first forward+backward (bench/peers/fla_gla.py), so only the forward autotune is paid: assumed ~1/3,
#   i.e. ~30 s per head shape (not yet measured).
# - Mamba2 SSD: 93 s to the first point (autotune of ~200 configs keyed by the head dims), then 0.8-7 s per point.
# The per-call times come from the made-up model of bench/peers/fake.py, within ~10% of that run for Triton
# and attention (tfla's are overestimated; they are a small part of its per-point cost).
COST = {
    "python_start": 5.0, "python_exit": {"triton": 1.7, "fla": 1.0, "attention": 0.5, "mamba2": 1.0},
    "tfla_point": 1.6,                       # process, CUDA init, input fill, copies (without the timed calls)
    "triton_init": 6.0,                      # the first compile of a Triton worker process
    # cold Triton cache (a fresh machine): 2026-11-26-h100 (83 s / 87 s / 47 s for 8 points of sig / exp / limit)
    "triton_point": {"triton_sig_norm0": 8.4, "triton_exp": 8.8, "triton_limit_exp": 3.8},
    "triton_cached_point": 1.0,
    "attention_point": 0.45, "cudnn_init": 3.0,
    "fla_shape": 50.0, "fla_bwd_attempt": 56.0, "fla_point": 1.0,  # fla_shape: 56 s to the first point there
    "mamba2_shape": 87.0, "mamba2_point": 3.0,
}
FLA_FWBW_REFUSED = True  # Hopper + Triton 3.6: FLA's guard refuses the gated backward (no fwbw compile or calls)


def est_call_ms(kernel, p):
    """(fw, fwbw) ms that bench/peers/fake.py would make up: the model times ANCHORS-like factors."""
    sys.path.insert(0, os.path.join(HERE, "peers"))
    import fake  # noqa: E402
    fw, fwbw, _, _ = fake.fake_times(kernel, p, None, 1)
    return fw, fwbw


def est_task_s(task, cfg, compiled=None):
    """Seconds for one task. `compiled`: a set of (kernel, point key) measured by earlier tasks (Triton's disk
    cache), updated here."""
    name = task["kernel"]
    fam = KERNELS[name]["family"]
    compiled = set() if compiled is None else compiled
    total = 0.0
    shapes = set()
    if fam != "tfla":
        total += COST["python_start"] + COST["python_exit"].get(fam, 1.0)
        if fam == "triton":
            total += COST["triton_init"]
    for p in task["points"]:
        fw, fwbw = est_call_ms(name, p)
        if fam == "tfla":
            total += COST["tfla_point"] + (cfg["warmup"] + cfg["reps"]) * fwbw / 1e3
            continue
        if fam == "fla" and FLA_FWBW_REFUSED:
            fwbw = 0.0
        calls = cfg["warmup"] + cfg["reps"] + 1  # warm-up, timed, and the peak-memory call, per mode
        total += calls * (fw + fwbw) / 1e3
        key = (p["B"], p["H"], p["S"], p["dk"], p["dv"], p.get("chunk"))
        shape = (p["H"], p["dk"], p["dv"], p.get("chunk"))
        if fam == "triton":
            total += COST["triton_cached_point"] if (name, key) in compiled else COST["triton_point"][name]
        elif fam == "attention":
            total += COST["attention_point"] + (COST["cudnn_init"] if name == "sdpa_cudnn" and not shapes else 0.0)
        elif fam == "fla":
            total += COST["fla_point"] + (0.0 if shape in shapes else COST["fla_shape"] + (
                0.0 if FLA_FWBW_REFUSED else COST["fla_bwd_attempt"]))
        elif fam == "mamba2":
            total += COST["mamba2_point"] + (0.0 if shape in shapes else COST["mamba2_shape"])
        shapes.add(shape)
        compiled.add((name, key))
    return total


def est_plan_s(tasks, cfg):
    """[(task, estimate s)], and the total with the ceilings (~4 s) and the report (~3 s)."""
    compiled = set()
    per = [(t, est_task_s(t, cfg, compiled)) for t in tasks]
    return per, sum(e for _, e in per) + 4.0 + 3.0


# ------------------------------------------------------------------------------------------------ helpers

_CHILDREN = set()  # process-group ids of the running workers, killed if the suite itself is stopped


def _child_setup():
    """In each worker: its own process group (so a hang can be killed whole), and SIGKILL when the suite dies
    (Linux prctl PR_SET_PDEATHSIG), so that no worker outlives a suite that was killed."""
    os.setsid()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except Exception:
        pass


def _on_term(signum, frame):
    for pgid in list(_CHILDREN):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    raise SystemExit(128 + signum)


class Log:
    def __init__(self, t0, budget):
        self.t0, self.budget = t0, budget

    def __call__(self, msg):
        print(f"[suite {time.time() - self.t0:6.1f}s/{self.budget:.0f}s] {msg}", file=sys.stderr, flush=True)


def sh(cmd, timeout=30):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return r.stdout.strip() if r.returncode == 0 else None
    except Exception:
        return None


def gpu_slug(name):
    if not name:
        return "gpu"
    m = re.search(r"\b(GH200|GB200|B200|B100|H200|H100|H800|A100|A800|L40S|L40|L4|A10G|A10|V100|T4|RTX ?\d{4})\b",
                  name, re.I)
    s = m.group(1) if m else name
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "gpu"


def fmt_ms(x):
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 10 else (f"{x:.2f}" if x < 100 else f"{x:.1f}")


def point_desc(p):
    s = f"S={p['S']} B={p['B']} H={p['H']} Dk={p['dk']} Dv={p['dv']}"
    if p.get("chunk"):
        s += f" L={p['chunk']}"
    return s


def row_summary(rec):
    """A worker row in a few words for the progress log."""
    if rec.get("fw_ms") is None and rec.get("fwbw_ms") is None:
        return f"{rec.get('status')}: {str(rec.get('error', ''))[:160]}"
    out = f"fw {fmt_ms(rec.get('fw_ms'))} ms, fwbw "
    if rec.get("fwbw_ms"):
        return out + f"{fmt_ms(rec['fwbw_ms'])} ms"
    if rec.get("fwbw_status") == "refused":
        if rec.get("fwbw_note"):
            return out + ("refused (not tried again)" if rec["fwbw_note"].startswith("not tried again")
                          else f"refused ({rec['fwbw_note'][:110]})")
        return out + f"refused by the peer's guard ({str(rec.get('fwbw_error', ''))[:100]})"
    return out + "failed" + (f" ({str(rec['fwbw_error'])[:100]})" if rec.get("fwbw_error") else "")


class Results:
    """results.jsonl, appended row by row so that a run cut short keeps what it measured."""

    def __init__(self, path):
        self.path = path
        self.rows = []
        open(path, "a").close()

    def add(self, row):
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


# ------------------------------------------------------------------------------------------------ running


def tfla_row(kernel, p, out, err_tail, rc, elapsed):
    """A results row from one tfla-bench --json run."""
    row = {"kernel": kernel, **{k: v for k, v in p.items()}}
    rec = None
    for line in (out or "").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                pass
    if rc != 0 or rec is None:
        row.update({"status": "error", "ok": False,
                    "error": f"tfla-bench exit {rc}: {err_tail.strip()[-600:] or 'no output'}"})
        return row
    row.update({
        "status": "ok", "ok": True, "fw_ms": rec["fwd_ms"], "bw_ms": rec["bwd_ms"], "fwbw_ms": rec["fwdbwd_ms"],
        "fw_ms_all": rec.get("fwd_ms_all"), "bw_ms_all": rec.get("bwd_ms_all"),
        "fw_peak_extra_bytes": rec.get("fwd_extra_bytes"), "fwbw_peak_extra_bytes": rec.get("fwdbwd_extra_bytes"),
        "peak_bytes": rec.get("peak_bytes"), "workspace_bytes": rec.get("workspace_bytes"),
        "io_bytes": rec.get("io_bytes"), "memgetinfo_delta_bytes": rec.get("memgetinfo_delta_bytes"),
        "l2_flush_bytes": rec.get("l2_flush_bytes"), "fresh_inputs": rec.get("fresh_inputs"),
        "reps": rec.get("reps"), "warmup": rec.get("warmup"), "device_name": rec.get("device_name"),
        "tfla_version": rec.get("tfla_version"), "timing": "cuda events" if rec.get("device") == "cuda" else "wall clock",
        "fwbw_method": "sum of the fwd and bwd medians", "wall_s": round(elapsed, 2),
    })
    return row


class Suite:
    def __init__(self, args, cfg, outdir, log):
        self.a, self.cfg, self.outdir, self.log = args, cfg, outdir, log
        self.logs = os.path.join(outdir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.results = Results(os.path.join(outdir, "results.jsonl"))
        self.metas = {}
        self.t0 = log.t0
        self.deadline = self.t0 + args.budget_s - args.reserve_s  # no new work after this
        self.injected = set()
        self.estimates = {}

    def remaining(self):
        return self.deadline - time.time()

    def _skip_rows(self, task, points, why):
        for p in points:
            self.results.add({"kernel": task["kernel"], **p, "status": "skipped", "ok": False, "error": why})

    # ---- tfla: one tfla-bench process per point
    def run_tfla(self, task):
        k = KERNELS[task["kernel"]]
        exe = self.a.tfla_bench
        for i, p in enumerate(task["points"]):
            if self.remaining() <= 0:
                self._skip_rows(task, task["points"][i:], "time budget of the suite used up")
                return
            cmd = [] if self.a.dry_run else [exe]
            if self.a.dry_run:
                cmd = [sys.executable, os.path.join(HERE, "peers", "fake.py"), "--tfla-bench"]
            elif not (exe and os.path.exists(exe)):
                self.results.add({"kernel": task["kernel"], **p, "status": "error", "ok": False,
                                  "error": f"tfla-bench not found at {exe} (build it: cmake --preset cuda-h100 && "
                                           f"cmake --build build/cuda-h100)"})
                continue
            dev = "cpu" if self.a.smoke_cpu else "cuda"
            cmd += ["--device", dev, "--variant", k["variant"], "--gate-dtype", k["gate_dtype"],
                    "-B", str(p["B"]), "-H", str(p["H"]), "-S", str(p["S"]), "--dk", str(p["dk"]),
                    "--dv", str(p["dv"]), "--chunk", str(p["chunk"]), "--dtype", "bf16",
                    "--reps", str(self.cfg["reps"]), "--warmup", str(self.cfg["warmup"]), "--no-check", "--json",
                    "--seed", str(1000 + i)]
            if k["variant"] == "sig":
                cmd += ["--normalize", str(k["normalize"])]
            t1 = time.time()
            timeout = max(5.0, min(self.a.point_timeout, self.remaining() + self.a.grace_s))
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=_child_setup)
                out, err, rc = r.stdout, r.stderr, r.returncode
            except subprocess.TimeoutExpired as e:
                out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                err = (e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")) + \
                    f"\ntimed out after {timeout:.0f} s"
                rc = 124
            with open(os.path.join(self.logs, f"{task['kernel']}.log"), "a") as f:
                f.write(f"$ {' '.join(cmd)}\n{err}\n")
            row = tfla_row(task["kernel"], p, out, err, rc, time.time() - t1)
            if rc == 124:
                row["status"] = "timeout"
            self.results.add(row)
            self.log(f"{task['kernel']} {task['group']} {i + 1}/{len(task['points'])} {point_desc(p)}: "
                     + (f"fw {fmt_ms(row.get('fw_ms'))} ms, fwbw {fmt_ms(row.get('fwbw_ms'))} ms"
                        if row["ok"] else f"{row['status']}: {row.get('error', '')[:160]}"))

    # ---- Python peers: one process for the task's points, restarted after a crash or a hang
    def worker_cmd(self, task, points_file, first_launch):
        k = KERNELS[task["kernel"]]
        if self.a.dry_run:
            cmd = [sys.executable, os.path.join(HERE, "peers", "fake.py"), "--kernel", task["kernel"]]
            if first_launch:
                for kind, kern, idx in self.a.inject_list:
                    if kern == task["kernel"] and (kind, kern) not in self.injected:
                        self.injected.add((kind, kern))
                        cmd += {"crash": ["--crash-at", str(idx)], "hang": ["--hang-at", str(idx)],
                                "fatal": ["--fatal-at", str(idx)], "refuse": ["--refuse-fwbw"]}[kind]
        else:
            cmd = [self.a.python, os.path.join(HERE, "peers", k["worker"][0])] + k["worker"][1:]
            if self.a.smoke_cpu:
                cmd += ["--device", "cpu"]
        cmd += ["--points", "@" + points_file, "--reps", str(self.cfg["reps"]), "--warmup", str(self.cfg["warmup"]),
                "--deadline", f"{self.deadline:.0f}"]
        return cmd

    def run_python(self, task):
        pending = list(task["points"])
        launches = 0
        name = task["kernel"]
        while pending:
            if self.remaining() <= 0:
                self._skip_rows(task, pending, "time budget of the suite used up")
                return
            if launches > self.a.max_restarts:
                self._skip_rows(task, pending, f"not run: the worker crashed or hung {launches} times")
                return
            pf = os.path.join(self.logs, f"points_{name}_{task['group']}_{launches}.json")
            with open(pf, "w") as f:
                json.dump(pending, f)
            cmd = self.worker_cmd(task, pf, launches == 0)
            launches += 1
            errlog = open(os.path.join(self.logs, f"{name}.log"), "a")
            errlog.write(f"$ {' '.join(cmd)}\n")
            errlog.flush()
            log_offset = errlog.tell()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errlog, text=True, env=env,
                                    preexec_fn=_child_setup, cwd=ROOT)
            _CHILDREN.add(proc.pid)
            q = queue.Queue()

            def reader(stream=proc.stdout):
                for line in stream:
                    q.put(line)
                q.put(None)

            th = threading.Thread(target=reader, daemon=True)
            th.start()
            first = True
            t_point = time.time()
            status = None
            while True:
                limit = self.a.first_timeout if first else self.a.point_timeout
                wait = min(limit - (time.time() - t_point), self.remaining() + self.a.grace_s)
                try:
                    line = q.get(timeout=max(0.1, wait))
                except queue.Empty:
                    status = "timeout" if self.remaining() + self.a.grace_s > 0 else "budget"
                    break
                if line is None:
                    break
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if "meta" in rec:
                    self.metas.setdefault(name, rec["meta"])
                    continue
                # match the row to the pending point it measured
                key = lambda d: (d.get("S"), d.get("H"), d.get("dk"), d.get("dv"), d.get("chunk"), d.get("group"))
                idx = next((j for j, p in enumerate(pending) if key(p) == key(rec)), None)
                if idx is None:
                    continue
                p = pending.pop(idx)
                rec.update({k: v for k, v in p.items() if k not in rec})
                rec["kernel"] = name
                self.results.add(rec)
                first = False
                t_point = time.time()
                self.log(f"{name} {task['group']} {len(task['points']) - len(pending)}/{len(task['points'])} "
                         + (f"[{p['group']}] " if "+" in task["group"] else "") + f"{point_desc(p)}: "
                         + row_summary(rec))
                if not pending:
                    break
            if status:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            _CHILDREN.discard(proc.pid)
            errlog.close()
            if not pending:
                return
            if status is None and rc == 3:
                # the worker reported its point and exited because the CUDA context was lost: restart it
                self.log(f"{name}: the worker's CUDA context was lost; restarting it for {len(pending)} point(s)")
                continue
            tail = ""
            try:
                with open(os.path.join(self.logs, f"{name}.log"), errors="replace") as f:
                    f.seek(log_offset)
                    tail = f.read()[-700:]
            except OSError:
                pass
            p = pending.pop(0)
            if status == "budget":
                self.log(f"{name}: the suite's time budget is used up: stopped the worker in {point_desc(p)}")
                self.results.add({"kernel": name, **p, "status": "skipped", "ok": False,
                                  "error": "time budget of the suite used up (killed in this point)"})
                self._skip_rows(task, pending, "time budget of the suite used up")
                return
            why = (f"timeout: no result within {self.a.first_timeout if first else self.a.point_timeout:.0f} s"
                   if status == "timeout" else f"crash: worker exited with status {rc}")
            self.results.add({"kernel": name, **p, "status": "timeout" if status == "timeout" else "crash",
                              "ok": False, "error": f"{why}; stderr tail: {tail.strip()[-500:]}"})
            self.log(f"{name} {task['group']} {point_desc(p)}: {why}; restarting the worker for "
                     f"{len(pending)} point(s)" if pending else f"{name}: {why}")

    def run_ceilings(self):
        if self.a.dry_run:
            return {"ok": True, "fake": True, "device": "FAKE (dry run; H100 numbers of ANCHORS.md)",
                    "gemm_tflops": 780.0, "copy_tbs": 3.02, "l2_bytes": 52428800, "sm_count": 132,
                    "torch": "n/a", "triton": "n/a"}
        if self.a.smoke_cpu:
            return {"ok": False, "error": "no GPU (smoke-cpu mode): the model uses the ANCHORS.md H100 ceilings"}
        cmd = [self.a.python, os.path.join(HERE, "peers", "ceilings.py"), "--reps", str(max(10, self.cfg["reps"]))]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
            with open(os.path.join(self.logs, "ceilings.log"), "w") as f:
                f.write(r.stderr)
            for line in r.stdout.splitlines():
                if line.startswith("{"):
                    return json.loads(line)
            return {"ok": False, "error": f"ceilings.py exit {r.returncode}: {r.stderr[-400:]}"}
        except Exception as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    def run(self, tasks):
        for n, task in enumerate(tasks):
            k = KERNELS[task["kernel"]]
            if self.remaining() <= 0:
                self._skip_rows(task, task["points"], "time budget of the suite used up")
                continue
            self.log(f"task {n + 1}/{len(tasks)}: {task['kernel']} group {task['group']} "
                     f"({len(task['points'])} point(s), estimate {self.estimates.get(n, 0):.0f} s)")
            if k["family"] == "tfla":
                self.run_tfla(task)
            else:
                self.run_python(task)


# ------------------------------------------------------------------------------------------------ env


def collect_env(args, cfg, mode):
    env = {"suite": "bench/suite.py", "mode": mode, "quick": bool(args.quick), "argv": sys.argv[1:],
           "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "python": sys.version.split()[0], "config": cfg}
    env["git_commit"] = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    st = sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    env["git_dirty"] = bool(st) if st is not None else None
    smi = sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit",
              "--format=csv,noheader"])
    if smi:
        f = [x.strip() for x in smi.splitlines()[0].split(",")]
        keys = ["gpu_name", "driver", "memory_total", "clock_max_sm", "clock_max_mem", "power_limit"]
        env["nvidia_smi"] = dict(zip(keys, f))
    nv = sh(["nvcc", "--version"]) or sh(["/usr/local/cuda/bin/nvcc", "--version"])
    if nv:
        env["nvcc"] = nv.splitlines()[-1]
    if args.tfla_bench and os.path.exists(args.tfla_bench):
        env["tfla_bench"] = {"path": os.path.relpath(args.tfla_bench, ROOT), "version": sh([args.tfla_bench, "--version"])}
    return env


# ------------------------------------------------------------------------------------------------ main


def default_tfla_bench(smoke_cpu):
    for d in (["build/cpu"] if smoke_cpu else ["build/cuda-h100", "build/cuda"]):
        p = os.path.join(ROOT, d, "tools", "tfla-bench")
        if os.path.exists(p):
            return p
    return os.path.join(ROOT, "build/cpu" if smoke_cpu else "build/cuda-h100", "tools", "tfla-bench")


def parse_inject(spec):
    out = []
    for item in filter(None, (spec or "").split(",")):
        parts = item.split(":")
        if parts[0] not in ("crash", "hang", "fatal", "refuse") or len(parts) < 2 or parts[1] not in KERNELS:
            raise SystemExit(f"--inject: bad item '{item}' (kind:kernel[:point], kind = crash|hang|fatal|refuse)")
        out.append((parts[0], parts[1], int(parts[2]) if len(parts) > 2 else 0))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke subset (~4 min on an H100)")
    ap.add_argument("--dry-run", action="store_true", help="no GPU: fake workers (made-up numbers)")
    ap.add_argument("--smoke-cpu", action="store_true", help="no GPU: tiny shapes, tfla CPU backend")
    ap.add_argument("--report", metavar="DIR", help="only rebuild the report (summary, CSV, plots) of DIR")
    ap.add_argument("--plan", action="store_true", help="print the tasks and a time estimate, run nothing")
    ap.add_argument("--out", help="results folder [bench/results/<date>-<gpu>; /tmp/... for dry/smoke runs]")
    ap.add_argument("--tfla-bench", help="tfla-bench binary [build/cuda-h100/tools/tfla-bench]")
    ap.add_argument("--python", default=sys.executable, help="Python with torch for the workers")
    ap.add_argument("--budget-s", type=float, help="wall-clock budget of the whole suite [570; quick 270]")
    ap.add_argument("--reserve-s", type=float, default=20,
                    help="kept for the report at the end: no new work starts after budget - reserve [20]")
    ap.add_argument("--grace-s", type=float, default=15, help="a point running at the budget's end may take this long")
    ap.add_argument("--first-timeout", type=float, help="s to wait for a worker's first point [300]")
    ap.add_argument("--point-timeout", type=float, help="s to wait for each further point [150]")
    ap.add_argument("--max-restarts", type=int, default=3)
    ap.add_argument("--reps", type=int, help="override the repetitions (default 30; quick 10)")
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--only", help="comma list of kernels to run")
    ap.add_argument("--skip", help="comma list of kernels not to run")
    ap.add_argument("--groups", default="A,L,B,D", help="which groups (A, L, B, D) [all]")
    ap.add_argument("--inject", help="dry-run fault injection: kind:kernel[:point],... kind = crash|hang|fatal|refuse")
    ap.add_argument("--no-plots", action="store_true")
    a = ap.parse_args(argv)
    if a.dry_run and a.smoke_cpu:
        ap.error("--dry-run and --smoke-cpu exclude each other")
    import report as rep  # bench/report.py

    if a.report:
        rep.build_report(a.report, log=lambda m: print(m, file=sys.stderr), plots=not a.no_plots)
        return 0
    mode = "dry-run" if a.dry_run else ("smoke-cpu" if a.smoke_cpu else "gpu")
    cfg = plan_config(mode, a.quick)
    if a.reps:
        cfg["reps"] = a.reps
    if a.warmup is not None:
        cfg["warmup"] = a.warmup
    a.inject_list = parse_inject(a.inject)
    if a.inject and not a.dry_run:
        ap.error("--inject works with --dry-run only")
    if a.budget_s is None:
        a.budget_s = 270 if a.quick else 570
        if mode == "smoke-cpu":
            a.budget_s = 600
    if a.first_timeout is None:
        a.first_timeout = 10 if a.dry_run else (240 if a.smoke_cpu else 300)
    if a.point_timeout is None:
        a.point_timeout = 5 if a.dry_run else (120 if a.smoke_cpu else 150)
    if not a.tfla_bench:
        a.tfla_bench = default_tfla_bench(a.smoke_cpu)
    only = set(a.only.split(",")) if a.only else None
    skip = set(a.skip.split(",")) if a.skip else None
    for s in (only or set()) | (skip or set()):
        if s not in KERNELS:
            ap.error(f"unknown kernel '{s}' (known: {', '.join(KERNELS)})")
    tasks = make_plan(cfg, only, skip, a.groups)
    per, est = est_plan_s(tasks, cfg)
    if a.plan:
        deadline = a.budget_s - a.reserve_s
        print(f"mode {mode}{' (quick)' if a.quick else ''}: {len(tasks)} tasks, "
              f"{sum(len(t['points']) for t in tasks)} points, reps {cfg['reps']}, budget {a.budget_s:.0f} s "
              f"(no new work after {deadline:.0f} s; {a.reserve_s:.0f} s kept for the report)")
        if subset_note(cfg):
            print(f"subsets: {subset_note(cfg)}")
        cum = 4.0
        print(f"  {'group':<6} {'kernel':<18} {'pts':>3}  {'est s':>6}  {'ends at':>7}  points")
        print(f"  {'-':<6} {'ceilings':<18} {'':>3}  {4:6.0f}  {cum:7.0f}")
        for t, e in per:
            cum += e
            pts = ", ".join((f"{p['group']}:" if "+" in t["group"] else "") + f"S={p['S']}"
                            + (f"/L={p['chunk']}" if p["group"] == "L" else "") for p in t["points"])
            print(f"  {t['group']:<6} {t['kernel']:<18} {len(t['points']):>3}  {e:6.0f}  {cum:7.0f}"
                  + ("  (after the deadline)" if cum > deadline else "") + f"  {pts}")
        print(f"  {'-':<6} {'report':<18} {'':>3}  {3:6.0f}  {cum + 3:7.0f}")
        print(f"estimated total on an H100: ~{est:.0f} s (costs calibrated on bench/results/"
              f"2026-11-26-h100-suite-overrun; see COST in bench/suite.py)")
        return 0

    t0 = time.time()
    signal.signal(signal.SIGTERM, _on_term)
    log = Log(t0, a.budget_s)
    env = collect_env(a, cfg, mode)
    gpu_name = (env.get("nvidia_smi") or {}).get("gpu_name")
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    if a.out:
        outdir = a.out
    elif mode != "gpu":
        outdir = f"/tmp/tfla-suite-{mode}{'-quick' if a.quick else ''}-{date}"
        if os.path.isdir(outdir):
            shutil.rmtree(outdir)
    else:
        base = os.path.join(HERE, "results", f"{date}-{gpu_slug(gpu_name)}" + ("-quick" if a.quick else ""))
        outdir, n = base, 2
        while os.path.exists(os.path.join(outdir, "results.jsonl")):
            outdir, n = f"{base}-{n}", n + 1
    os.makedirs(outdir, exist_ok=True)
    if os.environ.get("TFLA_SUITE_OUTDIR_FILE"):  # scripts/gpu_bench_suite.sh reads where the results went
        with open(os.environ["TFLA_SUITE_OUTDIR_FILE"], "w") as f:
            f.write(os.path.abspath(outdir))
    log(f"mode {mode}{' quick' if a.quick else ''}; {len(tasks)} tasks, estimate ~{est:.0f} s; results in {outdir}")
    if subset_note(cfg):
        log(f"subsets: {subset_note(cfg)}")
    suite = Suite(a, cfg, outdir, log)
    suite.estimates = {n: e for n, (_, e) in enumerate(per)}
    log("measuring the GPU's ceilings (bf16 GEMM 8192^3, device copy)")
    env["ceilings"] = suite.run_ceilings()
    c = env["ceilings"]
    if c.get("ok"):
        log(f"ceilings: GEMM {c['gemm_tflops']:.0f} TFLOP/s, copy {c['copy_tbs']:.2f} TB/s on {c.get('device')}")
    else:
        log(f"ceilings not measured ({c.get('error', '')[:200]}); the model uses ANCHORS.md's H100 values")
    env["plan"] = [{"kernel": t["kernel"], "group": t["group"], "points": len(t["points"])} for t in tasks]
    with open(os.path.join(outdir, "env.json"), "w") as f:
        json.dump(env, f, indent=1)
    try:
        suite.run(tasks)
    finally:
        env["workers"] = suite.metas
        env["elapsed_s"] = round(time.time() - t0, 1)
        with open(os.path.join(outdir, "env.json"), "w") as f:
            json.dump(env, f, indent=1)
    log(f"measurements done in {time.time() - t0:.0f} s; writing the report")
    rep.build_report(outdir, log=log, plots=not a.no_plots)
    env["elapsed_s"] = round(time.time() - t0, 1)
    with open(os.path.join(outdir, "env.json"), "w") as f:
        json.dump(env, f, indent=1)
    log(f"done in {env['elapsed_s']:.0f} s: {outdir}")
    try:
        with open(os.path.join(outdir, "summary.md")) as f:
            print(f.read())
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
