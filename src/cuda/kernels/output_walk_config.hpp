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

// The two warps of a row group (Dv columns 0..63 and 64..127 of the slice) each form half of a partner tile's 64
// score columns and share P through shared memory (v3 formed all 64 in both warps: the scores' mma, weights and
// exponentials twice; bench/NOTES.md v5).
constexpr int kWalkScoreCols = kWalkTile / 2;
constexpr int kWalkLdP = kWalkTile + 8;  // P's shared row length (elements)
constexpr int kWalkPBufs = 2;            // P of the (at most two, L <= 128) partner tiles of one query tile
// n^_c rides in the state copy's row pad (columns kWalkNCol.. of sC): its two partial sums as (hi, lo) parts of T,
// so h's Q C^ product yields q . n^ as one more n-tile (v3: a scalar loop per row in both warps of a row group).
constexpr int kWalkNCol = 128;
static_assert(kWalkNCol + 8 <= kWalkLd, "the n^ parts fit the row pad");

// 3 ring slots of (Q, K, V) 64 x kWalkLd tiles, the state copy kWalkMaxDk x kWalkLd, P (kWalkPBufs x 64 x kWalkLdP),
// per-slot gate values, n^ (two fp32 partial sums) and P's row sums (per buffer and column half): 215,136 bytes for
// 16-bit inputs.
constexpr size_t output_walk_smem_bytes(size_t elem_bytes) {
  return (static_cast<size_t>(kWalkSlots) * 3 * kWalkTile * kWalkLd + static_cast<size_t>(kWalkMaxDk) * kWalkLd +
          static_cast<size_t>(kWalkPBufs) * kWalkTile * kWalkLdP) *
             elem_bytes +
         (kWalkSlots * kWalkSlotFloats + 2 * kWalkMaxDk + kWalkPBufs * 2 * kWalkTile) * sizeof(float);
}

}  // namespace tfla::cuda
