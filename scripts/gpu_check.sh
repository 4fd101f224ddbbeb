#!/usr/bin/env bash
# One call on a GPU machine: build the CUDA backend, run the hardware-layer tests, the GPU grid against
# the fp64 references, compute-sanitizer (memcheck, racecheck) on small cases, and the benchmark against
# the Triton reference (if its wheels are in .peers/); print a short summary table last.
# Results land in $OUT (the device tool's output folder) or ./gpu-out.
#   usage: bash scripts/gpu_check.sh [all | test | grid | bench | profile | deep ...]   (default all = test bench
#          profile; deep = ncu --set full of the backward's two big kernels, not part of all; grid = the part of test
#          for a short device budget: hw-layer tests, the whole grid, its L = 64 cases with both inter-chunk kernels
#          forced, memcheck)
#   TFLA_BENCH_CHUNKS  chunk sizes tfla is timed at (default "64 128")
#   TFLA_BENCH_PATHS   "auto separate" (default): tfla as dispatched, and forced onto another path side by side:
#                      materialized = the materialized forward (TFLA_CUDA_FORWARD=materialized), portable-walk = the
#                      mma.sync walk instead of the wgmma walk (TFLA_CUDA_FORWARD=portable-walk), separate = the
#                      per-role backward kernels (TFLA_CUDA_BACKWARD=separate), portable-states = the backward's state
#                      recurrences on mma.sync instead of wgmma (TFLA_CUDA_STATES=portable), inter-states = dq's and dk's
#                      inter-chunk terms from stored states instead of inter_chunk_grads.cuh (TFLA_CUDA_INTER=states),
#                      inter-dq / inter-both = only dq's / both from there (TFLA_CUDA_INTER=dq / inter); src/cuda/dispatch.cu
set -uo pipefail
cd "$(dirname "$0")/.."
MODES=" ${*:-all} "
want() { [[ ( "$MODES" == *" all "* && "$1" != deep ) || "$MODES" == *" $1 "* ]]; }
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
BUILD=build/cuda-h100
JOBS=$(nproc)
summary=()
source scripts/gpu_common.sh

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/device.txt"
nvcc --version | tail -2 | tee -a "$OUT/device.txt"
date -u +%Y-%m-%dT%H:%M:%SZ | tee -a "$OUT/device.txt"
git rev-parse --short HEAD 2>/dev/null | tee -a "$OUT/device.txt"

echo "== build ($JOBS jobs)"
t0=$(date +%s)
if ! { cmake --preset cuda-h100 -DTFLA_BUILD_TESTS=ON >"$OUT/build.log" 2>&1 &&
       cmake --build "$BUILD" -j "$JOBS" >>"$OUT/build.log" 2>&1; }; then
  grep -E "error|Error" "$OUT/build.log" | head -40
  echo "BUILD FAILED"
  exit 1
fi
echo "built in $(( $(date +%s) - t0 )) s"

if want test || want grid; then
  echo "== hardware-layer tests"
  "$BUILD/tests/tfla_test_hw" --gtest_brief=1 --gtest_output=json:"$OUT/test_hw.json" 2>&1 | tail -5
  summary+=("hw-layer tests: $(python3 -c "import json;d=json.load(open('$OUT/test_hw.json'));print(d['tests']-d['failures'],'passed,',d['failures'],'failed')" 2>/dev/null || echo 'no result')")

  echo "== GPU grid vs fp64 reference ($JOBS shards)"
  t0=$(date +%s)
  res=$(grid_shards "$BUILD/tests/tfla_test_cuda" "$OUT/test_cuda")
  grep -E "Failure|FAILED|error|Expected|Which is|actual|max\|" "$OUT/test_cuda.log" | head -60
  echo "grid: $res in $(( $(date +%s) - t0 )) s"
  summary+=("GPU grid vs fp64 reference: $res")
