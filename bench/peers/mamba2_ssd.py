#!/usr/bin/env python3
"""Time Mamba2's chunked scan (the Triton SSD kernel of mamba-ssm, mamba_chunk_scan_combined) on a list of
points; JSON lines.

mamba-ssm is published on PyPI as a source distribution whose package __init__ imports its compiled CUDA
extension (selective_scan_cuda). The SSD chunked scan is pure Triton and needs none of it: when the normal
import fails for want of the extension, this worker imports mamba_ssm.ops.triton.ssd_combined from the
unpacked sources (on PYTHONPATH, e.g. the sdist's folder) without running the package __init__, and says so
in the row ("import_mode"). If the sources are absent the rows say that the peer is not installed.

Mapping onto the mLSTM shape: nheads = H, headdim P = Dv (x plays v), dstate N = Dk (B plays k, C plays q),
ngroups = H (per-head B and C, as the mLSTM has per-head q and k), dt ~ randn (bf16) with dt_bias and
dt_softplus=True, A = -exp(randn) per head (fp32, not redrawn between calls), no D, no z; chunk size 256
(Mamba2's default) unless the point names one. x, B, C bf16 ~ randn. Method: bench/peers/common.py.
"""
import importlib
import importlib.util
import os
import re
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def import_ssd():
    """(mamba_chunk_scan_combined, version, import_mode)."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as fn
        import mamba_ssm
        return fn, getattr(mamba_ssm, "__version__", None), "installed package"
    except ImportError as first:
        for m in [m for m in sys.modules if m == "mamba_ssm" or m.startswith("mamba_ssm.")]:
            del sys.modules[m]
        spec = importlib.util.find_spec("mamba_ssm")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f"mamba_ssm not found on PYTHONPATH ({first})") from None
        root = list(spec.submodule_search_locations)
        version = None
        try:
            src = open(os.path.join(root[0], "__init__.py")).read()
            m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", src)
            version = m.group(1) if m else None
        except OSError:
            pass
        pkg = types.ModuleType("mamba_ssm")
        pkg.__path__ = root
        pkg.__version__ = version
        sys.modules["mamba_ssm"] = pkg
        mod = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
        return (mod.mamba_chunk_scan_combined, version,
                f"sources without the package __init__ (its CUDA extension is not built: {type(first).__name__}: "
                f"{str(first)[:120]})")


def main():
    ap = common.base_parser(__doc__)
    args = ap.parse_args()
    points = common.load_points(args.points)
    name = "mamba2_ssd"
    base = {"dtype": "bf16", "layout": "bshd"}
    try:
        runner = common.Runner(args)
        t = runner.torch
        fn, version, mode = import_ssd()
    except BaseException as e:
        return common.emit_unavailable(name, base, points, e)
    base["import_mode"] = mode

    def build(pt, r):
        B, H, S, dk, dv = pt["B"], pt["H"], pt["S"], pt["dk"], pt["dv"]
        L = pt.get("chunk") or 256
        bf = t.bfloat16 if r.cuda else t.float32
        x = common.randn(r, (B, S, H, dv), bf, requires_grad=True)
        dt = common.randn(r, (B, S, H), bf, requires_grad=True)
        Bm = common.randn(r, (B, S, H, dk), bf, requires_grad=True)
        Cm = common.randn(r, (B, S, H, dk), bf, requires_grad=True)
        with t.no_grad():
            A = (-t.exp(t.randn(H, device=r.dev, dtype=t.float32))).requires_grad_(True)
            dt_bias = t.randn(H, device=r.dev, dtype=t.float32).mul_(0.5).sub_(2.0).requires_grad_(True)
        dy = common.randn(r, (B, S, H, dv), bf)

        def call():
            return fn(x, dt, A, Bm, Cm, chunk_size=L, dt_bias=dt_bias, dt_softplus=True)

        def fw():
            return call()

        def fwbw():
            call().backward(dy)

        return common.Setup(fw, fwbw, refresh=[(x, 0.0), (dt, 0.0), (Bm, 0.0), (Cm, 0.0), (dy, 0.0)],
                            grads=[x, dt, Bm, Cm, A, dt_bias],
                            meta={"chunk": L, "mamba_nheads": H, "mamba_headdim": dv, "mamba_dstate": dk,
                                  "mamba_ngroups": H},
                            io_bytes=common.nbytes(x, dt, Bm, Cm, dy))

    return runner.run(name, points, build, meta_extra={"mamba_ssm": version, "mamba_import": mode},
                      base_fields=base)


if __name__ == "__main__":
    sys.exit(main())
