#!/usr/bin/env bash
# Quickstart, the main job: set up a fresh machine, build tfla, and run tfla-bench on its default shape.
# On a machine with nvcc and an NVIDIA GPU it builds the CUDA backend and benchmarks the GPU; otherwise it
# builds the CPU backend and runs the small CPU shape. Extra arguments go to tfla-bench (try --help).
#   TFLA_PRESET=cpu|cuda|cuda-h100  overrides the preset choice.
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$TFLA_ROOT"

ensure_build_tools 0
export_cuda_compiler

preset="${TFLA_PRESET:-}"
if [ -z "$preset" ]; then
  if [ -n "$(find_nvcc)" ] && have_gpu; then
    # Hopper (compute capability 9.x): build only sm_90a, the fastest build.
    cc="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 || true)"
    case "$cc" in
      9.*) preset=cuda-h100 ;;
      *) preset=cuda ;;
    esac
    say "found nvcc and a GPU ($(nvidia-smi -L | head -n1)): using preset '$preset'"
  else
    preset=cpu
    if [ -z "$(find_nvcc)" ]; then
      say "no CUDA compiler (nvcc) found: using preset 'cpu' (CPU backend only)"
    else
      say "no GPU found (nvidia-smi -L lists none): using preset 'cpu' (CPU backend only)"
    fi
  fi
fi

cfg=()
[ "$HAVE_GTEST" = 1 ] || cfg=(-DTFLA_BUILD_TESTS=OFF)
build_preset "$preset" "${cfg[@]}" -- tfla-bench

say "running tfla-bench (default shape; pass options to this script to change it, e.g. --help)"
run "build/$preset/tools/tfla-bench" "$@"
