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

// Dv columns of the state tile: one 64-column panel (the code takes 128, two panels, too). Measured side by side at
// the main shape (H100, bench/results/2026-11-26-h100-v7/v7.1): backward 6.045 ms (64) / 6.067 (128) at S = 1,024,
// equal at 16,384, 6.117 / 6.426 at 65,536 (B*H = 16: 256 blocks of width 64, 128 of width 128). 128 reads each V / dH
// tile half as often, but twice the blocks keep more loads in flight.
constexpr int kHopperStatesCols = 64;
// Blocks per SM: 3 (<= 168 registers per thread; 49 KB of shared memory each). 4 blocks (<= 128 registers) spilled
// 132 bytes: the 48 registers of the 4 k-steps' weighted 3-part A fragments stay live until the group's wait.
constexpr int kHopperStatesBlocksPerSm = 3;

// 1024 bytes of slack to align the swizzled tiles; per ring slot the A tile (64 tokens x 64 Dk of K or Q) and the
// B tile (64 tokens x kHopperStatesCols Dv of V or dH) as 16-bit T, and the slot's weights; the staging tile of a
// split state (2 parts of T, per warp its 16 rows): 67,376 bytes.
constexpr size_t hopper_chunk_states_smem_bytes(size_t elem_bytes) {
  return 1024 + static_cast<size_t>(kHopperStatesSlots) * 64 * (kHopperStatesRows + kHopperStatesCols) * elem_bytes +
         static_cast<size_t>(kHopperStatesSlots) * kHopperStatesSlotFloats * sizeof(float) +
         2 * static_cast<size_t>(kHopperStatesRows) * kHopperStatesCols * elem_bytes;
}

}  // namespace tfla::cuda
