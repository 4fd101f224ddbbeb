// The forward walk's (output_walk.cuh) tile configuration, shared with the dispatcher (dispatch.cu), which
// checks the limits below and the device's shared memory before it picks the walk.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstddef>

namespace tfla::cuda {

constexpr int kWalkThreads = 256;  // 8 warps
constexpr int kWalkTile = 64;      // tokens per step
constexpr int kWalkDv = 128;       // Dv columns per block
constexpr int kWalkMaxDk = 128;    // the fp32 state slice (Dk x 128) is <= 2 register units of 16 x 64 per warp
constexpr int kWalkMaxL = 128;     // a chunk's earlier tile is still in the ring
constexpr int kWalkLd = 128 + 8;   // shared row length (elements): the 16-byte pad spreads ldmatrix rows over banks
constexpr int kWalkSlots = 3;      // ring: tile j - 1 (partner in the same chunk), j (current), j + 1 (in flight)
constexpr int kWalkMaxSegments = 256;

constexpr int kWalkSlotFloats = 4 * kWalkTile + 8;  // per slot: b, iota, m, w per token; the chunk's decay and m^_c

// 3 ring slots of (Q, K, V) 64 x kWalkLd tiles, the state copy kWalkMaxDk x kWalkLd, per-slot gate values
// and n^ (two fp32 partial sums): 195,680 bytes for 16-bit inputs.
constexpr size_t output_walk_smem_bytes(size_t elem_bytes) {
  return (static_cast<size_t>(kWalkSlots) * 3 * kWalkTile * kWalkLd + static_cast<size_t>(kWalkMaxDk) * kWalkLd) *
             elem_bytes +
         (kWalkSlots * kWalkSlotFloats + 2 * kWalkMaxDk) * sizeof(float);
}

}  // namespace tfla::cuda