fi
if want test; then
  # At L = 64 (16-bit, Dk <= 128) the forward runs the wgmma walk on sm_90, and every 16-bit backward the wgmma state
  # recurrences; the L = 64 cases again on the mma.sync walk and recurrences, which other GPUs (and
  # TFLA_CUDA_FORWARD=portable-walk, TFLA_CUDA_STATES=portable) run.
  t0=$(date +%s)
  # (and the per-head scans over chunk boundaries in rounds of 3 chunks: their round logic, which needs > 1,024
  # chunks per head otherwise)
  res=$(GTEST_FILTER='*Grid*_L64_*' TFLA_CUDA_FORWARD=portable-walk TFLA_CUDA_STATES=portable TFLA_CUDA_SCAN_ROUND=3 grid_shards "$BUILD/tests/tfla_test_cuda" "$OUT/test_cuda_portable_walk")
  grep -E "Failure|FAILED|Expected|Which is|max\|" "$OUT/test_cuda_portable_walk.log" | head -30
  echo "grid, L = 64 cases on the portable walk and recurrences (scan rounds of 3): $res in $(( $(date +%s) - t0 )) s"
  summary+=("GPU grid, L = 64 cases on the portable walk and recurrences (scan rounds of 3): $res")
fi
if want test || want grid; then
  # the inter-chunk dq and dk terms from hopper/inter_chunk_grads.cuh run by default only where B*H x Dk tiles fill half the SMs
  # (one grid case); here the L = 64 cases again with it forced wherever its limits hold
  t0=$(date +%s)
  res=$(GTEST_FILTER='*Grid*_L64_*' TFLA_CUDA_INTER=inter grid_shards "$BUILD/tests/tfla_test_cuda" "$OUT/test_cuda_inter_grads")
  grep -E "Failure|FAILED|Expected|Which is|max\|" "$OUT/test_cuda_inter_grads.log" | head -30
  echo "grid, L = 64 cases with the inter-chunk gradient kernels: $res in $(( $(date +%s) - t0 )) s"
  summary+=("GPU grid, L = 64 cases with the inter-chunk gradient kernels (TFLA_CUDA_INTER=inter): $res")
fi
if want test; then
  t0=$(date +%s)
  res=$(GTEST_FILTER='*Grid*_L64_*' TFLA_CUDA_INTER=dq grid_shards "$BUILD/tests/tfla_test_cuda" "$OUT/test_cuda_inter_dq")
  grep -E "Failure|FAILED|Expected|Which is|max\|" "$OUT/test_cuda_inter_dq.log" | head -30
  echo "grid, L = 64 cases with the inter-chunk dq kernel and the reverse recurrence: $res in $(( $(date +%s) - t0 )) s"
  summary+=("GPU grid, L = 64 cases with the inter-chunk dq kernel and the reverse recurrence (TFLA_CUDA_INTER=dq): $res")
fi
if want test || want grid; then
  echo "== compute-sanitizer"
  tools="memcheck racecheck"; want test || tools=memcheck
  for tool in $tools; do
    # (with the inter-chunk gradient kernels forced: its case runs them and chunk_gradients' path that reads them)
    TFLA_CUDA_INTER=inter compute-sanitizer --tool $tool --error-exitcode 99 "$BUILD/tests/tfla_test_cuda" --gtest_brief=1 \
      --gtest_filter="*Grid*exp_B3H5S100K64V64*" >"$OUT/sanitizer_$tool.log" 2>&1
    rc=$?
    tail -3 "$OUT/sanitizer_$tool.log"
    summary+=("compute-sanitizer $tool: exit $rc ($(grep -c 'ERROR SUMMARY: 0 errors\|RACECHECK SUMMARY: 0 hazards' "$OUT/sanitizer_$tool.log") clean summaries)")
  done
fi

if want bench; then
  echo "== benchmark: tfla vs Triton reference, H=16 Dk=128 Dv=256, 65536 tokens, bf16"
  PEERS=$(triton_install)
  : >"$OUT/bench.jsonl"
  for S in 1024 16384 65536; do
    B=$((65536 / S))
    for L in ${TFLA_BENCH_CHUNKS:-64 128}; do
      for v in "sig --normalize 0 --gate-dtype bf16" "exp --gate-dtype f32"; do
        for path in ${TFLA_BENCH_PATHS:-auto separate}; do
          check="--no-check"; [ "$S" -le 1024 ] && [ "$path" = auto ] && check="--check"
          fp=""; [ "$path" = materialized ] || [ "$path" = portable-walk ] && fp=$path
          bp=""; [ "$path" = separate ] && bp=separate
          sp=""; [ "$path" = portable-states ] && sp=portable
          dq=""; [ "$path" = inter-states ] && dq=states; [ "$path" = inter-dq ] && dq=dq; [ "$path" = inter-both ] && dq=inter
          TFLA_CUDA_FORWARD=$fp TFLA_CUDA_BACKWARD=$bp TFLA_CUDA_STATES=$sp TFLA_CUDA_INTER=$dq "$BUILD/tools/tfla-bench" --device cuda --variant $v -B $B -H 16 -S $S --dk 128 \
            --dv 256 --chunk $L --dtype bf16 --reps 30 --warmup 5 $check --json --no-header 2>>"$OUT/bench.err" |
            tee -a "$OUT/bench.jsonl"
        done
      done
    done
    triton_main_shape "$PEERS" "$S" "$OUT/bench.err" | tee -a "$OUT/bench.jsonl"
  done
  python3 bench/summarize.py "$OUT/bench.jsonl" | tee "$OUT/bench_table.md"
