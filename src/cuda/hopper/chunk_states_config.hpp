// The Hopper chunk_states' (hopper/chunk_states.cuh) configuration, shared with the dispatcher (dispatch.cu), which
// checks the device's shared memory before it picks that kernel.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstddef>

namespace tfla::cuda {

constexpr int kHopperStatesThreads = 128;   // one warpgroup per block
constexpr int kHopperStatesRows = 64;       // Dk rows of the state tile (one wgmma M)
constexpr int kHopperStatesCols = 128;      // Dv columns of the state tile: two 64-column panels
constexpr int kHopperStatesSlots = 3;       // ring: tile j (computing), j + 1 and j + 2 (in flight)
constexpr int kHopperStatesBlocksPerSm = 3; // 3 x 75 KB of shared memory; <= 168 registers per thread
constexpr int kHopperStatesSlotFloats = 64 + 4;  // per slot: the tokens' weights, the chunk's decay (padded)

// 1024 bytes of slack to align the swizzled tiles; per ring slot the A tile (64 tokens x 64 Dk of K or Q) and the
// B tile (64 tokens x 128 Dv of V or dH) as 16-bit T, and the slot's weights: 75,568 bytes.
constexpr size_t hopper_chunk_states_smem_bytes(size_t elem_bytes) {
  return 1024 + static_cast<size_t>(kHopperStatesSlots) * 64 * (kHopperStatesRows + kHopperStatesCols) * elem_bytes +
         static_cast<size_t>(kHopperStatesSlots) * kHopperStatesSlotFloats * sizeof(float);
}

}  // namespace tfla::cuda
