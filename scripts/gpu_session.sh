#!/usr/bin/env bash
# Everything a development session checks on the GPU, in one device call that fits its limits (10 min a
# command, 8 files back): the CUDA build, hardware-layer tests, the GPU grid against the fp64 reference,
# compute-sanitizer, tfla vs the Triton reference, a per-kernel profile (scripts/gpu_check.sh); the Python
# package's GPU tests (scripts/gpu_python_tests.sh); a short run of the benchmark suite
# (scripts/gpu_bench_suite.sh). Each part writes its own folder, packed as one .tgz in $OUT.
#   usage: bash scripts/gpu_session.sh        (carry .peers)
#   TFLA_PY_PHASES ("build gpu parity e2e torch"), TFLA_PY_BUDGET_S (150), TFLA_SUITE_BUDGET_S (90; 0 skips the
#   suite), TFLA_BENCH_CHUNKS (128)
set -uo pipefail
cd "$(dirname "$0")/.."
FINAL=${OUT:-$PWD/gpu-out}
WORK=/tmp/tfla-session
rm -rf "$WORK" && mkdir -p "$WORK" "$FINAL"
export PYTHONUNBUFFERED=1
T0=$(date +%s)
stamp() { echo "[session $(( $(date +%s) - T0 )) s] $*"; }

stamp "gpu_check: build, tests, bench, profile"
OUT=$WORK/check TFLA_BENCH_CHUNKS=${TFLA_BENCH_CHUNKS:-128} bash scripts/gpu_check.sh test bench profile \
  >"$WORK/check.log" 2>&1
sed -n '/== summary/,$p' "$WORK/check.log"

stamp "python package GPU tests"
OUT=$WORK/py TFLA_GPU_BUDGET_S=${TFLA_PY_BUDGET_S:-150} bash scripts/gpu_python_tests.sh ${TFLA_PY_PHASES:-build gpu parity e2e torch} \
  >"$WORK/py.log" 2>&1
sed -n '/== accuracy/,$p' "$WORK/py.log"

if [ "${TFLA_SUITE_BUDGET_S:-90}" -gt 0 ]; then
  stamp "benchmark suite (--quick)"
  OUT=$WORK/suite bash scripts/gpu_bench_suite.sh --quick --budget-s "${TFLA_SUITE_BUDGET_S:-90}" \
    >"$WORK/suite.log" 2>&1
  tail -15 "$WORK/suite.log"
fi

stamp "packing results"
for part in check py suite; do
  cp "$WORK/$part.log" "$WORK/$part/" 2>/dev/null
  tar czf "$FINAL/$part.tgz" -C "$WORK" "$part" 2>/dev/null
done
stamp "done"
