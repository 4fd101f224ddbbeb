#!/usr/bin/env bash
# One call on a GPU machine: build and install the tfla Python package with the CUDA backend (pip, scikit-build-core,
# no network: --no-build-isolation --no-deps), then run its tests, GPU first:
#   gpu    python/tests/test_gpu.py     accuracy rule vs fp64 (every output and gradient), CUDA graphs bit-equal,
#                                       current stream, strided views, errors, autocast drop-in
#   parity python/tests/test_gpu_parity.py  h and every gradient against mlstm_kernels 2.0.6's Triton kernels
#                                       (Triton compiles its kernels on first use: allow ~2 minutes)
#   e2e    python/tests/test_e2e_hf.py  transformers' xLSTM (tiny; xLSTM-7B shapes cut to 2 layers): logits,
#                                       greedy generation of 32 tokens, one training step, Triton vs tfla
#   torch  python/tests/test_torch.py   torch.library.opcheck, torch.compile(fullgraph=True) vs eager (CPU + CUDA)
#   cpu    the CPU-only tests (test_cpu.py, test_abi.py, test_compat.py; CI runs these too)
# mlstm_kernels and xlstm come from the wheels in .peers/ (carry `.peers` to the machine), installed with
# --no-deps into a private folder on PYTHONPATH. Results in $OUT (the device tool's folder) or ./gpu-out:
# junit_<phase>.xml, python_metrics.jsonl (accuracy numbers per output, parity, end to end), pip_build.log,
# summary.json, and a summary printed last.
#   usage: bash scripts/gpu_python_tests.sh [build] [gpu] [parity] [e2e] [torch] [cpu]   (default: all, in that order)
#   TFLA_GPU_BUDGET_S  wall-clock budget of the whole script (default 570 s); each phase gets what is left
#   CUDAARCHS          CUDA architectures of the build (default 90a-real: H100/H200)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
export TFLA_RESULTS_DIR="$OUT" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
T0=$(date +%s)
BUDGET=${TFLA_GPU_BUDGET_S:-570}
PHASES=("$@")
[ ${#PHASES[@]} -eq 0 ] && PHASES=(build gpu parity e2e torch cpu)
PKG=/tmp/tfla-pkg     # the installed package (pip --target: no system site-packages are touched)
PEERS=/tmp/tfla-peers
export PYTHONPATH="$PKG:$PEERS${PYTHONPATH:+:$PYTHONPATH}"
left() { echo $((BUDGET - ($(date +%s) - T0))); }
has() { local p; for p in "${PHASES[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
summary=()

echo "== device"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvcc --version | tail -1
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  python3 -c "import transformers; print('transformers', transformers.__version__)" 2>/dev/null || echo "transformers: none"
  python3 -c "import triton; print('triton', triton.__version__)" 2>/dev/null || echo "triton: none"
  git rev-parse --short HEAD 2>/dev/null
  git status --short 2>/dev/null | head -20
  date -u +%Y-%m-%dT%H:%M:%SZ
} 2>&1 | tee "$OUT/device.txt"

if ls .peers/*.whl >/dev/null 2>&1; then
  rm -rf "$PEERS"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$PEERS" .peers/*.whl >"$OUT/peers.log" 2>&1 &&
    echo "peers: $(ls .peers/*.whl | xargs -n1 basename | tr '\n' ' ')"
else
  echo "peers: none (.peers/*.whl not carried): the Triton parity and Triton end-to-end tests will skip"
fi

if has build; then
  echo "== build: pip install --no-build-isolation --no-deps --target $PKG . (TFLA_CUDA=${TFLA_CUDA:-ON}, CUDAARCHS=${CUDAARCHS:-90a-real})"
  t=$(date +%s)
  rm -rf "$PKG"
  if ! CUDAARCHS=${CUDAARCHS:-90a-real} TFLA_CUDA=${TFLA_CUDA:-ON} CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
       SKBUILD_BUILD_DIR="$ROOT/build/python-cuda" \
       timeout "$(left)" python3 -m pip install -v --no-build-isolation --no-deps --no-compile --target "$PKG" . \
       >"$OUT/pip_build.log" 2>&1; then
    grep -E "error|Error|multiple definition" "$OUT/pip_build.log" | head -40
    echo "BUILD FAILED (see pip_build.log)"
    echo '{"build": "failed"}' >"$OUT/summary.json"
    exit 1
  fi
  echo "built and installed in $(( $(date +%s) - t )) s"
  summary+=("build: ok in $(( $(date +%s) - t )) s")
fi
python3 -c "import tfla; print('tfla', tfla.__version__, tfla.library_path, 'cuda backend:', tfla.has_cuda())" |
  tee -a "$OUT/device.txt" || { echo "import tfla failed"; exit 1; }

run_phase() {  # name, files...
  local name=$1; shift
  local budget; budget=$(left)
  if [ "$budget" -le 20 ]; then
    echo "== $name: skipped, budget spent"; summary+=("$name: not run (budget)"); return
  fi
  echo "== $name (${budget} s left): $*"
  local t; t=$(date +%s)
  # SIGINT at the budget: pytest stops, still writes its summary and the JUnit file of the tests it ran
  timeout -s INT -k 20 "$budget" python3 -m pytest "$@" -v -rfEs -p no:cacheprovider \
    --junitxml="$OUT/junit_$name.xml" >"$OUT/pytest_$name.log" 2>&1
  local rc=$?
  grep -E "(PASSED|FAILED|ERROR|SKIPPED)" "$OUT/pytest_$name.log" | grep -vE "PASSED|^SKIPPED" | tail -30
  tail -3 "$OUT/pytest_$name.log"
  { [ $rc -eq 124 ] || [ $rc -eq 2 ] && grep -q KeyboardInterrupt "$OUT/pytest_$name.log"; } &&
    echo "$name: STOPPED at the budget (${budget} s): the results cover the tests that ran"
  summary+=("$name: $(python3 - "$OUT/junit_$name.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    r = ET.parse(sys.argv[1]).getroot()
    s = r if r.tag == "testsuite" else r.find("testsuite")
    t, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
    print(f"{t - f - e - k} passed, {f + e} failed, {k} skipped")
except Exception as ex:
    print(f"no junit result ({ex})")
PY
) (rc $rc, $(( $(date +%s) - t )) s)")
}

has gpu && run_phase gpu python/tests/test_gpu.py
has parity && run_phase parity python/tests/test_gpu_parity.py
has e2e && run_phase e2e python/tests/test_e2e_hf.py
has torch && run_phase torch python/tests/test_torch.py
has cpu && run_phase cpu python/tests/test_cpu.py python/tests/test_abi.py python/tests/test_compat.py

echo
echo "== accuracy: worst error/bound ratio per output (python_metrics.jsonl; <= 1 passes)"
python3 - "$OUT" <<'PY' | tee "$OUT/accuracy_table.txt"
import json, os, sys
path = os.path.join(sys.argv[1], "python_metrics.jsonl")
if not os.path.exists(path):
    print("no metrics"); sys.exit()
worst = {}
for line in open(path):
    r = json.loads(line)
    if r.get("kind") != "accuracy" or r.get("device") == "cpu":
        continue
    key = f"{r['variant']}{'' if r.get('normalize', True) else '_nonorm'} {r['dtype']}"
    for info in r["results"]:
        for m in ("max_abs", "rms"):
            if m in info:
                k = (key, info["name"], m)
                worst[k] = max(worst.get(k, 0.0), info[m]["ratio"])
rows = sorted(worst.items())
bad = [(k, v) for k, v in rows if v > 1]
print(f"{len(rows)} (case, output, measure) maxima, {len(bad)} above 1")
for (key, name, m), v in bad:
    print(f"  FAIL {key:16s} {name:4s} {m:7s} ratio {v:.2f}")
PY
echo
echo "== summary"
for s in "${summary[@]}"; do echo "$s"; done | tee "$OUT/summary.txt"
python3 - "$OUT" <<'PY'
import json, sys, os
lines = open(os.path.join(sys.argv[1], "summary.txt")).read().splitlines()
json.dump({"phases": lines}, open(os.path.join(sys.argv[1], "summary.json"), "w"), indent=1)
PY
