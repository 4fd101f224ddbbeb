#!/usr/bin/env bash
# The benchmark suite on a GPU machine (bench/suite.py): tfla side by side with its peers, the runtime model,
# plots and a Markdown summary, in under 10 minutes on one H100 (--quick: a smoke subset, ~4 min). The default
# plan (~520 s by `python3 bench/suite.py --plan`, cold Triton cache) runs the expensive peers at a subset of S (see
# bench/suite.py --help); with `--budget-s 545` no new work starts after 525 s (--reserve-s 20).
#   usage: bash scripts/gpu_bench_suite.sh [--quick] [--budget-s S] [other bench/suite.py options]
# Needs: python3 with torch (and matplotlib) on the machine; the peers as files in .peers/ (git-ignored; carry
# it to the GPU machine): mlstm_kernels, fla-core, flash-linear-attention wheels and the mamba-ssm sdist,
# fetched with `pip download --no-deps` where PyPI is reachable (see bench/NOTES.md). Peers that are missing
# give rows that say so. Builds build/cuda-h100 (tfla-bench only) when it is not there.
# Results: bench/results/<date>-<gpu>/ and, in $OUT (the device tool's output folder; default ./gpu-out):
# suite.tgz (the whole results folder), summary.md, headline.md, headline.png, suite.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
t_start=$(date +%s)

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "no GPU found: run 'python3 bench/suite.py --dry-run' or '--smoke-cpu' to test the suite without one" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader

# ---- the peers, from .peers/ (no network on the GPU machine)
PEERS=/tmp/tfla-peers
PYPATH=""
rm -rf "$PEERS" && mkdir -p "$PEERS/src"
wheels=()
for pat in 'mlstm_kernels-*.whl' 'fla_core-*.whl' 'flash_linear_attention-*.whl'; do
  for w in .peers/$pat; do [ -f "$w" ] && wheels+=("$w"); done
done
if [ ${#wheels[@]} -gt 0 ]; then
  if python3 -m pip install -q --no-index --no-deps --no-compile --target "$PEERS/site" "${wheels[@]}"; then
    PYPATH="$PEERS/site"
    echo "peers installed: ${wheels[*]}"
  else
    echo "warning: pip could not install ${wheels[*]}: those peers will be recorded as not installed" >&2
  fi
else
  echo "warning: no peer wheels in .peers/: the Triton reference and FLA will be recorded as not installed" >&2
fi
for sd in .peers/mamba_ssm-*.tar.gz; do
  [ -f "$sd" ] || continue
  # mamba-ssm is an sdist with a CUDA extension; its Triton SSD kernel needs only the Python sources
  # (bench/peers/mamba2_ssd.py imports it without the package __init__).
  if tar xzf "$sd" -C "$PEERS/src"; then
    d=$(ls -d "$PEERS"/src/mamba_ssm-* | head -1)
    PYPATH="${PYPATH:+$PYPATH:}$d"
    echo "mamba-ssm sources: $d"
  fi
done
export PYTHONPATH="${PYPATH}${PYTHONPATH:+:$PYTHONPATH}"

# ---- tfla-bench
BENCH=${TFLA_BENCH:-build/cuda-h100/tools/tfla-bench}
if [ ! -x "$BENCH" ]; then
  echo "== building tfla-bench (cmake --preset cuda-h100)"
  t0=$(date +%s)
  if ! { cmake --preset cuda-h100 >"$OUT/build.log" 2>&1 &&
         cmake --build build/cuda-h100 -j "$(nproc)" --target tfla-bench >>"$OUT/build.log" 2>&1; }; then
    grep -E "error|Error" "$OUT/build.log" | head -30
    echo "BUILD FAILED: the suite runs without tfla (its rows will say so)" >&2
  fi
  echo "built in $(( $(date +%s) - t0 )) s"
fi

# ---- the suite; its budget defaults to 570 s (quick: 270 s) minus what the set-up above took
args=("$@")
budget=""
prev=""
for x in "${args[@]}"; do [ "$prev" = "--budget-s" ] && budget=$x; prev=$x; done
if [ -z "$budget" ]; then
  used=$(( $(date +%s) - t_start ))
  if printf '%s\n' "${args[@]}" | grep -qx -- '--quick'; then budget=$(( 270 - used )); else budget=$(( 570 - used )); fi
  [ $budget -lt 90 ] && budget=90
  args+=(--budget-s "$budget")
fi
dirfile=$(mktemp)
# The suite keeps to its budget by itself; the timeout is a safety net so that the results still get packed.
TFLA_SUITE_OUTDIR_FILE="$dirfile" timeout -k 10 "$(( ${budget%.*} + 15 ))" \
  python3 bench/suite.py --tfla-bench "$BENCH" "${args[@]}" > "$OUT/suite.stdout" 2> >(tee "$OUT/suite.log" >&2)
rc=$?
sleep 1  # let tee finish
RES=$(cat "$dirfile" 2>/dev/null)
rm -f "$dirfile"
if [ -z "$RES" ] || [ ! -d "$RES" ]; then
  echo "the suite wrote no results folder (exit $rc); see $OUT/suite.log" >&2
  exit 1
fi
if [ ! -f "$RES/summary.md" ] && [ -f "$RES/results.jsonl" ]; then
  echo "the suite stopped early (exit $rc): writing the report of what it measured" >&2
  timeout 60 python3 bench/report.py "$RES" >&2
fi
cp -f "$RES"/summary.md "$RES"/headline.md "$RES"/headline.png "$OUT"/ 2>/dev/null
cp -f "$OUT/suite.log" "$RES/logs/suite.log" 2>/dev/null
tar czf "$OUT/suite.tgz" -C "$(dirname "$RES")" "$(basename "$RES")"
rm -f "$OUT/suite.stdout"
echo
echo "== results: $RES (also $OUT/suite.tgz); total $(( $(date +%s) - t_start )) s"
cat "$RES/headline.md" 2>/dev/null
echo
sed -n '/^## Failures/,/^## Notes/p' "$RES/summary.md" 2>/dev/null | head -40
exit $rc
