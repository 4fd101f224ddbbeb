#!/usr/bin/env python3
"""tfla benchmark suite: tfla (tfla-bench) side by side with its peers on one GPU, with the runtime model,
plots and a Markdown summary. Entry point on the GPU machine: scripts/gpu_bench_suite.sh.

What it runs (default mode; --quick is a smoke subset), all bf16, 65,536 tokens (B = 65,536 / S):
  A  head shape H=16, Dk=128, Dv=256 ("7B" heads), S = 512 ... 65,536: every kernel
  L  chunk-size sweep at shape A, S = 8192: tfla and the Triton reference at several L (time, memory)
  B  head shape H=8, Dk=256, Dv=512 (the seed's), S = 512 ... 65,536: every kernel
  D  head-dim sweep at S = 8192: H=32, Dk=64, Dv=128 (with A and B at S = 8192: constant width H*Dv = 4096)
Kernels: tfla mLSTMsig (normalize=0) and mLSTMexp (tfla-bench, one process per point); the Triton
reference mlstm_kernels 2.0.6 (xl_chunk exp, xl_chunk_siging normalize=False, limit_chunk); FLA
chunk_simple_gla; torch SDPA causal attention with the cuDNN and the flash backend at the same embedding
width (H*Dv); Mamba2's Triton SSD chunked scan. A peer that is not installed gives rows with its import
error; each Python peer runs in its own process (bench/peers/*.py) so that a crash is recorded, and the
worker is restarted for the points after the one that crashed or hung.

Method (bench/peers/common.py; tfla-bench does the same in C++): CUDA events, warm-up, median of >= 30
repetitions (--reps), L2 flushed before every call, fresh random inputs per call (Python peers; tfla-bench
draws them once per process), gradients cleared between calls, peak memory above the inputs. The GPU's
ceilings (bf16 GEMM 8192^3, device copy) are measured first (bench/peers/ceilings.py) and feed the runtime
model (bench/runtime_model.py). Device, driver, CUDA, torch and peer versions go to env.json.

Output (bench/results/<date>-<gpu>/ unless --out): results.jsonl (one row per kernel and point, errors
included), results.csv, env.json, model.json, summary.md, PNG plots (bench/plot.py), logs/.
Progress goes to stderr; a time budget (--budget-s) stops starting new work in time, and what it skipped
is recorded as such.

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

from kernels import KERNELS, KERNEL_ORDER  # noqa: E402

# ------------------------------------------------------------------------------------------------ plans


def plan_config(mode, quick):
    """Shapes, sweeps and repetitions of a run."""
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
    if quick:
        return {
            "tokens": 65536, "reps": 10, "warmup": 2, "shapes": shapes,
            "A_S": [2048, 16384], "B_S": [8192], "L_S": 8192, "D_S": 8192,
            "L_tfla": [128, 256, 512], "L_triton": [], "L_limit": [], "tfla_chunk": 128,
            "A_kernels": KERNEL_ORDER, "B_kernels": ["tfla_sig_norm0", "tfla_exp"],
            "L_kernels": ["tfla_sig_norm0", "tfla_exp"], "D_kernels": ["tfla_sig_norm0", "tfla_exp"],
        }
    return {
        "tokens": 65536, "reps": 30, "warmup": 3, "shapes": shapes,
        "A_S": [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536],
        "B_S": [1024, 8192, 65536], "L_S": 8192, "D_S": 8192,
        "L_tfla": [64, 128, 256, 512, 1024], "L_triton": [64, 128, 256, 512], "L_limit": [],
        "tfla_chunk": 128, "A_kernels": KERNEL_ORDER,
        "B_kernels": [k for k in KERNEL_ORDER if k not in ("triton_limit_exp", "sdpa_flash")],
        "L_kernels": ["tfla_sig_norm0", "tfla_exp", "triton_sig_norm0"],
        "D_kernels": ["tfla_sig_norm0", "tfla_exp", "triton_sig_norm0", "fla_simple_gla"],
    }


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


def make_plan(cfg, only=None, skip=None, groups="A,L,B,D"):
    """Ordered tasks: (kernel, group, points); the order is the priority under the time budget."""
    tasks = []
    want = lambda k: (not only or k in only) and not (skip and k in skip)
    gs = groups.split(",")
    if "A" in gs:
        for k in cfg["A_kernels"]:
            if want(k):
                tasks.append({"kernel": k, "group": "A",
                              "points": [point(cfg, "A", "A", S, kernel_chunk(cfg, k)) for S in cfg["A_S"]]})
    if "L" in gs:
        for k in cfg["L_kernels"]:
            if KERNELS[k]["family"] == "tfla":
                Ls = cfg["L_tfla"]
            elif k == "triton_limit_exp":
                Ls = cfg["L_limit"]
            elif k == "triton_exp":
                Ls = cfg.get("L_triton_exp", cfg["L_triton"])
            else:
                Ls = cfg["L_triton"]
            if want(k) and Ls:
                tasks.append({"kernel": k, "group": "L",
                              "points": [point(cfg, "L", "A", cfg["L_S"], L) for L in Ls]})
    if "B" in gs:
        for k in cfg["B_kernels"]:
            if want(k):
                tasks.append({"kernel": k, "group": "B",
                              "points": [point(cfg, "B", "B", S, kernel_chunk(cfg, k)) for S in cfg["B_S"]]})
    if "D" in gs:
        for k in cfg["D_kernels"]:
            if want(k):
                tasks.append({"kernel": k, "group": "D",
                              "points": [point(cfg, "D", "D", cfg["D_S"], kernel_chunk(cfg, k))]})
    # The headline first: tfla and the Triton reference at shape A, then the other peers.
    first = {"tfla_sig_norm0": 0, "tfla_exp": 0, "triton_sig_norm0": 1, "triton_exp": 1}
    order = {"A": 0, "L": 2, "B": 3, "D": 4}
    tasks.sort(key=lambda t: (order[t["group"]] + (0 if t["group"] != "A" or t["kernel"] in first else 1),
                              KERNEL_ORDER.index(t["kernel"])))
    return tasks


# ---- a rough time estimate of a task on an H100 (seconds), for --plan and the budget

START_S = {"tfla": 3.0, "python": 6.0}
COMPILE_S = {"triton": 15.0, "fla": 25.0, "mamba2": 35.0, "attention": 1.0}


def est_call_ms(kernel, p):
    """(fw, fwbw) ms that bench/peers/fake.py would make up: the model times ANCHORS-like factors."""
    sys.path.insert(0, os.path.join(HERE, "peers"))
    import fake  # noqa: E402
    fw, fwbw, _, _ = fake.fake_times(kernel, p, None, 1)
    return fw, fwbw


def est_task_s(task, cfg):
    k = KERNELS[task["kernel"]]
    reps = cfg["reps"] + cfg["warmup"] + 1
    total = 0.0
    seen = set()
    for p in task["points"]:
        fw, fwbw = est_call_ms(task["kernel"], p)
        refresh = 0.0 if k["family"] == "tfla" else 2 * 0.003 * p["B"] * p["H"] * p["S"] * (p["dk"] + p["dv"]) / 1e9 * 1e3
        total += reps * (fw + fwbw + refresh) / 1e3
        if k["family"] == "tfla":
            total += START_S["tfla"]
        else:
            key = (p["H"], p["dk"], p["dv"], p.get("chunk"))
            if key not in seen:
                seen.add(key)
                total += COMPILE_S.get(k["family"], 10.0)
    if k["family"] != "tfla":
        total += START_S["python"]
    return total


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
                         f"{point_desc(p)}: " + (f"fw {fmt_ms(rec.get('fw_ms'))} ms, fwbw "
                                                 + (f"{fmt_ms(rec.get('fwbw_ms'))} ms" if rec.get("fwbw_ms") else "failed")
                                                 if rec.get("fw_ms") is not None or rec.get("fwbw_ms") is not None
                                                 else f"{rec.get('status')}: {str(rec.get('error', ''))[:160]}")
                         + (f" (fwbw: {rec['fwbw_error'][:100]})" if rec.get("fwbw_error") and rec.get("fw_ms") else ""))
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
                     f"({len(task['points'])} point(s), estimate {est_task_s(task, self.cfg):.0f} s)")
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
    ap.add_argument("--quick", action="store_true", help="smoke subset (~2-4 min on an H100)")
    ap.add_argument("--dry-run", action="store_true", help="no GPU: fake workers (made-up numbers)")
    ap.add_argument("--smoke-cpu", action="store_true", help="no GPU: tiny shapes, tfla CPU backend")
    ap.add_argument("--report", metavar="DIR", help="only rebuild the report (summary, CSV, plots) of DIR")
    ap.add_argument("--plan", action="store_true", help="print the tasks and a time estimate, run nothing")
    ap.add_argument("--out", help="results folder [bench/results/<date>-<gpu>; /tmp/... for dry/smoke runs]")
    ap.add_argument("--tfla-bench", help="tfla-bench binary [build/cuda-h100/tools/tfla-bench]")
    ap.add_argument("--python", default=sys.executable, help="Python with torch for the workers")
    ap.add_argument("--budget-s", type=float, help="wall-clock budget of the whole suite [570; quick 240]")
    ap.add_argument("--reserve-s", type=float, default=40, help="kept for the report at the end [40]")
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
        a.budget_s = 240 if a.quick else 570
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
    est = sum(est_task_s(t, cfg) for t in tasks) + 15
    if a.plan:
        print(f"mode {mode}{' (quick)' if a.quick else ''}: {len(tasks)} tasks, "
              f"{sum(len(t['points']) for t in tasks)} points, reps {cfg['reps']}, budget {a.budget_s:.0f} s")
        for t in tasks:
            print(f"  {t['group']} {t['kernel']:<18} {len(t['points'])} pts  ~{est_task_s(t, cfg):5.0f} s  "
                  + ", ".join(f"S={p['S']}" + (f"/L={p['chunk']}" if t['group'] == 'L' else '') for p in t["points"]))
        print(f"estimated total on an H100 (ceilings, compile, timing; rough): ~{est:.0f} s")
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
    suite = Suite(a, cfg, outdir, log)
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