fi

if want profile; then
  # Per-kernel device time of one forward + backward at the main setting (S = 1,024, 16,384 and 65,536), from
  # Nsight Compute's gpu__time_duration (clocks left alone). Tells where the time goes, kernel by kernel.
  echo "== per-kernel profile"
  : >"$OUT/profile.csv"
  for S in 1024 16384 65536; do
    B=$((65536 / S))
    ncu --clock-control none --metrics gpu__time_duration.sum --csv \
      "$BUILD/tools/tfla-bench" --device cuda --variant exp -B $B -H 16 -S $S --dk 128 --dv 256 --chunk 64 \
      --dtype bf16 --gate-dtype f32 --reps 1 --warmup 0 --no-check --json --no-header >"$OUT/ncu_$S.csv" 2>"$OUT/ncu_$S.err"
    python3 - "$OUT/ncu_$S.csv" "$S" <<'PY' | tee -a "$OUT/profile.csv"
import csv, sys
# ncu's CSV follows tfla-bench's own output (a JSON line, ==PROF== lines): start at the header row
rows = list(csv.reader(open(sys.argv[1])))
rows = rows[next(i for i, r in enumerate(rows) if "Kernel Name" in r):]
hdr = rows[0]; ki = hdr.index("Kernel Name"); vi = hdr.index("Metric Value"); ui = hdr.index("Metric Unit")
rows = [r for r in rows if len(r) == len(hdr)]
# one line per launch, in launch order (forward first, then backward), with the template arguments
for r in rows[1:]:
    name = r[ki].replace("void ", "").replace("tfla::cuda::", "").split("(")[0].replace(",", ";")
    scale = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0}
    v = float(r[vi].replace(",", "")) * scale[r[ui]]
    print(f"S={sys.argv[2]},{name},{v:.3f} ms")
PY
  done
  summary+=("per-kernel profile: $OUT/profile.csv")
fi

if want deep; then
  # One launch each of the backward's two big kernels at S = 1,024 (exp), every ncu section with per-instruction
  # (SASS) source counters: where chunk_gradients and the recurrences stall. The reports land in $OUT; the
  # details page and the per-instruction table go to CSV for reading without the GUI.
  echo "== deep profile (ncu --set full)"
  for k in ${TFLA_DEEP_KERNELS:-chunk_gradients hopper_chunk_states_backward}; do
    ncu --set full --import-source yes -k "regex:$k" --launch-count 1 -f -o "$OUT/deep_$k" \
      "$BUILD/tools/tfla-bench" --device cuda --variant exp -B 64 -H 16 -S 1024 --dk 128 --dv 256 --chunk 64 \
      --dtype bf16 --gate-dtype f32 --reps 1 --warmup 0 --no-check --json --no-header >"$OUT/deep_$k.log" 2>&1
    ncu -i "$OUT/deep_$k.ncu-rep" --page details --csv >"$OUT/deep_${k}_details.csv" 2>>"$OUT/deep_$k.log"
    ncu -i "$OUT/deep_$k.ncu-rep" --page source --csv --print-source sass >"$OUT/deep_${k}_sass.csv" 2>>"$OUT/deep_$k.log"
    echo "$k: $(wc -c <"$OUT/deep_${k}_details.csv") B details, $(wc -l <"$OUT/deep_${k}_sass.csv") SASS rows"
  done
  summary+=("deep profile: $OUT/deep_*")
fi

echo
echo "== summary"
for s in "${summary[@]}"; do echo "$s"; done
[ -f "$OUT/bench_table.md" ] && cat "$OUT/bench_table.md"
[ -f "$OUT/profile.csv" ] && cat "$OUT/profile.csv"
exit 0
