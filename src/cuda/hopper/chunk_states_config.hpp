// The Hopper chunk_states' (hopper/chunk_states.cuh) configuration, shared with the dispatcher (dispatch.cu), which
// checks the device's shared memory before it picks that kernel.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstddef>

namespace tfla::cuda {

constexpr int kHopperStatesThreads = 128;   // one warpgroup per block
constexpr int kHopperStatesRows = 64;       // Dk rows of the state tile (one wgmma M)
constexpr int kHopperStatesSlots = 3;       // ring: tile j (computing), j + 1 and j + 2 (in flight)
constexpr int kHopperStatesSlotFloats = 64 + 4;  // per slot: the tokens' weights, the chunk's decay (padded)

// COLS: Dv columns of the state tile, 64 or 128 (one or two 64-column panels). 128 reads each V / dH tile half as
// often; 64 gives twice the blocks, which fills the GPU in fewer partial waves where B*H is small (dispatch.cu).
// Blocks per SM: 3 (<= 168 registers per thread; 75 KB of shared memory each at 128, 49 KB at 64). At 64, 4 blocks
// (<= 128 registers) spilled 132 bytes: the 48 registers of the 4 k-steps' weighted 3-part A fragments stay live until
// the group's wait.
constexpr int kHopperStatesBlocksPerSm = 3;

// 1024 bytes of slack to align the swizzled tiles; per ring slot the A tile (64 tokens x 64 Dk of K or Q) and the
// B tile (64 tokens x COLS Dv of V or dH) as 16-bit T, and the slot's weights: 75,568 bytes at COLS = 128.
constexpr size_t hopper_chunk_states_smem_bytes(int cols, size_t elem_bytes) {
  return 1024 + static_cast<size_t>(kHopperStatesSlots) * 64 * (kHopperStatesRows + cols) * elem_bytes +
         static_cast<size_t>(kHopperStatesSlots) * kHopperStatesSlotFloats * sizeof(float);
}

}  // namespace tfla::cuda
