// The backward's two state recurrences (kernels/chunk_states.cuh, docs/algorithm.md) on Hopper's warpgroup tensor-core
// instructions (wgmma, sm_90a):
//
//   blockIdx.z = 0, the recompute: C^_{c+1} = e^{g_c + m^_c - m^_{c+1}} C^_c + K_c^T diag(wstate) V_c  -> cstates slot c
//   blockIdx.z = 1, the adjoints : dC^_c = e^{g_c + m^_c - m^_{c+1}} dC^_{c+1} + Q^_c^T diag(wrev) dH_c -> dcstates slot c + 1
//
// both with ~fp32 products (the weighted A operand in kStateParts 16-bit parts), for chunk_gradients' dq / dk and the
// gate gradients: stored as 2 parts of T (hi, lo) for the fused chunk backward (Args::split_states), else in fp32
// (the per-role kernels). Slots nothing reads are skipped (state_slot_read).
//
// Why: the portable kernel (64 x 64 state tiles, 4 warps, mma.sync, 2 blocks per SM) took 2.69 ms of the backward's
// 6.2 at S = 1,024 on an H100 and 2.86 at S = 65,536 (ncu, v6.2, bench/NOTES.md): its 3-part products are 412 GFLOP
// at S = 1,024. Here the products run asynchronously on wgmma with A = K^T diag(w) from registers (ldmatrix.trans of
// the swizzled token tile, weighted and split there), 3 blocks per SM, and the stores of each chunk's state are the
// only other work that scales with Dk x Dv. What is left is their DRAM traffic (4.2 GB at S = 1,024): 2.23 ms at
// S = 1,024, 2.43 at 65,536 (v7.5).
//
// Grid: (Dk / 64 x Dv / kHopperStatesCols state tiles, B*H, 2); 128 threads (one warpgroup), 3 blocks per SM. Warp w
// owns state rows 16 w .. 16 w + 15 of the tile (the wgmma accumulator layout). Per 64-token tile j (in
// processing order: forward for z = 0, reverse for z = 1), all operands in shared memory, 128-byte swizzle:
//   weights of tile j + 1 -> shared, of j + 2 -> a register | chunk boundary: the state entering it -> global
//     (split: each warp's 16 rows through its own piece of shared memory, then whole 128-byte lines)
//   wait for tile j | barrier (tile j visible; tile j - 1's slot free) | queue tile j + 2 (3-slot ring, cp.async)
//   chunk boundary: state *= decay | state += A^T diag(w) B: 4 k-steps x kStateParts x panels of m64n64k16   [async]
//   wait
// Limits (dispatch.cu runs the portable kernel otherwise): 16-bit inputs, sm_90a. Any L (a multiple of 64), Dk, Dv.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include "cuda/args.cuh"
#include "cuda/hopper/chunk_states_config.hpp"
#include "cuda/hopper/sw128.cuh"
#include "cuda/kernels/chunk_states.cuh"  // TileWeightsAhead
#include "cuda/tiles.cuh"

namespace tfla::cuda {

// n^'s per-tile update: sum over the tile's 64 tokens of w[token] x tile[token][d] (zero weight past S), for the
// recurrences here and hopper/inter_chunk_grads.cuh.
template <class T>
__device__ __forceinline__ float tile_weighted_column_sum(const unsigned char* tile, const float* w, int d) {
  float x = 0.f;
#pragma unroll 8
  for (int r = 0; r < kTile; ++r) x += w[r] * to_float<T>(*reinterpret_cast<const T*>(tile + sw128_offset(kTile, r, d)));
  return x;
}

// The chunk's decay of a state tile held in registers (PANELS x 32 wgmma accumulators per thread) and of its n^ part:
// d_c = e^{g_c + m^_c - m^_{c+1}} <= 1 (prepare_gates), for the recurrences here and hopper/inter_chunk_grads.cuh.
template <int PANELS>
__device__ __forceinline__ void decay_state(float (&st)[PANELS][32], float& n, float decay) {
#pragma unroll
  for (int q = 0; q < PANELS; ++q)
#pragma unroll
    for (int i = 0; i < 32; ++i) st[q][i] *= decay;
  n *= decay;
}

// The state update's A operand X^T diag(w) (X = K or Q, the swizzled token tile [token][dk]) for this warp's 16 rows
// m0.. and the tile's 4 k-steps, in PARTS parts (ldmatrix.trans, weighted and split in registers).
template <class T, int PARTS>
__device__ __forceinline__ void weighted_a_trans(FragA<T> (&fk)[kTile / 16][PARTS], const unsigned char* tile,
                                                 const float* w, int m0) {
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    FragA<T> raw;
    load_a_trans_sw128(raw.r, tile, kTile, m0, 16 * kk);
    scale_a_cols<T, PARTS>(fk[kk], raw, w, 16 * kk);
  }
}

