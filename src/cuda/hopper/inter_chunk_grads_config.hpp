// The inter-chunk gradient kernels' (hopper/inter_chunk_grads.cuh) configuration, shared with the dispatcher (dispatch.cu),
// which checks the limits below, the device and the number of blocks before it picks that kernel.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstddef>

namespace tfla::cuda {

constexpr int kInterDqThreads = 256;  // 2 warpgroups: warpgroup w holds Dv columns 128 w .. 128 w + 127 of the state
constexpr int kInterDqRows = 64;      // Dk rows of the state per block (one wgmma M)
constexpr int kInterDqMaxDv = 256;    // the whole Dv per block, so that the block's dq term is complete
constexpr int kInterDqSlots = 2;      // ring: chunk c (computing), c + 1 (in flight): 3 slots do not fit
constexpr int kInterDqSlotFloats = 64 + 4;  // per slot: the tokens' state weights, the chunk's decay (padded)
constexpr int kInterDqLdRed = 64 + 8;       // row length (floats) of the cross-warpgroup sum of dq^T

// 1024 bytes of slack to align the swizzled tiles; per slot K (64 tokens x 64 Dk), V and dH (64 tokens x 256 Dv) as
// 16-bit T and the slot's weights; the second warpgroup's partial (64 x 64 fp32, padded rows); the dk walk's staging
// of dC^'s hi part (per warp 16 rows x 128 columns of T): 200,224 bytes.
constexpr size_t hopper_inter_chunk_grads_smem_bytes(size_t elem_bytes) {
  return 1024 +
         static_cast<size_t>(kInterDqSlots) * 64 * (kInterDqRows + 2 * kInterDqMaxDv) * elem_bytes +
         static_cast<size_t>(kInterDqSlots) * kInterDqSlotFloats * sizeof(float) +
         static_cast<size_t>(kInterDqRows) * kInterDqLdRed * sizeof(float) +
         static_cast<size_t>(kInterDqThreads / 32) * 16 * 128 * elem_bytes;
}

}  // namespace tfla::cuda
