// The Hopper walk's (hopper/output_walk.cuh) configuration, shared with the dispatcher (dispatch.cu), which checks
// the limits below and the device before it picks that kernel.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstddef>

namespace tfla::cuda {

constexpr int kHopperWalkThreads = 256;  // 2 warpgroups
constexpr int kHopperWalkDv = 128;       // Dv columns per block: two 64-column panels, one per warpgroup for h
constexpr int kHopperWalkMaxDk = 128;    // the state slice (Dk x 128, fp32) in the registers of 2 warpgroups
constexpr int kHopperWalkL = 64;         // chunk size it runs (a tile is a chunk: no earlier tile per query tile)
constexpr int kHopperWalkSlots = 3;      // ring: tile j (computing), j + 1 and j + 2 (in flight)
constexpr int kHopperWalkSlotFloats = 4 * 64 + 8;  // per slot: b, iota, m, w per token; the chunk's decay and m^_c

// 1024 bytes of slack to align the swizzled tiles; 3 ring slots of Q, K, V (64 x 128 T each); the state copy
// (128 x 128 T); per-slot gate values, n^ and its per-tile update in 4 partial sums (fp32 per Dk element):
// 186,464 bytes for 16-bit T.
constexpr size_t hopper_output_walk_smem_bytes(size_t elem_bytes) {
  return 1024 + (static_cast<size_t>(kHopperWalkSlots) * 3 * 64 * 128 + static_cast<size_t>(kHopperWalkMaxDk) * 128) *
                    elem_bytes +
         (kHopperWalkSlots * kHopperWalkSlotFloats + 5 * kHopperWalkMaxDk) * sizeof(float);
}

}  // namespace tfla::cuda