// The state update state += (X^T diag(w)) B of one 64-token tile, on wgmma: A = X^T weighted in registers in PARTS
// parts (weighted_a_trans, this warp's 16 rows m0..), B = panels panel0.. of the swizzled tile at b_addr (MN-major),
// all 4 k-steps in one group; returns with the products done. For the recurrences here and
// hopper/inter_chunk_grads.cuh.
template <class T, int PARTS, int PANELS>
__device__ __forceinline__ void weighted_state_update(float (&st)[PANELS][32], const unsigned char* x_tile,
                                                      const float* w, int m0, uint32_t b_addr, int panel0) {
  FragA<T> fk[kTile / 16][PARTS];
  weighted_a_trans<T, PARTS>(fk, x_tile, w, m0);
#pragma unroll
  for (int q = 0; q < PANELS; ++q) hw::wgmma_fence_operands(st[q]);
  hw::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk)
#pragma unroll
    for (int p = 0; p < PARTS; ++p)
#pragma unroll
      for (int q = 0; q < PANELS; ++q)
        hw::Wgmma<T, 64>::template rs<1>(st[q], fk[kk][p].r, desc_mn_major(b_addr, kTile, panel0 + q, 16 * kk), 1);
  hw::wgmma_commit();
  hw::wgmma_wait<0>();
#pragma unroll
  for (int q = 0; q < PANELS; ++q) hw::wgmma_fence_operands(st[q]);
}

