// The fused chunk backward's (chunk_gradients.cuh) configuration, shared with the dispatcher (dispatch.cu),
// which checks the limits below and the device's shared memory before it picks that kernel.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstddef>

namespace tfla::cuda {

// 16 warps: 4 row groups of 16 tokens x 4 column groups. With 8 warps (2 column groups) the kernel ran at
// 2 warps per scheduler with 0.38 eligible, stalled on fixed-latency dependencies (ncu, bench/NOTES.md v4).
constexpr int kGradThreads = 512;
constexpr int kGradColGroups = kGradThreads / 128;
constexpr int kGradTile = 64;      // the chunk: L = 64 tokens, one tile (larger L runs the per-role kernels)
constexpr int kGradMaxDk = 128;    // q, k and the state slices are held over the whole Dk
constexpr int kGradMaxDv = 256;    // v and dh are held over the whole Dv
constexpr int kGradLdS = kGradTile + 8;   // 64-wide tiles: P, dS, state slice parts
constexpr int kGradSlice = 64;     // Dv columns of the fp32 state per pipeline step
// The states arrive split into 2 parts of T (hi, lo: ~2^-17 relative for bf16; Args::split_states, stored so by the
// recurrences), copied straight into the swizzled operand tiles; two stages, so slice j + 1 loads under slice j's
// products. v6 read fp32 states and split each 64-column slice into 3 parts in shared memory (~fp32), between two
// barriers and without a second buffer (bench/NOTES.md v4, v6, v7).
constexpr int kGradStateParts = 2;
constexpr int kGradSliceStages = 2;
// per token: b, iota, m, 1 / (den + eps), two row scales; per column group and token: row / column sums of A and
// the two inter-chunk dots; dn^ over Dk
constexpr int kGradTokFloats = 6 * kGradTile + 4 * kGradColGroups * kGradTile + kGradMaxDk;

// The state slices' parts in two stages (kGradMaxDk x 64 each), dH, V (64 x kGradMaxDv), Q, K (64 x kGradMaxDk), all
// swizzled (1024-byte aligned panels), P and dS's two parts (64 x kGradLdS) as T, and the per-token values: 198,656
// bytes for 16-bit inputs (an H100 / H200 block may have 232,448).
constexpr size_t chunk_gradients_smem_bytes(size_t elem_bytes) {
  return 1024 +  // slack to align the parts (swizzled, hopper/sw128.cuh)
         (2 * static_cast<size_t>(kGradTile) * kGradMaxDk + 2 * static_cast<size_t>(kGradTile) * kGradMaxDv +
          3 * static_cast<size_t>(kGradTile) * kGradLdS +
          kGradSliceStages * kGradStateParts * static_cast<size_t>(kGradMaxDk) * kGradSlice) *
             elem_bytes +
         kGradTokFloats * sizeof(float);
}

}  // namespace tfla::cuda
