#!/usr/bin/env python3
"""The report of a benchmark-suite run: rows annotated with the runtime model, results.csv, model.json,
summary.md and the plots (bench/plot.py), from a results folder (results.jsonl + env.json).

usage: python3 bench/report.py bench/results/<run>/     (bench/suite.py --report DIR does the same)
"""
import csv
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import runtime_model as rm  # noqa: E402
from kernels import KERNELS, KERNEL_ORDER, group_S  # noqa: E402

MIB = 1024.0 * 1024.0


def load(outdir):
    rows = []
    with open(os.path.join(outdir, "results.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    env = {}
    try:
        with open(os.path.join(outdir, "env.json")) as f:
            env = json.load(f)
    except (OSError, ValueError):
        pass
    return rows, env


def shape_of(r):
    return (r.get("H"), r.get("dk"), r.get("dv"))


def ok(r, mode):
    return r.get(f"{mode}_ms") is not None


def annotate(rows, ceil):
    for r in rows:
        k = KERNELS.get(r.get("kernel"), {})
        r.setdefault("family", k.get("family"))
        r.setdefault("label", k.get("label", r.get("kernel")))
        if not (ok(r, "fw") or ok(r, "fwbw")):
            continue
        B, H, S, dk, dv = r["B"], r["H"], r["S"], r["dk"], r["dv"]
        if r["family"] == "attention":
            Ha, D = r.get("attn_heads") or H, r.get("attn_dim") or dv
            ff, bf = rm.attn_fw_flops(B, Ha, S, D), rm.attn_bw_flops(B, Ha, S, D)
            fio, bio = rm.attn_fw_io_bytes(B, Ha, S, D), rm.attn_bw_io_bytes(B, Ha, S, D)
            m = {"fw_flops": ff, "fwbw_flops": ff + bf, "fw_bytes": fio, "fwbw_bytes": fio + bio,
                 "fw_ai": ff / fio, "fwbw_ai": (ff + bf) / (fio + bio),
                 "fw_floor_ms": max(fio / ceil.bw, ff / ceil.gemm) * 1e3,
                 "fwbw_floor_ms": max((fio + bio) / ceil.bw, (ff + bf) / ceil.gemm) * 1e3}
            m["fw_pred_ms"], m["fwbw_pred_ms"] = m["fw_floor_ms"], m["fwbw_floor_ms"]
            m["flop_model"] = "causal attention: fw 4*S^2*D/2 per (b,h), bw 2.5x fw"
        else:
            L = r.get("chunk") or k.get("chunk") or 64
            gb = rm.gate_bytes(r.get("gate_dtype") or k.get("gate_dtype", "bf16"))
            m = rm.predict(B, H, S, dk, dv, L, ceil, gb)
            m["flop_model"] = "mLSTM chunkwise (bench/runtime_model.py)"
        r["model"] = m
        for mode in ("fw", "fwbw"):
            ms = r.get(f"{mode}_ms")
            if ms:
                r[f"{mode}_tflops"] = m[f"{mode}_flops"] / (ms * 1e-3) / 1e12
                r[f"{mode}_frac_floor"] = m[f"{mode}_floor_ms"] / ms
                r[f"{mode}_over_pred"] = ms / m[f"{mode}_pred_ms"]
    return rows


def latest(rows):
    """One row per (kernel, group, shape, S, chunk): the last one with data, else the last one."""
    out = {}
    for r in rows:
        key = (r.get("kernel"), r.get("group"), shape_of(r), r.get("S"), r.get("chunk"))
        if key in out and (ok(out[key], "fw") or ok(out[key], "fwbw")) and not (ok(r, "fw") or ok(r, "fwbw")):
            continue
        out[key] = r
    return list(out.values())


def pick(rows, kernel, group=None, shape=None, S=None, chunk=None):
    res = [r for r in rows if r.get("kernel") == kernel and (group is None or r.get("group") == group)
           and (shape is None or shape_of(r) == shape) and (S is None or r.get("S") == S)
           and (chunk is None or r.get("chunk") == chunk)]
    return sorted(res, key=lambda r: (r.get("S") or 0, r.get("chunk") or 0))


def f3(x):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:.3f}" if x < 10 else (f"{x:.2f}" if x < 100 else f"{x:.1f}")


def cell(r, mode):
    if r is None:
        return "-"
    if ok(r, mode):
        return f3(r[f"{mode}_ms"])
    st = r.get("status")
    if r.get(f"{mode}_status") == "refused":
        return "refused"
    if r.get(f"{mode}_error"):
        e = r[f"{mode}_error"]
        return "refused" if ("incorrect results" in e or "wrong results" in e) else "failed"
    return {"skipped": "skipped", "timeout": "timeout", "crash": "crash"}.get(st, "failed")


def speed(r_tfla, r_ref, mode):
    if r_tfla is None or r_ref is None or not ok(r_tfla, mode) or not ok(r_ref, mode):
        return "-"
    return f"{r_ref[f'{mode}_ms'] / r_tfla[f'{mode}_ms']:.2f}x"


def shape_label(sh):
    return f"H={sh[0]}, Dk={sh[1]}, Dv={sh[2]}"


def device_title(env):
    c = env.get("ceilings") or {}
    name = c.get("device") or (env.get("nvidia_smi") or {}).get("gpu_name") or "unknown GPU"
    date = (env.get("date_utc") or "")[:10]
    fake = " [DRY RUN: MADE-UP NUMBERS]" if env.get("mode") == "dry-run" else (
        " [CPU SMOKE RUN: not GPU numbers]" if env.get("mode") == "smoke-cpu" else "")
    return f"{name}, {date}{fake}"


def versions_table(env, rows):
    c = env.get("ceilings") or {}
    smi = env.get("nvidia_smi") or {}
    workers = env.get("workers") or {}
    v = {}
    for meta in workers.values():
        v.update({k: x for k, x in (meta.get("versions") or {}).items() if x is not None})
    lines = ["| | |", "|---|---|"]
    dev = c.get("device") or smi.get("gpu_name") or "-"
    extra = []
    if c.get("sm_count"):
        extra.append(f"{c['sm_count']} SMs")
    if c.get("l2_bytes"):
        extra.append(f"L2 {c['l2_bytes'] / MIB:.0f} MiB")
    if smi.get("memory_total"):
        extra.append(smi["memory_total"])
    lines.append(f"| device | {dev}" + (f" ({', '.join(extra)})" if extra else "") + " |")
    lines.append(f"| driver, CUDA | driver {smi.get('driver', '-')}; {env.get('nvcc', 'nvcc -')}; torch CUDA "
                 f"{c.get('torch_cuda') or v.get('torch_cuda', '-')}; cuDNN {c.get('cudnn') or v.get('cudnn', '-')} |")
    lines.append(f"| torch, Triton | torch {c.get('torch') or v.get('torch', '-')}, Triton "
                 f"{c.get('triton') or v.get('triton', '-')}, Python {v.get('python', '-')} |")
    peers = []
    for key, name in (("mlstm_kernels", "mlstm_kernels"), ("fla_core", "fla-core"),
                      ("flash_linear_attention", "flash-linear-attention"), ("mamba_ssm", "mamba-ssm")):
        if v.get(key):
            peers.append(f"{name} {v[key]}")
    if v.get("mamba_import"):
        peers.append(f"(mamba-ssm: {v['mamba_import']})")
    lines.append(f"| peers | {'; '.join(peers) or 'none reported'} |")
    tb = env.get("tfla_bench") or {}
    lines.append(f"| tfla | commit {env.get('git_commit', '-')}{' (uncommitted changes)' if env.get('git_dirty') else ''}; "
                 f"{tb.get('version') or 'tfla-bench'} |")
    if c.get("ok"):
        lines.append(f"| measured ceilings | bf16 GEMM {c.get('gemm_n', 8192)}^3: {c['gemm_tflops']:.0f} TFLOP/s; "
                     f"device copy: {c['copy_tbs']:.2f} TB/s (read + write)"
                     + (" — FAKE (dry run)" if c.get("fake") else "") + " |")
    else:
        lines.append(f"| ceilings | not measured ({str(c.get('error', ''))[:120]}); the model uses ANCHORS.md's "
                     f"H100 values (780 TFLOP/s, 3.02 TB/s) |")
    return lines


def plan_notes(cfg):
    """Lines on what the run's plan covered: which kernels ran where, and the S subsets (from env.json's config;
    nothing for runs that predate these keys)."""
    out = []
    if not cfg.get("A_peers") and not cfg.get("B_peers"):
        return out
    lab = lambda ks: "; ".join(KERNELS[k]["label"] if k in KERNELS else k for k in ks)
    s_list = lambda xs: ", ".join(str(x) for x in xs)
    sub = []
    for g in ("A", "B"):
        full = cfg.get(f"{g}_S") or []
        groups = {}
        for k in cfg.get(f"{g}_kernels") or ():
            Ss = group_S(cfg, g, k)
            if list(Ss) != list(full):
                groups.setdefault(tuple(Ss), []).append(k)
        if groups:
            sub.append(f"group {g}: " + "; ".join(f"{lab(ks)} at S = {s_list(Ss)} only" for Ss, ks in groups.items())
                       + f" (the others at S = {s_list(full)})")
    if sub:
        out.append("S subsets (these peers' cost is compile, autotune or S^2 attention rather than S; they keep "
                   "the default suite under 10 minutes on one H100, see bench/suite.py --help): "
                   + "; ".join(sub) + ".")
    for g, what in (("B", "shape B"), ("L", f"the chunk-size sweep (S = {cfg.get('L_S')})"),
                    ("D", f"the head-dim sweep (S = {cfg.get('D_S')})")):
        ks = cfg.get(f"{g}_kernels")
        if ks is not None and set(ks) != set(KERNEL_ORDER):
            out.append(f"Kernels in {what}: {lab(ks)}.")
    if cfg.get("A_peers"):
        out.append("FLA and Mamba2 run at shape A only: their autotune keys include the head dims, so each new "
                   "head shape costs them another ~50-90 s of autotuning.")
    return out


def write_summary(outdir, rows, env, ceil, plots):
    cfg = env.get("config") or {}
    shapes = cfg.get("shapes") or {}
    shA = tuple(shapes.get("A", {}).get(k) for k in ("H", "dk", "dv"))
    shB = tuple(shapes.get("B", {}).get(k) for k in ("H", "dk", "dv"))
    tokens = cfg.get("tokens", 65536)
    tchunk = cfg.get("tfla_chunk", 128)
    L_S = cfg.get("L_S")
    L = []
    L.append(f"# Benchmark suite: {device_title(env)}")
    L.append("")
    if env.get("mode") == "dry-run":
        L.append("**DRY RUN: every number below is made up by bench/peers/fake.py from the runtime model. "
                 "Not a measurement.**")
        L.append("")
    if env.get("mode") == "smoke-cpu":
        L.append("**CPU smoke run: tiny shapes, tfla's fp64 CPU backend, peers in their CPU debug mode. Tests the "
                 "code path only; no number here is a GPU figure.**")
        L.append("")
    el = env.get("elapsed_s")
    L.append(f"`bench/suite.py {' '.join(env.get('argv', []))}` ({env.get('mode')}{', quick' if env.get('quick') else ''}), "
             f"{env.get('date_utc', '')}" + (f", {el:.0f} s" if el else "") + ". "
             f"{tokens:,} tokens per call (B = {tokens:,} / S), bf16 q/k/v, median of {cfg.get('reps')} calls after "
             f"{cfg.get('warmup')} warm-up calls, L2 flushed before every call. Files: results.jsonl / results.csv "
             f"(every row, errors included), env.json (versions, ceilings), model.json, plots.")
    L.append("")
    L += versions_table(env, rows)
    L.append("")

    # ---- headline
    L.append(f"## Headline: tfla against the Triton reference ({shape_label(shA)}, L = {tchunk}, bf16)")
    L.append("")
    if "headline.png" in plots:
        L.append("![runtime against S, forward and forward+backward](headline.png)")
        L.append("")
    L.append("Speed = Triton time / tfla time (above 1: tfla is faster). Fraction of the floor = the read-once/"
             "write-once floor (runtime model, measured ceilings) / measured time.")
    L.append("")
    for var, tk, rk in (("mLSTMsig (normalize=0)", "tfla_sig_norm0", "triton_sig_norm0"),
                        ("mLSTMexp", "tfla_exp", "triton_exp")):
        L.append(f"**{var}**")
        L.append("")
        L.append("| S | tfla fw ms | Triton fw ms | fw speed | tfla fwbw ms | Triton fwbw ms | fwbw speed | "
                 "floor fw / fwbw ms | tfla fw / fwbw: fraction of floor |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        Ss = sorted({r["S"] for r in rows if r.get("group") == "A" and r.get("kernel") in (tk, rk)})
        for S in Ss:
            a = next(iter(pick(rows, tk, "A", shA, S)), None)
            b = next(iter(pick(rows, rk, "A", shA, S)), None)
            m = (a or {}).get("model") or (b or {}).get("model") or {}
            fr = lambda r, mode: f"{100 * r[f'{mode}_frac_floor']:.1f}%" if r and r.get(f"{mode}_frac_floor") else "-"
            L.append(f"| {S} | {cell(a, 'fw')} | {cell(b, 'fw')} | {speed(a, b, 'fw')} | {cell(a, 'fwbw')} | "
                     f"{cell(b, 'fwbw')} | {speed(a, b, 'fwbw')} | {f3(m.get('fw_floor_ms'))} / "
                     f"{f3(m.get('fwbw_floor_ms'))} | {fr(a, 'fw')} / {fr(a, 'fwbw')} |")
        L.append("")

    # compact table for the README (headline.md)
    H = [f"tfla vs the Triton reference (mlstm_kernels 2.0.6), {tokens:,} tokens, {shape_label(shA)}, L = {tchunk}, "
         f"bf16, {device_title(env)}; ms, tfla / Triton (speed = Triton time / tfla time):", "",
         "| S | mLSTMsig fw | mLSTMsig fwbw | mLSTMexp fw | mLSTMexp fwbw | tfla sig fw: % of floor |",
         "|---|---|---|---|---|---|"]
    for S in sorted({r["S"] for r in rows if r.get("group") == "A" and r.get("kernel", "").startswith(("tfla", "triton"))}):
        cells = []
        for tk, rk in (("tfla_sig_norm0", "triton_sig_norm0"), ("tfla_exp", "triton_exp")):
            a = next(iter(pick(rows, tk, "A", shA, S)), None)
            b = next(iter(pick(rows, rk, "A", shA, S)), None)
            for mode in ("fw", "fwbw"):
                cells.append(f"{cell(a, mode)} / {cell(b, mode)} ({speed(a, b, mode)})")
        a = next(iter(pick(rows, "tfla_sig_norm0", "A", shA, S)), None)
        fl = f"{100 * a['fw_frac_floor']:.1f}%" if a and a.get("fw_frac_floor") else "-"
        H.append(f"| {S} | " + " | ".join(cells) + f" | {fl} |")
    with open(os.path.join(outdir, "headline.md"), "w") as f:
        f.write("\n".join(H) + "\n")

    # ---- all kernels, per head shape
    for g, sh in (("A", shA), ("B", shB)):
        present = [k for k in KERNEL_ORDER if any(r.get("kernel") == k and r.get("group") == g for r in rows)]
        if not present:
            continue
        Ss = sorted({r["S"] for r in rows if r.get("group") == g})
        att = shapes.get(g, {})
        L.append(f"## All kernels, {shape_label(sh)} (attention: {att.get('attn_heads')} heads x "
                 f"{att.get('attn_dim')}), ms forward / forward+backward")
        L.append("")
        if g == "A" and "runtime_vs_seqlen.png" in plots:
            L.append("![runtime against S, both head shapes](runtime_vs_seqlen.png)")
            L.append("")
        L.append("| kernel | L | " + " | ".join(f"S={S}" for S in Ss) + " |")
        L.append("|---|---|" + "---|" * len(Ss))
        for k in present:
            rs = {r["S"]: r for r in pick(rows, k, g, sh)}
            ch = next((r.get("chunk") for r in rs.values() if r.get("chunk")), None)
            L.append(f"| {KERNELS[k]['label']} | {ch or '-'} | "
                     + " | ".join(f"{cell(rs.get(S), 'fw')} / {cell(rs.get(S), 'fwbw')}" for S in Ss) + " |")
        L.append("")
        mem = [(k, pick(rows, k, g, sh)) for k in present]
        L.append(f"Peak memory above the inputs during forward+backward (MiB), {shape_label(sh)}:")
        L.append("")
        L.append("| kernel | " + " | ".join(f"S={S}" for S in Ss) + " |")
        L.append("|---|" + "---|" * len(Ss))
        for k, rs in mem:
            by = {r["S"]: r for r in rs}
            L.append(f"| {KERNELS[k]['label']} | " + " | ".join(
                f"{by[S]['fwbw_peak_extra_bytes'] / MIB:,.0f}" if S in by and by[S].get("fwbw_peak_extra_bytes") else "-"
                for S in Ss) + " |")
        L.append("")

    # ---- chunk size
    lrows = [r for r in rows if r.get("group") == "L"]
    if lrows:
        B = lrows[0]["B"]
        L.append(f"## Chunk size: time and memory against L ({shape_label(shA)}, S = {L_S}, B = {B})")
        L.append("")
        if "chunk_size.png" in plots:
            L.append("![time and memory against chunk size](chunk_size.png)")
            L.append("")
        ks = [k for k in KERNEL_ORDER if any(r.get("kernel") == k for r in lrows)]
        Ls = sorted({r["chunk"] for r in lrows})
        L.append("| kernel | " + " | ".join(f"L={x}" for x in Ls) + " | measured best L (fw / fwbw) |")
        L.append("|---|" + "---|" * len(Ls) + "---|")
        for k in ks:
            by = {r["chunk"]: r for r in pick(rows, k, "L")}
            best = []
            for mode in ("fw", "fwbw"):
                c = [(r[f"{mode}_ms"], x) for x, r in by.items() if ok(r, mode)]
                best.append(str(min(c)[1]) if c else "-")
            L.append(f"| {KERNELS[k]['label']} ms fw / fwbw | " + " | ".join(
                f"{cell(by.get(x), 'fw')} / {cell(by.get(x), 'fwbw')}" for x in Ls) + f" | {best[0]} / {best[1]} |")
            L.append("| ... peak above inputs, fwbw MiB | " + " | ".join(
                f"{by[x]['fwbw_peak_extra_bytes'] / MIB:,.0f}" if x in by and by[x].get("fwbw_peak_extra_bytes") else "-"
                for x in Ls) + " | |")
        for var, gb in (("sig, bf16 gates", 2), ("exp, fp32 gates", 4)):
            preds = [rm.predict(B, shA[0], L_S, shA[1], shA[2], x, ceil, gb) for x in Ls]
            L.append(f"| model ({var}) predicted ms fw / fwbw | " + " | ".join(
                f"{p['fw_pred_ms']:.3f} / {p['fwbw_pred_ms']:.3f}" for p in preds) + " | " +
                f"{rm.best_chunk(B, shA[0], L_S, shA[1], shA[2], ceil, gb, 'fw', Ls)[0]} / "
                f"{rm.best_chunk(B, shA[0], L_S, shA[1], shA[2], ceil, gb, 'fwbw', Ls)[0]} (predicted) |")
        L.append("")

    # ---- runtime model
    L.append("## Runtime model (docs/spec-mlstm.md), on the measured ceilings")
    L.append("")
    L.append(f"Ceilings: {ceil.gemm / 1e12:.0f} TFLOP/s, {ceil.bw / 1e12:.2f} TB/s ({ceil.source}); ridge point "
             f"{ceil.ridge():.0f} FLOP/byte. Predicted time = max(FLOPs / GEMM rate, bytes / copy bandwidth), bytes "
             f"including the boundary states' round trip; the additive model (no overlap) gives the optimum L* "
             f"in the last column. Measured: tfla mLSTMsig (normalize=0) at its chunk size; fraction of the floor "
             f"= floor / measured.")
    L.append("")
    L.append("| shape | S | L | fw GFLOP | fw GB | fw FLOP/B | predicted fw / fwbw ms | floor fw / fwbw ms | "
             "measured tfla fw / fwbw ms | fraction of floor fw / fwbw | predicted best L fw / fwbw | measured best L "
             "fw / fwbw | additive L* fw / fwbw |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    model_out = []
    cases = []
    for g, sh in (("A", shA), ("B", shB)):
        Ss = sorted({r["S"] for r in rows if r.get("group") == g})
        for S in [x for x in Ss if x in (min(Ss), L_S, max(Ss))] if Ss else []:
            cases.append((g, sh, S))
    for g, sh, S in cases:
        if None in sh:
            continue
        Bc = max(1, tokens // S)
        p = rm.predict(Bc, sh[0], S, sh[1], sh[2], tchunk, ceil, 2)
        bf = rm.best_chunk(Bc, sh[0], S, sh[1], sh[2], ceil, 2, "fw")[0]
        bb = rm.best_chunk(Bc, sh[0], S, sh[1], sh[2], ceil, 2, "fwbw")[0]
        so_f = rm.serial_optimum(Bc, sh[0], S, sh[1], sh[2], ceil, "fw")
        so_b = rm.serial_optimum(Bc, sh[0], S, sh[1], sh[2], ceil, "fwbw")
        meas = next(iter(pick(rows, "tfla_sig_norm0", g, sh, S)), None)
        mb = ["-", "-"]
        if g == "A" and S == L_S and lrows:
            for j, mode in enumerate(("fw", "fwbw")):
                c = [(r[f"{mode}_ms"], r["chunk"]) for r in pick(rows, "tfla_sig_norm0", "L") if ok(r, mode)]
                mb[j] = str(min(c)[1]) if c else "-"
        fr = lambda r, mode: f"{100 * r[f'{mode}_frac_floor']:.1f}%" if r and r.get(f"{mode}_frac_floor") else "-"
        L.append(f"| {shape_label(sh)} | {S} | {tchunk} | {p['fw_flops'] / 1e9:.0f} | {p['fw_bytes'] / 1e9:.2f} | "
                 f"{p['fw_ai']:.0f} | {p['fw_pred_ms']:.3f} / {p['fwbw_pred_ms']:.3f} | {p['fw_floor_ms']:.3f} / "
                 f"{p['fwbw_floor_ms']:.3f} | {cell(meas, 'fw')} / {cell(meas, 'fwbw')} | {fr(meas, 'fw')} / "
                 f"{fr(meas, 'fwbw')} | {bf} / {bb} | {mb[0]} / {mb[1]} | {so_f:.0f} / {so_b:.0f} |")
        model_out.append({"shape": sh, "S": S, "B": Bc, "chunk": tchunk, "model": p, "best_chunk_fw": bf,
                          "best_chunk_fwbw": bb, "additive_optimum_fw": so_f, "additive_optimum_fwbw": so_b,
                          "measured_tfla_sig": {m: (meas or {}).get(f"{m}_ms") for m in ("fw", "fwbw")},
                          "measured_best_chunk": mb})
    L.append("")
    if "roofline.png" in plots:
        L.append("![roofline with the measured points](roofline.png)")
        L.append("")
    with open(os.path.join(outdir, "model.json"), "w") as f:
        json.dump({"ceilings": {"gemm_flops": ceil.gemm, "copy_bps": ceil.bw, "source": ceil.source},
                   "cases": model_out}, f, indent=1)

    # ---- head dims
    D_S = cfg.get("D_S")
    dk = {r.get("kernel") for r in rows if r.get("group") == "D"}
    hd = []
    for k in KERNEL_ORDER:
        for r in rows:
            if r.get("kernel") == k and k in dk and r.get("S") == D_S and r.get("group") in ("A", "B", "D"):
                hd.append(r)
    if any(r.get("group") == "D" for r in hd):
        shs = sorted({shape_of(r) for r in hd}, key=lambda s: s[2] or 0)
        L.append(f"## Head dimensions at S = {D_S} (H x Dv = {shs[0][0] * shs[0][2] if shs else '-'}), "
                 f"ms forward / forward+backward")
        L.append("")
        if "head_dim.png" in plots:
            L.append("![time against head dimension](head_dim.png)")
            L.append("")
        L.append("| kernel | " + " | ".join(shape_label(s) for s in shs) + " |")
        L.append("|---|" + "---|" * len(shs))
        for k in KERNEL_ORDER:
            if KERNELS[k]["family"] == "attention":
                continue
            by = {shape_of(r): r for r in hd if r.get("kernel") == k}
            if by:
                L.append(f"| {KERNELS[k]['label']} | " + " | ".join(
                    f"{cell(by.get(s), 'fw')} / {cell(by.get(s), 'fwbw')}" for s in shs) + " |")
        L.append("")

    # ---- repeat check: the same configuration measured in two groups
    rep = []
    for r in rows:
        if r.get("group") != "L" or not ok(r, "fw"):
            continue
        twin = next((x for x in pick(rows, r["kernel"], "A", shape_of(r), r["S"], r.get("chunk")) if ok(x, "fw")), None)
        if twin:
            rep.append((r, twin))
    if rep:
        L.append("## Repeat check: the same configuration measured twice (chunk sweep vs S sweep)")
        L.append("")
        L.append("| kernel | S | L | fw ms (A / L) | fwbw ms (A / L) | difference fw / fwbw |")
        L.append("|---|---|---|---|---|---|")
        for r, t in rep:
            dfw = abs(r["fw_ms"] - t["fw_ms"]) / t["fw_ms"] * 100
            dbw = (abs(r["fwbw_ms"] - t["fwbw_ms"]) / t["fwbw_ms"] * 100) if ok(r, "fwbw") and ok(t, "fwbw") else None
            L.append(f"| {KERNELS.get(r['kernel'], {}).get('label', r['kernel'])} | {r['S']} | {r.get('chunk')} | "
                     f"{f3(t['fw_ms'])} / {f3(r['fw_ms'])} | {cell(t, 'fwbw')} / {cell(r, 'fwbw')} | {dfw:.1f}% / "
                     + (f"{dbw:.1f}%" if dbw is not None else "-") + " |")
        L.append("")

    # ---- failures
    fails = {}
    for r in rows:
        msgs = []
        if r.get("status") not in ("ok", "partial") and r.get("error"):
            msgs.append((r.get("status"), r["error"]))
        for mode in ("fw", "fwbw"):
            if r.get(f"{mode}_error") and r.get("status") in ("ok", "partial"):
                msgs.append((f"{mode} {'refused' if cell(r, mode) == 'refused' else 'failed'}", r[f"{mode}_error"]))
        for st, m in msgs:
            key = (r.get("kernel"), st, m[:160])
            fails.setdefault(key, []).append(f"{r.get('group')}:S={r.get('S')}" + (
                f"/L={r.get('chunk')}" if r.get("group") == "L" else ""))
    L.append("## Failures, refusals and skipped points")
    L.append("")
    if fails:
        L.append("| kernel | status | points | message |")
        L.append("|---|---|---|---|")
        for (k, st, m), pts in sorted(fails.items(), key=lambda x: (KERNEL_ORDER.index(x[0][0])
                                                                     if x[0][0] in KERNEL_ORDER else 99, x[0][1])):
            m1 = m.replace("|", "/").replace("\n", " ")
            L.append(f"| {KERNELS.get(k, {}).get('label', k)} | {st} | {', '.join(pts[:8])}"
                     f"{' ...' if len(pts) > 8 else ''} ({len(pts)}) | {m1} |")
    else:
        L.append("None.")
    L.append("")
    L.append("## Notes")
    L.append("")
    for line in plan_notes(cfg):
        L.append(f"- {line}")
    L.append("- tfla: one tfla-bench process per point (`--json`); forward+backward = the sum of the forward and "
             "backward medians; inputs drawn once per process (the L2 flush keeps calls from reading them from "
             "cache); memory = the sum of tfla-bench's own device allocations above the inputs (outputs, gradients, "
             "workspace). Peers: forward+backward is one autograd call; memory = torch.cuda.max_memory_allocated() "
             "during a call minus what was allocated before it.")
    asked = any(r.get("fwbw_note") for r in rows if r.get("kernel") == "fla_simple_gla")
    L.append("- FLA's chunk_simple_gla refuses its gated backward on Hopper with Triton >= 3.4 and < 3.7.1 (it "
             "reports wrong results there, FLA issue #640); the guard is kept, so its forward+backward shows as "
             "`refused` where that applies."
             + (" The worker asks the guard before its first forward+backward, and a refusal is not tried again at "
                "later points (the rows' fwbw_note says how each was refused)." if asked else "")
             + " ANCHORS.md's FLA fwbw times were taken with the guard off.")
    L.append("- The Triton reference's mLSTMexp backward is wrong for chunk sizes above 128 (ANCHORS.md): its "
             "fwbw times at L > 128 are timing only.")
    L.append("- FLA and Mamba2 compute related but not identical cells (no input gate, no normalizer; Mamba2 with "
             "per-head B/C, dstate = Dk, headdim = Dv); attention runs at the same embedding width H x Dv. Their "
             "TFLOP/s use the mLSTM count at their own chunk size (attention: the causal attention count).")
    L.append("")
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write("\n".join(L))


CSV_COLS = ["kernel", "label", "group", "B", "H", "S", "dk", "dv", "chunk", "attn_heads", "attn_dim", "status",
            "fw_ms", "fwbw_ms", "bw_ms", "fw_peak_extra_mib", "fwbw_peak_extra_mib", "fw_tflops", "fwbw_tflops",
            "fw_floor_ms", "fwbw_floor_ms", "fw_pred_ms", "fwbw_pred_ms", "fw_frac_floor", "fwbw_frac_floor",
            "reps", "error"]


def write_csv(outdir, rows):
    with open(os.path.join(outdir, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLS)
        for r in rows:
            m = r.get("model") or {}
            err = r.get("error") or "; ".join(f"{x}: {r[f'{x}_error']}" for x in ("fw", "fwbw") if r.get(f"{x}_error"))
            val = {**r, "fw_floor_ms": m.get("fw_floor_ms"), "fwbw_floor_ms": m.get("fwbw_floor_ms"),
                   "fw_pred_ms": m.get("fw_pred_ms"), "fwbw_pred_ms": m.get("fwbw_pred_ms"), "error": err,
                   "fw_peak_extra_mib": (r.get("fw_peak_extra_bytes") or 0) / MIB if r.get("fw_peak_extra_bytes") else None,
                   "fwbw_peak_extra_mib": (r.get("fwbw_peak_extra_bytes") or 0) / MIB if r.get("fwbw_peak_extra_bytes") else None}
            out = []
            for c in CSV_COLS:
                x = val.get(c)
                out.append(f"{x:.6g}" if isinstance(x, float) else ("" if x is None else str(x)[:300]))
            w.writerow(out)


def build_report(outdir, log=print, plots=True):
    rows, env = load(outdir)
    ceil = rm.Ceilings.from_env(env)
    rows = annotate(latest(rows), ceil)
    write_csv(outdir, rows)
    made = []
    if plots:
        try:
            import plot
            made = plot.make_plots(rows, env, ceil, outdir)
        except Exception as e:  # the data stay; plots can be remade with: python3 bench/report.py DIR
            import traceback
            log(f"plots failed ({type(e).__name__}: {e}); rerun `python3 bench/report.py {outdir}` where "
                f"matplotlib works")
            traceback.print_exc()
    write_summary(outdir, rows, env, ceil, made)
    log("report: summary.md, results.csv, model.json" + (f", {', '.join(made)}" if made else ""))
    return made


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    build_report(sys.argv[1])
