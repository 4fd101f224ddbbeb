#!/usr/bin/env bash
# A/B on one GPU in one call: the working tree (B) against a copy of it with some files replaced (A, the files under
# BASE_DIR at their paths relative to the repository root, e.g. the committed version of a kernel). Builds both,
# times tfla A and B alternately (A B A B per setting, tfla-bench medians of 30 repetitions each) next to the Triton
# reference at the main setting, prints a table of the per-setting medians and ratios, then runs the GPU grid on B
# (the candidate). Results in $OUT (the device tool's output folder) or ./gpu-out.
#   usage: bash scripts/gpu_ab.sh BASE_DIR [S ...]     (default S: 1024 65536)
#   TFLA_AB_GRID=0 skips the grid.
set -uo pipefail
cd "$(dirname "$0")/.."
BASE_DIR=${1:?usage: gpu_ab.sh BASE_DIR [S ...]}
shift
if [ $# -gt 0 ]; then SEQS=("$@"); else SEQS=(1024 65536); fi
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
date -u +%Y-%m-%dT%H:%M:%SZ | tee -a "$OUT/device.txt"

A=/tmp/tfla-ab-base
rm -rf "$A" && mkdir -p "$A"
tar --exclude=./build --exclude=./gpu-out --exclude="./$BASE_DIR" -cf - . | tar -xf - -C "$A"
(cd "$BASE_DIR" && find . -type f) | while read -r f; do cp "$BASE_DIR/$f" "$A/$f"; echo "A: $f from $BASE_DIR"; done
for tree in "$PWD" "$A"; do
  (cd "$tree" && cmake --preset cuda-h100 -DTFLA_BUILD_TESTS=ON >"$OUT/build_$(basename "$tree").log" 2>&1 &&
   cmake --build build/cuda-h100 -j "$(nproc)" >>"$OUT/build_$(basename "$tree").log" 2>&1) || { echo "BUILD FAILED: $tree"; exit 1; }
done
echo "built A and B"

source scripts/gpu_common.sh
PEERS=$(triton_install)
: >"$OUT/ab.jsonl"
for S in "${SEQS[@]}"; do
  B=$((65536 / S))
  for v in "sig --normalize 0 --gate-dtype bf16" "exp --gate-dtype f32"; do
    for round in 1 2; do
      for tree in A B; do
        bin=build/cuda-h100/tools/tfla-bench; [ $tree = A ] && bin=$A/build/cuda-h100/tools/tfla-bench
        "$bin" --device cuda --variant $v -B $B -H 16 -S $S --dk 128 --dv 256 --chunk 64 --dtype bf16 --reps 30 \
          --warmup 5 --no-check --json --no-header 2>>"$OUT/ab.err" | sed "s/^{/{\"ab\":\"$tree\",/" >>"$OUT/ab.jsonl"
      done
    done
  done
  triton_main_shape "$PEERS" "$S" "$OUT/ab.err" | sed 's/^{/{"ab":"triton",/' >>"$OUT/ab.jsonl"
done
python3 - "$OUT/ab.jsonl" <<'PY' | tee "$OUT/ab_table.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def key(r):
    v = r.get("variant", "?")
    return (r.get("S"), v)
groups = {}
for r in rows:
    groups.setdefault(key(r), {}).setdefault(r["ab"], []).append(r)
print("| S | variant | A fw / fwbw ms | B fw / fwbw ms | B / A fw | Triton fw / fwbw ms | speed A fw / fwbw | speed B fw / fwbw |")
print("|---|---|---|---|---|---|---|---|")
for (S, v), g in sorted(groups.items(), key=lambda kv: (kv[0][0] or 0, str(kv[0][1]))):
    def med(tree, k):
        alias = {"fwd_ms": "fw_ms", "fwdbwd_ms": "fwbw_ms"}  # the peers' names
        xs = [r.get(k, r.get(alias[k])) for r in g.get(tree, []) if k in r or alias[k] in r]
        return statistics.median(xs) if xs else float("nan")
    a_fw, a_fb, b_fw, b_fb = med("A", "fwd_ms"), med("A", "fwdbwd_ms"), med("B", "fwd_ms"), med("B", "fwdbwd_ms")
    t_fw, t_fb = med("triton", "fwd_ms"), med("triton", "fwdbwd_ms")
    print(f"| {S} | {v} | {a_fw:.3f} / {a_fb:.3f} | {b_fw:.3f} / {b_fb:.3f} | {b_fw / a_fw:.3f} | {t_fw:.3f} / {t_fb:.3f} | "
          f"{t_fw / a_fw:.2f}x / {t_fb / a_fb:.2f}x | {t_fw / b_fw:.2f}x / {t_fb / b_fb:.2f}x |")
PY

# the grid last: the timing decides whether B is worth verifying
if [ "${TFLA_AB_GRID:-1}" = 1 ]; then
  echo "grid (B): $(grid_shards build/cuda-h100/tests/tfla_test_cuda "$OUT/grid")"
fi

