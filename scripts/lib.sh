# Shared setup of scripts/bench.sh and scripts/test.sh (sourced, not run).
# SPDX-License-Identifier: Apache-2.0

TFLA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command and print it first.
run() {
  printf '+ %s\n' "$*"
  "$@"
}

# The CUDA toolkit is often installed without being on PATH.
find_nvcc() {
  if command -v nvcc >/dev/null 2>&1; then
    command -v nvcc
  elif [ -x /usr/local/cuda/bin/nvcc ]; then
    echo /usr/local/cuda/bin/nvcc
  fi
}

# 0 when nvidia-smi lists at least one GPU.
have_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '
}

# 0 when GoogleTest (libgtest-dev) is installed.
have_gtest() {
  dpkg -s libgtest-dev >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/*/cmake/GTest' >/dev/null || compgen -G '/usr/lib/cmake/GTest' >/dev/null ||
    compgen -G '/usr/local/lib*/cmake/GTest' >/dev/null
}

# Install what a fresh Debian/Ubuntu machine lacks (cmake, g++, make, libgtest-dev) with apt-get, only when
# something is missing. $1 = 1: GoogleTest is required (test.sh); 0: it is optional (bench.sh), and
# HAVE_GTEST tells whether it is there.
ensure_build_tools() {
  local gtest_required="${1:-1}"
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  command -v make >/dev/null 2>&1 || missing+=(make)
  have_gtest || missing+=(libgtest-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing missing build tools: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); fi
    if ! command -v apt-get >/dev/null 2>&1; then
      say "apt-get not found: install ${missing[*]} with your package manager"
    elif ! { run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
             run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
               "${missing[@]}"; }; then
      say "apt-get could not install ${missing[*]} (no root, or no network)"
    fi
  else
    say "build tools present: cmake, g++, make, libgtest-dev"
  fi
  local tool
  for tool in cmake g++ make; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: install it (Debian/Ubuntu: apt-get install cmake g++ make)"
  done
  HAVE_GTEST=1
  if ! have_gtest; then
    HAVE_GTEST=0
    [ "$gtest_required" = 1 ] && die "GoogleTest is missing: install it (Debian/Ubuntu: apt-get install libgtest-dev)"
    say "GoogleTest is missing: building without the tests (only scripts/test.sh needs them)"
  fi
  # CMakePresets.json (version 6) needs CMake >= 3.25.
  local v
  v="$(cmake --version | head -n1 | sed 's/[^0-9.]*//g')"
  if ! printf '3.25.0\n%s\n' "$v" | sort -V -C; then
    die "CMake $v is too old: tfla needs CMake >= 3.25 (Debian 12 / Ubuntu 24.04 have it; or 'pip install cmake')"
  fi
}

# Parallel build jobs: all cores.
build_jobs() { nproc 2>/dev/null || echo 2; }

# Configure and build one preset: build_preset PRESET [CMAKE_CONFIGURE_ARGS...] [-- TARGETS...]
# (all targets when none are given). A configured build directory is reused (incremental).
build_preset() {
  local preset="$1"
  shift
  local cfg=() targets=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do cfg+=("$1"); shift; done
  if [ $# -gt 0 ]; then shift; fi
  if [ $# -gt 0 ]; then targets=(--target "$@"); fi
  say "configuring and building preset '$preset' (build/$preset)"
  run cmake --preset "$preset" -Wno-dev "${cfg[@]}"
  run cmake --build --preset "$preset" -j "$(build_jobs)" "${targets[@]}"
}

# Make nvcc visible to CMake when it is installed but not on PATH.
export_cuda_compiler() {
  local nvcc
  nvcc="$(find_nvcc)"
  if [ -n "$nvcc" ] && [ -z "${CUDACXX:-}" ]; then
    export CUDACXX="$nvcc"
  fi
}

# The Python package's CPU tests (scripts/test.sh): a virtual environment in build/python-venv with torch (PyPI's
# Linux wheel, ~2 minutes to install the first time) and the test-only peers (mlstm_kernels, xlstm, transformers:
# called by the tests, never shipped), then `pip install .` with the CUDA backend off (TFLA_CUDA=OFF: CI has no
# GPU, and the cuda preset already compiles every kernel), then pytest on python/tests (GPU tests skip).
# Versions: TFLA_PY_TORCH (default torch==2.15.0), TFLA_PY_TRANSFORMERS (default transformers==5.24.0).
python_tests() {
  local venv="$TFLA_ROOT/build/python-venv"
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    say "installing python3 and python3-venv"
    local sudo=()
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); fi
    run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        python3 python3-venv python3-pip || die "python3 with venv is needed for the Python tests (TFLA_TEST_PYTHON=0 skips them)"
  fi
  if [ ! -x "$venv/bin/python" ]; then
    run python3 -m venv "$venv" || die "could not create $venv"
  fi
  local py="$venv/bin/python"
  # PyPI's Linux torch brings its CUDA libraries: ~6 GB installed. Say so up front instead of failing halfway with
  # pip's "No space left on device" (CI saw that once on a nearly full disk); --no-cache-dir keeps pip from holding a
  # second copy of the wheels.
  local free_kb
  free_kb="$(df -Pk "$TFLA_ROOT/build" 2>/dev/null | awk 'NR == 2 {print $4}')"
  if [ -n "$free_kb" ] && [ "$free_kb" -lt $((8 * 1024 * 1024)) ]; then
    say "warning: $((free_kb / 1024)) MB free under $TFLA_ROOT/build; the Python test environment needs ~6 GB (torch with its CUDA libraries)"
  fi
  say "installing the Python test environment into build/python-venv (torch from PyPI)"
  run "$py" -m pip install -q --disable-pip-version-check --no-cache-dir "${TFLA_PY_TORCH:-torch==2.15.0}" numpy pytest einops \
    matplotlib "${TFLA_PY_TRANSFORMERS:-transformers==5.24.0}"
  run "$py" -m pip install -q --disable-pip-version-check --no-cache-dir --no-deps mlstm_kernels==2.0.6 xlstm==2.0.6
  say "building and installing the tfla Python package (CPU only): pip install ."
  run env TFLA_CUDA=OFF "$py" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$TFLA_ROOT"
  say "running the Python tests: pytest python/tests"
  (cd "$TFLA_ROOT" && run "$py" -m pytest python/tests -q -rs -p no:cacheprovider)
}

# The benchmark suite without a GPU (scripts/test.sh, after python_tests: uses build/python-venv, which has
# matplotlib): bench/suite.py --dry-run runs the whole driver, the worker protocol, the report and the plots with
# made-up times (bench/peers/fake.py), so a change that breaks the suite fails here, not on the GPU machine.
bench_suite_dry_run() {
  local py="$TFLA_ROOT/build/python-venv/bin/python"
  [ -x "$py" ] || py=python3
  local out="$TFLA_ROOT/build/suite-dry-run"
  rm -rf "$out"
  say "checking the benchmark suite without a GPU: bench/suite.py --dry-run (made-up numbers, not data)"
  run "$py" "$TFLA_ROOT/bench/suite.py" --dry-run --out "$out" >"$TFLA_ROOT/build/suite-dry-run.log" 2>&1 ||
    { tail -30 "$TFLA_ROOT/build/suite-dry-run.log"; die "bench/suite.py --dry-run failed (log: build/suite-dry-run.log)"; }
  local f
  for f in summary.md results.csv headline.png runtime_vs_seqlen.png chunk_size.png roofline.png head_dim.png; do
    [ -s "$out/$f" ] || die "bench/suite.py --dry-run did not write $f"
  done
}
