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

# grid_shards BIN PREFIX: the GPU grid (BIN, a gtest binary) in $(nproc) parallel shards: PREFIX_<i>.json and
# PREFIX_<i>.log per shard, the logs joined in PREFIX.log; prints "<passed> passed, <failed> failed".
grid_shards() {
  local bin=$1 prefix=$2 n i
  n=$(nproc)
  for i in $(seq 0 $((n - 1))); do
    GTEST_TOTAL_SHARDS=$n GTEST_SHARD_INDEX=$i "$bin" --gtest_brief=1 --gtest_output=json:"${prefix}_$i.json" \
      >"${prefix}_$i.log" 2>&1 &
  done
  wait
  cat "$prefix"_[0-9]*.log >"$prefix.log"
  python3 - "$prefix" <<'PY'
import glob, json, sys
t = f = 0
for p in glob.glob(sys.argv[1] + "_[0-9]*.json"):
    d = json.load(open(p)); t += d["tests"]; f += d["failures"]
print(f"{t - f} passed, {f} failed")
PY
}
