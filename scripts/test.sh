#!/usr/bin/env bash
# Quickstart, the tests: set up a fresh machine, build the cpu preset and run its test suite, then the Python
# package's CPU tests.
# When nvcc is present it also compiles the cuda preset (every kernel, no GPU needed), and when a GPU is
# present it runs the CUDA tests too. Exits non-zero on any build or test failure.
#   TFLA_TEST_CUDA_BUILD=0|1  compile the cuda preset (default: 1 when nvcc is found)
#   TFLA_TEST_CUDA_RUN=0|1    run `ctest --preset cuda` (default: 1 when the cuda preset was built and
#                             nvidia-smi lists a GPU)
#   TFLA_TEST_PYTHON=0|1      build the Python package (pip install ., CPU only) in build/python-venv and run
#                             its tests with pytest (default 1; GPU tests skip without a GPU: on a GPU machine
#                             use scripts/gpu_python_tests.sh), then `bench/suite.py --dry-run` with that
#                             environment (the benchmark driver, report and plots on made-up numbers)
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$TFLA_ROOT"

ensure_build_tools 1
export_cuda_compiler

build_preset cpu -DTFLA_BUILD_TESTS=ON

cuda_build="${TFLA_TEST_CUDA_BUILD:-}"
if [ -z "$cuda_build" ]; then
  if [ -n "$(find_nvcc)" ]; then cuda_build=1; else cuda_build=0; fi
fi
if [ "$cuda_build" = 1 ]; then
  [ -n "$(find_nvcc)" ] || die "TFLA_TEST_CUDA_BUILD=1 but no nvcc found (install the CUDA toolkit or set CUDACXX)"
  say "nvcc found: compiling the cuda preset too, so that every kernel builds (TFLA_TEST_CUDA_BUILD=0 skips this)"
  build_preset cuda -DTFLA_BUILD_TESTS=ON
else
  say "skipping the cuda preset build (no nvcc, or TFLA_TEST_CUDA_BUILD=0)"
fi

say "running the tests: ctest --preset cpu"
run ctest --preset cpu

cuda_run="${TFLA_TEST_CUDA_RUN:-}"
if [ -z "$cuda_run" ]; then
  if [ "$cuda_build" = 1 ] && have_gpu; then cuda_run=1; else cuda_run=0; fi
fi
if [ "$cuda_run" = 1 ]; then
  say "GPU found: running the tests of the cuda build: ctest --preset cuda"
  run ctest --preset cuda
fi

if [ "${TFLA_TEST_PYTHON:-1}" = 1 ]; then
  python_tests
  bench_suite_dry_run
else
  say "skipping the Python package tests (TFLA_TEST_PYTHON=0)"
fi

say "all tests passed"
