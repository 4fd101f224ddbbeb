#!/usr/bin/env bash
# Unpack the results of one scripts/gpu_session.sh device call (check.tgz, py.tgz) into a results folder
# under bench/results/, keeping the data that a README there refers to (logs that only repeat it are left out).
#   usage: bash scripts/collect_session.sh <folder with check.tgz/py.tgz> bench/results/<date>-<gpu>-<tag>
set -euo pipefail
src=$1 dst=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dst"
if [ -f "$src/check.tgz" ]; then
  tar xzf "$src/check.tgz" -C "$tmp"
  mkdir -p "$dst/check"
  for f in device.txt check.log bench.jsonl bench_table.md bench.err ncu_1024.csv ncu_65536.csv \
           sanitizer_memcheck.log sanitizer_racecheck.log test_hw.json; do
    [ -f "$tmp/check/$f" ] && cp "$tmp/check/$f" "$dst/check/"
  done
  # the grid's failures with their messages (the grids' merged JSON stays on the machine)
  grep -h -B1 -A3 "Failure\|FAILED" "$tmp"/check/test_cuda_*.log >"$dst/check/grid_failures.txt" 2>/dev/null || true
fi
if [ -f "$src/py.tgz" ]; then
  tar xzf "$src/py.tgz" -C "$tmp"
  mkdir -p "$dst/python"
  for f in device.txt py.log summary.txt summary.json accuracy_table.txt python_metrics.jsonl; do
    [ -f "$tmp/py/$f" ] && cp "$tmp/py/$f" "$dst/python/"
  done
  cp "$tmp"/py/junit_*.xml "$dst/python/" 2>/dev/null || true
  grep -h -E "FAILED|^E   " "$tmp"/py/pytest_*.log >"$dst/python/failures.txt" 2>/dev/null || true
fi
ls -R "$dst" | head -40
