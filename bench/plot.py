#!/usr/bin/env python3
"""PNG plots of a benchmark-suite run (called by bench/report.py; needs matplotlib):

  headline.png           runtime against S for the main head shape, forward and forward+backward (log-log)
  runtime_vs_seqlen.png  the same for both head shapes (2 x 2)
  chunk_size.png         forward and forward+backward time, and peak memory, against the chunk size L
  roofline.png           achieved TFLOP/s (model count) against arithmetic intensity, with the measured ceilings
  head_dim.png           time against the head dimensions at constant width H x Dv

usage: python3 bench/plot.py bench/results/<run>/   (redraws the plots of a run; bench/report.py does the rest)
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import runtime_model as rm  # noqa: E402
from kernels import KERNELS, KERNEL_ORDER, STYLE  # noqa: E402

MIB = 1024.0 * 1024.0


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 10, "axes.grid": True, "grid.alpha": 0.3, "axes.titlesize": 11,
                         "figure.dpi": 110, "savefig.dpi": 130})
    return plt


def _title(env):
    import report
    return report.device_title(env)


def _plain_log_y(ax):
    """Log y axis with plain numbers (0.5, 1, 2, 5, 10, ...) instead of 5 x 10^-1."""
    from matplotlib.ticker import FuncFormatter, LogLocator
    import math
    ax.set_yscale("log")
    fmt = FuncFormatter(lambda y, _: f"{y:g}")
    lo, hi = ax.get_ylim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3.5 else (1.0,)))
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: ""))


def _plain_log_x(ax):
    from matplotlib.ticker import FuncFormatter, LogLocator
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))


def _shape(env, key):
    sh = ((env.get("config") or {}).get("shapes") or {}).get(key) or {}
    return tuple(sh.get(k) for k in ("H", "dk", "dv")), sh


def _sel(rows, kernel, group, shape, mode):
    rs = [r for r in rows if r.get("kernel") == kernel and r.get("group") == group
          and (r.get("H"), r.get("dk"), r.get("dv")) == shape and r.get(f"{mode}_ms") is not None]
    return sorted(rs, key=lambda r: r["S"])


def _style(k):
    s = STYLE.get(k, {})
    return {"color": s.get("color"), "marker": s.get("marker", "o"), "linestyle": s.get("ls", "-"),
            "markersize": 5, "linewidth": 1.6}


def _log2_axis(ax, values, label):
    ax.set_xscale("log", base=2)
    vals = sorted(set(values))
    ax.set_xticks(vals)
    ax.set_xticklabels([f"{v // 1024}k" if v >= 1024 and v % 1024 == 0 else str(v) for v in vals])
    ax.minorticks_off()
    ax.set_xlabel(label)


def _seqlen_axes(plt, axes, rows, env, ceil, groups):
    """Fill a grid of axes: rows of the grid = head shapes (groups), columns = fw, fwbw."""
    handles = {}
    cfg = env.get("config") or {}
    tokens = cfg.get("tokens", 65536)
    tchunk = cfg.get("tfla_chunk", 128)
    for gi, g in enumerate(groups):
        shape, sh = _shape(env, g)
        for mi, mode in enumerate(("fw", "fwbw")):
            ax = axes[gi][mi]
            allS = []
            for k in KERNEL_ORDER:
                rs = _sel(rows, k, g, shape, mode)
                if not rs:
                    continue
                S = [r["S"] for r in rs]
                allS += S
                (h,) = ax.plot(S, [r[f"{mode}_ms"] for r in rs], label=KERNELS[k]["label"], **_style(k))
                handles[KERNELS[k]["label"]] = h
            if allS:
                Ss = sorted(set(allS))
                fl = [rm.predict(max(1, tokens // S), shape[0], S, shape[1], shape[2], tchunk, ceil, 2)[f"{mode}_floor_ms"]
                      for S in Ss]
                (h,) = ax.plot(Ss, fl, color="0.35", linestyle=(0, (4, 2)), linewidth=1.2,
                               marker="_" if len(Ss) == 1 else None, markersize=14,
                               label="mLSTM floor (model: read once, write once)")
                handles[h.get_label()] = h
                _log2_axis(ax, Ss, "sequence length S (tokens; B = {:,} / S)".format(tokens))
            _plain_log_y(ax)
            ax.set_ylabel(f"{'forward' if mode == 'fw' else 'forward + backward'} time (ms)")
            att = f"; attention {sh.get('attn_heads')} x {sh.get('attn_dim')}" if sh.get("attn_heads") else ""
            ax.set_title(f"{'Forward' if mode == 'fw' else 'Forward + backward'}: H={shape[0]}, Dk={shape[1]}, "
                         f"Dv={shape[2]}{att}")
            if not allS:
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.5")
    return handles


def plot_headline(plt, rows, env, ceil, path):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6), squeeze=False)
    handles = _seqlen_axes(plt, axes, rows, env, ceil, ["A"])
    fig.suptitle(f"mLSTM kernels against sequence length, {(env.get('config') or {}).get('tokens', 65536):,} tokens, "
                 f"bf16\n{_title(env)}", fontsize=11)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=4, fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 0.93))
    fig.savefig(path)
    plt.close(fig)


def plot_seqlen(plt, rows, env, ceil, path):
    groups = [g for g in ("A", "B") if any(r.get("group") == g for r in rows)]
    if not groups:
        return False
    fig, axes = plt.subplots(len(groups), 2, figsize=(13, 4.9 * len(groups) + 1.0), squeeze=False)
    handles = _seqlen_axes(plt, axes, rows, env, ceil, groups)
    fig.suptitle(f"Runtime against sequence length, {(env.get('config') or {}).get('tokens', 65536):,} tokens, "
                 f"bf16, both head shapes\n{_title(env)}", fontsize=11)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=4, fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, 0.09 if len(groups) > 1 else 0.13, 1, 0.95))
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_chunk(plt, rows, env, ceil, path):
    lrows = [r for r in rows if r.get("group") == "L"]
    if not lrows:
        return False
    shape, _ = _shape(env, "A")
    S, B = lrows[0]["S"], lrows[0]["B"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.4))
    handles = {}
    allL = sorted({r["chunk"] for r in lrows})
    for k in KERNEL_ORDER:
        for ai, (mode, key, scale) in enumerate((("fw", "fw_ms", 1.0), ("fwbw", "fwbw_ms", 1.0),
                                                 ("fwbw", "fwbw_peak_extra_bytes", 1 / 1024.0 ** 3))):
            rs = sorted([r for r in lrows if r.get("kernel") == k and r.get(key) is not None], key=lambda r: r["chunk"])
            if rs:
                (h,) = axes[ai].plot([r["chunk"] for r in rs], [r[key] * scale for r in rs],
                                     label=KERNELS[k]["label"], **_style(k))
                handles[h.get_label()] = h
    for gb, name, ls in ((2, "model prediction (bf16 gates)", (0, (4, 2))),):
        for ai, mode in enumerate(("fw", "fwbw")):
            pr = [rm.predict(B, shape[0], S, shape[1], shape[2], x, ceil, gb)[f"{mode}_pred_ms"] for x in allL]
            (h,) = axes[ai].plot(allL, pr, color="0.35", linestyle=ls, linewidth=1.2, label=name)
            handles[h.get_label()] = h
    # the model's state memory: fp32 boundary states of all chunks (forward keeps them for the backward)
    st = [2 * B * shape[0] * -(-S // x) * shape[1] * shape[2] * 4 / 1024.0 ** 3 for x in allL]
    (h,) = axes[2].plot(allL, st, color="0.35", linestyle=(0, (1, 1.5)), linewidth=1.4,
                        label="model: fp32 boundary states C and dC, all chunks")
    handles[h.get_label()] = h
    for ax, yl, tt in ((axes[0], "forward time (ms)", "Forward time"),
                       (axes[1], "forward + backward time (ms)", "Forward + backward time"),
                       (axes[2], "peak memory above the inputs, fwbw (GiB)", "Memory during forward + backward")):
        _log2_axis(ax, allL, "chunk size L (tokens)")
        ax.set_ylabel(yl)
        ax.set_title(f"{tt}, S={S}, B={B}")
        if ax is not axes[2]:
            _plain_log_y(ax)
        else:
            ax.set_ylim(bottom=0)
    fig.suptitle(f"Chunk size: time and memory, H={shape[0]}, Dk={shape[1]}, Dv={shape[2]}, bf16\n{_title(env)}",
                 fontsize=11)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=4, fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 0.93))
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_roofline(plt, rows, env, ceil, path):
    pts = [r for r in rows if r.get("family") in ("tfla", "triton", "fla", "mamba2") and r.get("model")
           and (r.get("fw_ms") is not None)]
    if not pts:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.8))
    handles = {}
    for ai, mode in enumerate(("fw", "fwbw")):
        ax = axes[ai]
        xs = [r["model"][f"{mode}_ai"] for r in pts if r.get(f"{mode}_ms") is not None]
        lo, hi = (min(xs) / 2, max(xs) * 2) if xs else (1, 1000)
        lo, hi = min(lo, ceil.ridge() / 8), max(hi, ceil.ridge() * 4)
        import numpy as np
        ai_x = np.logspace(np.log10(lo), np.log10(hi), 200)
        roof = np.minimum(ceil.gemm, ai_x * ceil.bw) / 1e12
        (h,) = ax.plot(ai_x, roof, color="k", linewidth=2,
                       label=f"roofline: {ceil.gemm / 1e12:.0f} TFLOP/s bf16 GEMM, {ceil.bw / 1e12:.2f} TB/s copy")
        handles[h.get_label()] = h
        for k in KERNEL_ORDER:
            rs = [r for r in pts if r.get("kernel") == k and r.get(f"{mode}_ms") is not None]
            if not rs:
                continue
            st = _style(k)
            fill = [st["color"] if r.get("group") == "L" else "none" for r in rs]
            sc = ax.scatter([r["model"][f"{mode}_ai"] for r in rs], [r[f"{mode}_tflops"] for r in rs],
                            marker=st["marker"], edgecolors=st["color"], facecolors=fill, s=38, linewidths=1.3,
                            label=KERNELS[k]["label"])
            handles[KERNELS[k]["label"]] = sc
            for r in rs:
                if r.get("group") == "L" and k in ("tfla_sig_norm0", "triton_sig_norm0"):
                    ax.annotate(f"L={r['chunk']}", (r["model"][f"{mode}_ai"], r[f"{mode}_tflops"]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points", color=st["color"])
        _plain_log_x(ax)
        _plain_log_y(ax)
        ax.set_xlabel("arithmetic intensity (model FLOPs / model bytes, FLOP/byte)")
        ax.set_ylabel("achieved TFLOP/s (model FLOP count / measured time)")
        ax.set_title(f"{'Forward' if mode == 'fw' else 'Forward + backward'} (filled: chunk-size sweep; "
                     f"open: S sweeps)")
    fig.suptitle(f"Roofline of the mLSTM kernels on the measured ceilings\n{_title(env)}", fontsize=11)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=3, fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 0.93))
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_headdim(plt, rows, env, ceil, path):
    cfg = env.get("config") or {}
    D_S = cfg.get("D_S")
    if not any(r.get("group") == "D" for r in rows):
        return False
    dk = {r.get("kernel") for r in rows if r.get("group") == "D"}
    sel = [r for r in rows if r.get("S") == D_S and r.get("group") in ("A", "B", "D") and r.get("kernel") in dk]
    shapes = sorted({(r["H"], r["dk"], r["dv"]) for r in sel}, key=lambda s: s[2])
    if not shapes:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4))
    handles = {}
    x = list(range(len(shapes)))
    for ai, mode in enumerate(("fw", "fwbw")):
        ax = axes[ai]
        for k in KERNEL_ORDER:
            by = {(r["H"], r["dk"], r["dv"]): r for r in sel if r.get("kernel") == k and r.get(f"{mode}_ms") is not None}
            xs = [i for i, s in enumerate(shapes) if s in by]
            if xs:
                (h,) = ax.plot(xs, [by[shapes[i]][f"{mode}_ms"] for i in xs], label=KERNELS[k]["label"], **_style(k))
                handles[h.get_label()] = h
        B = max(1, cfg.get("tokens", 65536) // D_S)
        fl = [rm.predict(B, s[0], D_S, s[1], s[2], cfg.get("tfla_chunk", 128), ceil, 2)[f"{mode}_floor_ms"]
              for s in shapes]
        (h,) = ax.plot(x, fl, color="0.35", linestyle=(0, (4, 2)), linewidth=1.2, label="mLSTM floor (model)")
        handles[h.get_label()] = h
        ax.set_xticks(x)
        ax.set_xticklabels([f"H={s[0]}\nDk={s[1]}, Dv={s[2]}" for s in shapes])
        ax.set_xlabel(f"head shape (H x Dv = {shapes[0][0] * shapes[0][2]} constant)")
        _plain_log_y(ax)
        ax.set_ylabel(f"{'forward' if mode == 'fw' else 'forward + backward'} time (ms)")
        ax.set_title(f"{'Forward' if mode == 'fw' else 'Forward + backward'}, S={D_S}, B={B}")
    fig.suptitle(f"Head dimensions, {cfg.get('tokens', 65536):,} tokens, bf16\n{_title(env)}", fontsize=11)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=4, fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 0.93))
    fig.savefig(path)
    plt.close(fig)
    return True


def make_plots(rows, env, ceil, outdir):
    plt = _plt()
    made = []
    if any(r.get("group") == "A" for r in rows):
        plot_headline(plt, rows, env, ceil, os.path.join(outdir, "headline.png"))
        made.append("headline.png")
    for name, fn in (("runtime_vs_seqlen.png", plot_seqlen), ("chunk_size.png", plot_chunk),
                     ("roofline.png", plot_roofline), ("head_dim.png", plot_headdim)):
        if fn(plt, rows, env, ceil, os.path.join(outdir, name)):
            made.append(name)
    return made


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    import report
    rows, env = report.load(sys.argv[1])
    ceil = rm.Ceilings.from_env(env)
    rows = report.annotate(report.latest(rows), ceil)
    print(", ".join(make_plots(rows, env, ceil, sys.argv[1])))
