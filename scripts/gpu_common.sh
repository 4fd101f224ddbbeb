# Sourced by the GPU scripts (gpu_check.sh, gpu_ab.sh): the GPU grid in parallel shards, and the Triton reference at
# the main setting of ../shared/ANCHORS.md from the peer wheels in .peers/ (carry `.peers` to the machine).
# SPDX-License-Identifier: Apache-2.0

# triton_install: the wheels into /tmp/peers (no network, no dependencies); prints that folder, or nothing
# when there are no wheels or the install fails.
triton_install() {
  if ls .peers/*.whl >/dev/null 2>&1 &&
     python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/peers .peers/*.whl >&2; then
    echo /tmp/peers
  fi
}

# triton_main_shape PEERS S ERR: mlstm_kernels' chunkwise Triton kernels (chunk 128; fp32 gates for exp) for
# mLSTMsig (normalize 0) and mLSTMexp at 65,536 tokens split into sequences of S, H = 16, Dk = 128, Dv = 256, bf16:
# one JSON line each on stdout, diagnostics appended to ERR. Nothing when PEERS is empty.
triton_main_shape() {
  local peers=$1 S=$2 err=$3 v
  [ -n "$peers" ] || return 0
  for v in "sig --normalize 0" "exp"; do
    PYTHONPATH=$peers timeout 300 python3 bench/peers/triton_mlstm.py --variant $v -S "$S" --chunk 128 2>>"$err"
  done
}

# grid_shards BIN PREFIX: the GPU grid (BIN, a gtest binary) in $(nproc) parallel shards; the shards' logs joined in
# PREFIX.log and their JSON merged into PREFIX.json (the per-shard files are written to a temporary folder and
# removed: the device tool brings back a limited number of files, and 32 shard files per grid crowded out the
# benchmark's data in one call, bench/NOTES.md v10.3); prints "<passed> passed, <failed> failed".
grid_shards() {
  local bin=$1 prefix=$2 n i tmp
  n=$(nproc)
  tmp=$(mktemp -d)
  for i in $(seq 0 $((n - 1))); do
    GTEST_TOTAL_SHARDS=$n GTEST_SHARD_INDEX=$i "$bin" --gtest_brief=1 --gtest_output=json:"$tmp/shard_$i.json" \
      >"$tmp/shard_$i.log" 2>&1 &
  done
  wait
  cat "$tmp"/shard_[0-9]*.log >"$prefix.log"
  python3 - "$tmp" "$prefix.json" <<'PY'
import glob, json, sys
merged = {"tests": 0, "failures": 0, "testsuites": []}
for p in sorted(glob.glob(sys.argv[1] + "/shard_[0-9]*.json")):
    d = json.load(open(p))
    merged["tests"] += d["tests"]
    merged["failures"] += d["failures"]
    merged["testsuites"] += d.get("testsuites", [])
json.dump(merged, open(sys.argv[2], "w"), indent=1)
print(f"{merged['tests'] - merged['failures']} passed, {merged['failures']} failed")
PY
  rm -rf "$tmp"
}