template <class T, bool REVERSE>
__device__ __forceinline__ void hopper_chunk_states_body(const Args& a) {
  // ---- configuration -------------------------------------------------------------------------------
  constexpr int kParts = kStateParts<T>;
  constexpr int kATileBytes = kTile * kHopperStatesRows * 2;  // [token][dk]: one 64-column panel
  constexpr int COLS = kHopperStatesCols, kPanels = COLS / 64;
  static_assert(COLS == 64 || COLS == 128, "one or two 64-column panels");
  constexpr int kBTileBytes = kTile * COLS * 2;  // [token][dv]: kPanels panels
  extern __shared__ unsigned char smem_raw[];
  // 1024-byte alignment for the swizzle patterns (the allocation has 1024 bytes of slack for it)
  unsigned char* const smem = smem_raw + ((1024u - (hw::smem_addr(smem_raw) & 1023u)) & 1023u);
  auto sA = [&](int s) { return smem + s * (kATileBytes + kBTileBytes); };  // K (z = 0) or Q (z = 1)
  auto sB = [&](int s) { return sA(s) + kATileBytes; };                     // V (z = 0) or dH (z = 1)
  float* const sWts = reinterpret_cast<float*>(smem + kHopperStatesSlots * (kATileBytes + kBTileBytes));
  auto sW = [&](int s) { return sWts + s * kHopperStatesSlotFloats; };  // [0, 64): token weights, [64]: chunk decay
  // a split state's two parts, per warp its 16 rows [dk][dv] of each in the 128-byte swizzle (conflict-free pair
  // stores, 16-byte reads)
  constexpr int kWarpPartBytes = 16 * COLS * 2;
  unsigned char* const sOut = reinterpret_cast<unsigned char*>(sWts + kHopperStatesSlots * kHopperStatesSlotFloats) +
                              (threadIdx.x >> 5) * 2 * kWarpPartBytes;

  const int n_dv_tiles = cdiv(a.Dv, COLS);
  const int ti = blockIdx.x / n_dv_tiles, tj = blockIdx.x % n_dv_tiles;
  const int bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
  const int tid = threadIdx.x, wi = tid >> 5, lane = tid & 31, g4 = lane >> 2, t4 = lane & 3;
  const int dk0 = ti * kHopperStatesRows, dv0 = tj * COLS;
  const int rows = min(kHopperStatesRows, a.Dk - dk0), cols = min(COLS, a.Dv - dv0);
  // as in the portable kernel: n^ rides in the blocks of Dv tile 0; the recompute accumulates it only for
  // <dn_last, n_last> (den comes from the forward's den_token); the adjoint dn^ only decays (den is held constant)
  const bool carries_n = tj == 0 && tid < rows;
  const bool tracks_n = !REVERSE && carries_n && a.dn_last.data;
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  float* states = (REVERSE ? a.dcstates : a.cstates) + static_cast<int64_t>(bh) * (a.NC + 1) * a.Dk * a.Dv;
  float* nstates = (REVERSE ? a.dnstates : a.nstates) + static_cast<int64_t>(bh) * (a.NC + 1) * a.Dk;
  const tfla_tensor& init = REVERSE ? a.dc_last : a.c0;  // state entering the recurrence
  const tfla_tensor& init_n = REVERSE ? a.dn_last : a.n0;
  const tfla_tensor& tA = REVERSE ? a.q : a.k;
  const tfla_tensor& tB = REVERSE ? a.dh : a.v;
  const T* gA = static_cast<const T*>(tA.data) + off4(tA, b, h, 0, dk0);
  const T* gB = static_cast<const T*>(tB.data) + off4(tB, b, h, 0, dv0);

  // ---- initial state: this thread's rows 16 wi + g4 (+ 8); panel q's columns 64 q + 8 (i / 4) + 2 t4 (+ 1) in
  // st[q][i] (the wgmma accumulator layout) ------------------------------------------------------------
  auto row_of = [&](int i) { return 16 * wi + g4 + 8 * ((i & 3) >> 1); };
  auto col_of = [&](int q, int i) { return 64 * q + 8 * (i >> 2) + 2 * t4 + (i & 1); };
  float st[kPanels][32];
#pragma unroll
  for (int q = 0; q < kPanels; ++q)
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int r = row_of(i), c = col_of(q, i);
      st[q][i] = (init.data && r < rows && c < cols)
                     ? static_cast<const float*>(init.data)[off4(init, b, h, dk0 + r, dv0 + c)] : 0.f;
    }
  float n = 0.f;
  if (carries_n && init_n.data) n = static_cast<const float*>(init_n.data)[off3(init_n, b, h, dk0 + tid)];

  // Slots nothing reads are not stored (args.cuh, state_slot_read).
  auto store_state = [&](int slot) {
    if (!state_slot_read(a, REVERSE, slot)) return;
    if (a.split_states) {
      // The slot's 2 parts of T at the slot's bytes (Args::split_states), each warp's 16 rows through its own piece of
      // shared memory so that every store writes whole 128-byte lines: the pairs' 4-byte stores straight from the
      // registers (half a 32-byte sector per row and instruction) made the kernel 3x slower (2.26 -> 6.92 ms at
      // S = 1,024); a block-wide staging tile and barrier 1.4x slower at S = 65,536 (2.40 -> 3.44 ms; NOTES v7.3, v7.4).
#pragma unroll
      for (int q = 0; q < kPanels; ++q)
#pragma unroll
        for (int i = 0; i < 32; i += 2) {
          uint32_t hl[2];
          pack2_split<T, 2>(hl, 1, st[q][i], st[q][i + 1]);
          const uint32_t off = sw128_offset(16, g4 + 8 * ((i & 3) >> 1), col_of(q, i));
          *reinterpret_cast<uint32_t*>(sOut + off) = hl[0];
          *reinterpret_cast<uint32_t*>(sOut + kWarpPartBytes + off) = hl[1];
        }
      __syncwarp();  // (the warp rewrites its piece only in a later chunk, after the tile's barrier)
      T* const dt = reinterpret_cast<T*>(states + static_cast<int64_t>(slot) * a.Dk * a.Dv) +
                    static_cast<int64_t>(dk0 + 16 * wi) * a.Dv + dv0;
      const int64_t part_elems = static_cast<int64_t>(a.Dk) * a.Dv;
      // lane: the 16-byte chunk c / 8 of rows r0, r0 + kRowsPerStep, ... (a warp store: kRowsPerStep whole rows)
      constexpr int kChunksPerRow = COLS / 8, kRowsPerStep = 32 / kChunksPerRow;
      const int c = 8 * (lane % kChunksPerRow), r0 = lane / kChunksPerRow;
      if (c < cols) {
#pragma unroll
        for (int p = 0; p < 2; ++p)
#pragma unroll
          for (int r = r0; r < 16; r += kRowsPerStep)
            if (16 * wi + r < rows)
              *reinterpret_cast<uint4*>(dt + p * part_elems + r * a.Dv + c) =
                  *reinterpret_cast<const uint4*>(sOut + p * kWarpPartBytes + sw128_offset(16, r, c));
      }
    } else {
      float* dst = states + static_cast<int64_t>(slot) * a.Dk * a.Dv + static_cast<int64_t>(dk0) * a.Dv + dv0;
#pragma unroll
      for (int q = 0; q < kPanels; ++q)
#pragma unroll
        for (int i = 0; i < 32; i += 2) {
          const int r = row_of(i), c = col_of(q, i);
          if (r < rows && c < cols) *reinterpret_cast<float2*>(dst + r * a.Dv + c) = make_float2(st[q][i], st[q][i + 1]);
        }
    }
    if (carries_n) nstates[static_cast<int64_t>(slot) * a.Dk + dk0 + tid] = n;
  };

  // ---- the token tiles, in processing order (as the portable kernel: L is a multiple of 64, so no tile straddles
  // a chunk boundary) ---------------------------------------------------------------------------------------------
  const int n_tiles = cdiv(a.S, kTile);
  const int tiles_per_chunk = a.L / kTile;
  auto seq_tile = [&](int j) { return REVERSE ? n_tiles - 1 - j : j; };
  auto issue = [&](int j) {
    const int s = j % kHopperStatesSlots, t0 = seq_tile(j) * kTile, ntok = min(kTile, a.S - t0);
    load_tile_sw128_low_regs<T, kTile, kHopperStatesRows, kHopperStatesThreads>(sA(s), gA + t0 * tA.stride[2], tA.stride[2],
                                                                        ntok, rows, tid);
    load_tile_sw128_low_regs<T, kTile, COLS, kHopperStatesThreads>(sB(s), gB + t0 * tB.stride[2], tB.stride[2],
                                                                        ntok, cols, tid);
  };
  // Tile j's weights and its chunk's decay (kernels/chunk_states.cuh, TileWeightsAhead): into a register two tiles
  // ahead, to the tile's slot one tile ahead.
  TileWeightsAhead wts{(REVERSE ? a.wrev : a.wstate) + tok0, a.chunk_decay + static_cast<int64_t>(bh) * a.NC, a.S, a.L};
  auto load_weight = [&](int j) { wts.load(seq_tile(j) * kTile, tid); };
  auto store_weight = [&](int j) { wts.store(sW(j % kHopperStatesSlots), tid); };

  // ---- the recurrence --------------------------------------------------------------------------------
  issue(0);
  hw::cp_async_commit();
  if (n_tiles > 1) issue(1);
  hw::cp_async_commit();
  load_weight(0);
  store_weight(0);
  if (n_tiles > 1) load_weight(1);
  for (int j = 0; j < n_tiles; ++j) {
    const int s = j % kHopperStatesSlots, tile = seq_tile(j), c = tile / tiles_per_chunk;
    // tile j + 1's weight slot was last read in tile j - 2, before the previous iteration's barrier
    if (j + 1 < n_tiles) store_weight(j + 1);
    if (j + 2 < n_tiles) load_weight(j + 2);
    // First tile of chunk c in processing order: the state entering it is complete (stored from the registers
    // before the wait, so the stores drain under it)
    const bool chunk_start = REVERSE ? (tile == n_tiles - 1 || (tile + 1) % tiles_per_chunk == 0)
                                     : tile % tiles_per_chunk == 0;
    if (chunk_start) store_state(REVERSE ? c + 1 : c);
    hw::cp_async_wait<1>();
    hw::fence_proxy_async_smem();  // tile j's cp.async writes, for wgmma's reads
    __syncthreads();                // tile j and its weights visible; every warp is done with tile j - 1
    if (j + 2 < n_tiles) issue(j + 2);
    hw::cp_async_commit();  // possibly empty: one group per tile

    const float* w = sW(s);
    if (chunk_start) decay_state(st, n, w[kTile]);
    if (tracks_n) n += tile_weighted_column_sum<T>(sA(s), w, tid);
    // state (dk x dv) += (A^T diag(w)) (dk x tok) * B (tok x dv): A from registers, in kParts parts; B MN-major.
    // All 4 k-steps in one group: the 3 x 4 x 4 fragment registers fit beside the 64 of the state (no spill).
    weighted_state_update<T, kParts>(st, sA(s), w, 16 * wi, hw::smem_addr(sB(s)), 0);
  }
  store_state(REVERSE ? 0 : a.NC);

  // ---- outputs (as the portable kernel) ---------------------------------------------------------------
  const tfla_tensor& out = REVERSE ? a.dc0 : a.c_last;
  const tfla_tensor& out_n = REVERSE ? a.dn0 : a.n_last;
  if (out.data) {
#pragma unroll
    for (int q = 0; q < kPanels; ++q)
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const int r = row_of(i), c = col_of(q, i);
        if (r < rows && c < cols) static_cast<float*>(out.data)[off4(out, b, h, dk0 + r, dv0 + c)] = st[q][i];
      }
  }
  if (carries_n && out_n.data) static_cast<float*>(out_n.data)[off3(out_n, b, h, dk0 + tid)] = n;

  // The recompute: partial <dc_last, C_last> (+ <dn_last, n_last>) for d phi, one per 64 x 64 panel in the portable
  // kernel's layout (statedot[bh][dk tile x n_dv64 + dv tile], gates.cuh sums them), n's term in Dv tile 0's.
  if (!REVERSE && a.statedot) {
    const int n_dv64 = cdiv(a.Dv, kTile);
    __shared__ float red[kPanels][kHopperStatesThreads / 32];
#pragma unroll
    for (int q = 0; q < kPanels; ++q) {
      float x = 0.f;
      if (a.dc_last.data) {
#pragma unroll
        for (int i = 0; i < 32; ++i) {
          const int r = row_of(i), c = col_of(q, i);
          if (r < rows && c < cols)
            x += st[q][i] * static_cast<const float*>(a.dc_last.data)[off4(a.dc_last, b, h, dk0 + r, dv0 + c)];
        }
      }
      if (q == 0 && carries_n && a.dn_last.data)
        x += n * static_cast<const float*>(a.dn_last.data)[off3(a.dn_last, b, h, dk0 + tid)];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
      if (lane == 0) red[q][wi] = x;
    }
    __syncthreads();
    if (tid < kPanels) {
      const int panel = kPanels * tj + tid;
      if (panel < n_dv64)
        a.statedot[static_cast<int64_t>(bh) * cdiv(a.Dk, kTile) * n_dv64 + ti * n_dv64 + panel] =
            (red[tid][0] + red[tid][1]) + (red[tid][2] + red[tid][3]);
    }
  }
}

// Both recurrences in one launch, as the portable chunk_states_backward_kernel (they are independent; with few heads
// each alone fills half the GPU).
template <class T>
__global__ void __launch_bounds__(kHopperStatesThreads, kHopperStatesBlocksPerSm)
    hopper_chunk_states_backward_kernel(Args a) {
#if !TFLA_HAS_WGMMA
  __trap();  // built for sm_90a only; dispatch.cu picks it only on sm_90 devices
#else
  // (with Args::dq_inter one z-slice, the reverse recurrence: dq's inter-chunk term comes from inter_chunk_grads.cuh)
  if (blockIdx.z == 0 && !a.dq_inter) hopper_chunk_states_body<T, false>(a);
  else hopper_chunk_states_body<T, true>(a);
#endif
}

}  // namespace tfla::cuda
