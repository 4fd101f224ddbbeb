#!/usr/bin/env bash
# Nsight Compute detail of one kernel at the main setting (H=16, Dk=128, Dv=256, 65,536 tokens, bf16, exp):
# throughput, occupancy, warp stall reasons, pipe utilization; the short text lands in $OUT/detail_<S>.txt.
# KERNEL_REGEX matches the kernel's base name (no template arguments); the first launch is profiled.
#   usage: bash scripts/gpu_kernel_detail.sh KERNEL_REGEX [S ...]   (after scripts/gpu_check.sh built build/cuda-h100)
#   TFLA_DETAIL_CHUNK: the chunk size (default 64, the default for this shape)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
BUILD=build/cuda-h100
K=$1; shift
for S in "${@:-1024}"; do
  B=$((65536 / S))
  ncu --clock-control none -k "regex:$K" -c 1 --set full --import-source no \
    --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active" \
    "$BUILD/tools/tfla-bench" --device cuda --variant exp -B $B -H 16 -S $S --dk 128 --dv 256 --chunk "${TFLA_DETAIL_CHUNK:-64}" \
    --dtype bf16 --gate-dtype f32 --reps 1 --warmup 0 --no-check --json --no-header >"$OUT/detail_$S.txt" 2>&1
  grep -E "^  [A-Za-z]|stalled|hmma|Duration|Throughput|Registers|Occupancy|Stall|Issue|Warp Cycles|Eligible|Active Warps|Shared Memory|Executed Ipc|Pipe" \
    "$OUT/detail_$S.txt" | grep -v "^    ---" | head -90
done
