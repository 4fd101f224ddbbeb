"""Shared runner of the Python peer workers (bench/peers/*.py), used by bench/suite.py.

A worker times one kernel on a list of points (shapes) in one process and prints one JSON line per point
on stdout as soon as it is measured (plus one {"meta": ...} line with versions first), so that the driver
keeps every finished point when a later one crashes the process, and restarts the worker for the rest.
Peers are measuring sticks only: none of their code is part of tfla.

Method (the same for every peer; tfla-bench does the same in C++):
- CUDA events around each call; `--warmup` untimed calls first; the median of `--reps` timed calls.
- The L2 cache is flushed before every call: a buffer of max(256 MB, 2 x L2) is zeroed outside the event
  pair (what triton.testing.do_bench does too; do_bench is not used because it picks its repetition count
  from a time budget, ~9 fwbw calls at 100 ms, fewer than the 30 asked for).
- Fresh random inputs: q, k, v, the gates and dh are redrawn in place (normal_) before every call, outside
  the timed region.
- Gradients are set to None before every call (outside the timed region), as do_bench's grad_to_none does;
  the backward then allocates them inside the timed region, as a training step does.
- Peak memory: one extra untimed call per mode after the timed ones: torch.cuda.max_memory_allocated()
  during it minus torch.cuda.memory_allocated() before it (inputs, dh and the flush buffer are already
  allocated then; gradients are None), i.e. what the call holds above its inputs at its peak. The forward
  is timed under torch.no_grad() (inference); forward+backward is the forward with autograd and
  backward(dh).
- `--device cpu` is a debug mode only (wall clock, no flush, no memory), to exercise the code on a machine
  without a GPU.
- A mode that the peer itself refuses (Runner.refusal: FLA's guard on its gated backward) is not tried again
  at the later points of the worker: those rows get the same message, `<mode>_status` "refused" and
  `<mode>_note` saying so, and cost no kernel call.
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time
import traceback


def emit(obj):
    print(json.dumps(obj), flush=True)


def log(msg):
    print(f"[{os.path.basename(sys.argv[0])}] {msg}", file=sys.stderr, flush=True)


def base_parser(description):
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", help="JSON list of point objects (or @file with one): the shapes to time")
    ap.add_argument("--reps", type=int, default=30, help="timed calls per mode; the median is reported [30]")
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls per mode first [5]")
    ap.add_argument("--no-flush", action="store_true", help="do not flush L2 between calls")
    ap.add_argument("--no-refresh", action="store_true", help="do not redraw the inputs between calls")
    ap.add_argument("--modes", default="fw,fwbw", help="which of fw, fwbw to time [fw,fwbw]")
    ap.add_argument("--deadline", type=float, default=0, help="unix time after which no new point starts")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: debug mode only")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def load_points(spec):
    if not spec:
        return []
    if spec.startswith("@"):
        with open(spec[1:]) as f:
            spec = f.read()
    pts = json.loads(spec)
    return pts if isinstance(pts, list) else [pts]


def pkg_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


def fatal_cuda_error(msg):
    """True when an error leaves the CUDA context unusable: the worker exits and the driver restarts it."""
    m = msg.lower()
    return any(s in m for s in ("illegal memory access", "unspecified launch failure", "device-side assert",
                                "an illegal instruction", "misaligned address", "cuda error: launch failure",
                                "uncorrectable ecc", "device not ready", "cudaerrorlaunchfailure"))


class Setup:
    """What a worker's builder returns for one point.

    fw():    the forward (called under torch.no_grad()).
    fwbw():  forward with autograd and backward(dh).
    tensors: {name: tensor} redrawn before each call: name -> (tensor, mean) pairs in `refresh`.
    grads:   leaf tensors whose .grad is set to None before each call.
    meta:    extra fields for the row (kernel arguments that matter).
    """

    def __init__(self, fw=None, fwbw=None, refresh=(), grads=(), meta=None, io_bytes=0):
        self.fw, self.fwbw = fw, fwbw
        self.refresh = list(refresh)
        self.grads = list(grads)
        self.meta = meta or {}
        self.io_bytes = io_bytes


class Runner:
    def __init__(self, args):
        import torch
        self.torch = torch
        self.args = args
        self.cuda = args.device == "cuda"
        if self.cuda and not torch.cuda.is_available():
            raise SystemExit("no CUDA device visible to torch (use --device cpu for the debug mode)")
        self.dev = torch.device(args.device)
        torch.manual_seed(args.seed)
        # mode -> predicate(message): True when the error is the peer refusing the mode (its own guard), not a
        # failure; set by the worker. refused: mode -> (message, note) once refused, for the later points.
        self.refusal = {}
        self.refused = {}
        self.flush_buf = None
        self.flush_bytes = 0
        if self.cuda and not args.no_flush:
            l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 0
            self.flush_bytes = max(256 * 1024 * 1024, 2 * l2)
            self.flush_buf = torch.empty(self.flush_bytes, dtype=torch.int8, device=self.dev)

    # ---- versions
    def versions(self, extra=None):
        t = self.torch
        v = {"python": sys.version.split()[0], "torch": t.__version__, "torch_cuda": t.version.cuda}
        try:
            import triton
            v["triton"] = triton.__version__
        except Exception:
            v["triton"] = None
        if self.cuda:
            v["device"] = t.cuda.get_device_name()
            p = t.cuda.get_device_properties(0)
            v["sm_count"] = p.multi_processor_count
            v["l2_bytes"] = getattr(p, "L2_cache_size", None)
            v["cudnn"] = t.backends.cudnn.version()
        v.update(extra or {})
        return v

    # ---- one mode of one point
    def _prep(self, setup):
        t = self.torch
        if not self.args.no_refresh:
            with t.no_grad():
                for x, mean in setup.refresh:
                    x.normal_(mean=mean, std=1.0)
        for x in setup.grads:
            x.grad = None
        if self.flush_buf is not None:
            self.flush_buf.zero_()

    def time_mode(self, setup, mode):
        t = self.torch
        fn = setup.fw if mode == "fw" else setup.fwbw
        if mode == "fw":
            def call():
                with t.no_grad():
                    fn()
        else:
            call = fn
        for _ in range(self.args.warmup):
            self._prep(setup)
            call()
        times = []
        if self.cuda:
            ev = [(t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)) for _ in range(self.args.reps)]
            for e0, e1 in ev:
                self._prep(setup)
                e0.record()
                call()
                e1.record()
            t.cuda.synchronize()
            times = [e0.elapsed_time(e1) for e0, e1 in ev]
        else:
            for _ in range(self.args.reps):
                self._prep(setup)
                t0 = time.perf_counter()
                call()
                times.append((time.perf_counter() - t0) * 1e3)
        # peak memory above what is allocated before the call (inputs, dh, flush buffer; grads are None)
        peak = None
        if self.cuda:
            self._prep(setup)
            t.cuda.synchronize()
            base = t.cuda.memory_allocated()
            t.cuda.reset_peak_memory_stats()
            call()
            t.cuda.synchronize()
            peak = t.cuda.max_memory_allocated() - base
        for x in setup.grads:
            x.grad = None
        return times, peak

    def refuse(self, mode, msg, note):
        """Record that the peer refuses `mode` (its own guard, message `msg`): later points skip it."""
        self.refused[mode] = (msg[:800], note)

    def run(self, kernel, points, build, meta_extra=None, base_fields=None, meta=True):
        """Time `kernel` on every point; build(point, runner) -> Setup. Prints the meta line and one row each."""
        t = self.torch
        if meta:
            emit({"meta": {"kernel": kernel, "versions": self.versions(meta_extra), "reps": self.args.reps,
                           "warmup": self.args.warmup, "l2_flush_bytes": self.flush_bytes,
                           "fresh_inputs": not self.args.no_refresh}})
        modes = [m for m in self.args.modes.split(",") if m]
        for i, pt in enumerate(points):
            rec = {"kernel": kernel}
            rec.update(base_fields or {})
            rec.update(pt)
            rec.update({"reps": self.args.reps, "warmup": self.args.warmup, "l2_flush_bytes": self.flush_bytes,
                        "fresh_inputs": not self.args.no_refresh, "timing": "cuda events" if self.cuda else "wall clock (debug)"})
            if self.args.deadline and time.time() > self.args.deadline:
                rec.update({"status": "skipped", "ok": False, "error": "time budget of the suite used up"})
                emit(rec)
                continue
            log(f"point {i + 1}/{len(points)}: {json.dumps(pt)}")
            setup = None
            fatal = False
            try:
                setup = build(pt, self)
                rec.update(setup.meta)
                rec["io_bytes"] = setup.io_bytes
                for mode in modes:
                    fn = setup.fw if mode == "fw" else setup.fwbw
                    if fn is None:
                        rec[f"{mode}_error"] = setup.meta.get(f"{mode}_note", "not available for this kernel")
                        continue
                    if mode in self.refused:  # refused before by the peer's own guard: not tried again
                        msg, note = self.refused[mode]
                        rec.update({f"{mode}_error": msg, f"{mode}_status": "refused", f"{mode}_note": note})
                        continue
                    try:
                        times, peak = self.time_mode(setup, mode)
                        rec[f"{mode}_ms"] = statistics.median(times)
                        rec[f"{mode}_ms_all"] = [round(x, 6) for x in times]
                        rec[f"{mode}_peak_extra_bytes"] = peak
                    except Exception as e:  # recorded; the other mode and the next point go on
                        msg = f"{type(e).__name__}: {e}"
                        rec[f"{mode}_error"] = msg[:800]
                        log(f"{mode} failed: {msg[:300]}")
                        check = self.refusal.get(mode)
                        if check is not None and check(msg):
                            rec[f"{mode}_status"] = "refused"
                            self.refuse(mode, msg, f"not tried again: the peer's own guard refused it at point {i + 1} "
                                                  f"of this worker")
                            log(f"{mode} refused by the peer's own guard: not tried at the later points")
                        if fatal_cuda_error(msg):
                            fatal = True
                            break
                        for x in setup.grads:
                            x.grad = None
                ok = [m for m in modes if f"{m}_ms" in rec]
                rec["status"] = "ok" if len(ok) == len(modes) else ("partial" if ok else "error")
                if not ok:
                    rec["error"] = "; ".join(rec.get(f"{m}_error", "") for m in modes)[:800]
            except Exception as e:
                msg = f"{type(e).__name__}: {e}"
                rec.update({"status": "error", "error": msg[:800]})
                log("setup failed: " + traceback.format_exc()[-1500:])
                fatal = fatal_cuda_error(msg)
            del setup
            gc.collect()
            if self.cuda:
                try:
                    t.cuda.empty_cache()
                except Exception:
                    fatal = True
            rec["ok"] = rec.get("status") == "ok"
            emit(rec)
            if fatal:
                log("CUDA context is unusable after this error: exiting so that the driver restarts the worker")
                sys.stdout.flush()
                os._exit(3)
        return 0


def import_skipping_init(package, module):
    """Import `package.module` without running package/__init__.py (which may pull in what the kernel does not
    need: model classes, transformers, a compiled extension). Falls back to the normal import."""
    import importlib
    import importlib.util
    import types
    if package not in sys.modules:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f"No module named '{package}'", name=package)
        pkg = types.ModuleType(package)
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__file__ = spec.origin
        sys.modules[package] = pkg
        try:
            return importlib.import_module(f"{package}.{module}")
        except Exception:
            for m in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
                del sys.modules[m]
    return importlib.import_module(f"{package}.{module}")


def emit_unavailable(kernel, base, points, exc):
    """One row per point when the peer cannot run at all: 'skipped' (not installed) or 'error'."""
    missing = isinstance(exc, ImportError)
    msg = f"{type(exc).__name__}: {exc}"[:500]
    for pt in points:
        emit({"kernel": kernel, **base, **pt, "status": "skipped" if missing else "error", "ok": False,
              "error": ("not installed: " if missing else "") + msg})
    return 0


def randn(runner, shape, dtype, mean=0.0, requires_grad=False):
    t = runner.torch
    x = t.randn(*shape, device=runner.dev, dtype=dtype)
    if mean:
        x.add_(mean)
    return x.requires_grad_(requires_grad)


def nbytes(*xs):
    return int(sum(x.numel() * x.element_size() for x in xs))
