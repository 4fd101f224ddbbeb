// The backward's inter-chunk gradient terms with the state recurrences on chip (wgmma, sm_90a), for the fused chunk
// backward. REVERSE = false, dq:                          REVERSE = true, dk:
//   dq_inter_c = dH_c C^_c^T                              dk_inter_c = V_c dC^_{c+1}^T
//   C^_{c+1} = d_c C^_c + K_c^T diag(wstate) V_c          dC^_c = d_c dC^_{c+1} + Q_c^T diag(wrev) dH_c
// per token of chunk c, over Dk (d_c = e^{g_c + m^_c - m^_{c+1}}; chunk_gradients scales the rows and adds the
// intra-chunk terms). The reverse walk also stores each dC^_{c+1} in one part of T (hi) and dn^_{c+1} for
// chunk_gradients' dv (K dC^ with one part, as chunk_tiles' kDv) and dk (the dn term), and writes dc0 / dn0.
//
// Why: the recurrences (hopper/chunk_states.cuh) wrote every chunk's C^ and dC^ (Dk x Dv, 2 parts of T = 4 bytes per
// element) and chunk_gradients read them back in 64-column slices: 2.1 GB each way per state at S = 1,024 on the main
// shape, where both kernels are bound by DRAM (2.4-2.7 TB/s, ncu, bench/NOTES.md v8). A block that holds a state tile
// over the whole Dv finishes the Dk tile's inter-chunk term itself: 64 tokens x 64 Dk fp32 per chunk and Dk tile
// instead of 64 x 256 state values, a quarter of the bytes, and chunk_gradients drops those slices and products.
//
// One block: Dk rows dk0 .. dk0 + 63 of one head, all Dv (<= 256), walking its chunks in order (reverse order for dk;
// L = 64: a tile is a chunk). Warpgroup w holds Dv columns 128 w .. 128 w + 127 of the fp32 state in registers (the
// wgmma accumulator layout, 64 per thread); per chunk (all operands in shared memory, 128-byte swizzle; 2-slot ring):
//   wait for the chunk | barrier (the chunk visible; the last one's slot and the partial sum are free) | queue the next
//   (dk: the state -> one part of T -> dcstates, each warp's 16 rows through its own shared-memory piece)
//   out^T (64 Dk x 64 tokens) = state X^T over the warpgroup's 128 columns, X = dH (dq) or V (dk): A = the state in
//     2 parts from registers (hi, lo: ~2^-17 relative, as the split states chunk_gradients read before), B = X
//     (K-major)                                                                                         [async]
//   warpgroup 1's partial -> shared | barrier | warpgroup 0 adds it and stores out[token][dk] (fp32)
//   state *= decay | state += (A^T diag(w)) B: A = K or Q weighted in registers in kStateParts parts, B = V or dH
//     (MN-major)                                                                                         [async]
// and at the end (dq) the partials <dc_last, C_last> (+ <dn_last, n_last>) of the gate gradients, as the recurrence
// did, or (dk) dc0 and dn0.
// Limits (dispatch.cu keeps the recurrences and the state slices otherwise): 16-bit inputs, L = 64, Dv <= 256,
// sm_90a, and enough heads x Dk tiles to fill the GPU (the walk is sequential per block).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include "cuda/args.cuh"
#include "cuda/hopper/chunk_states.cuh"  // decay_state, tile_weighted_column_sum, weighted_state_update
#include "cuda/hopper/inter_chunk_grads_config.hpp"
#include "cuda/hopper/sw128.cuh"
#include "cuda/tiles.cuh"

namespace tfla::cuda {

template <class T, bool REVERSE>
__global__ void __launch_bounds__(kInterDqThreads, 1) hopper_inter_chunk_grads_kernel(Args a) {
#if !TFLA_HAS_WGMMA
  __trap();  // built for sm_90a only; dispatch.cu picks it only on sm_90 devices
#else
  // ---- configuration -------------------------------------------------------------------------------
  constexpr int kParts = kStateParts<T>;
  constexpr int kKBytes = kTile * kInterDqRows * 2;   // K or Q [token][dk]: one 64-column panel
  constexpr int kVBytes = kTile * kInterDqMaxDv * 2;  // V, dH [token][dv]: four panels
  constexpr int kSlotBytes = kKBytes + 2 * kVBytes;
  static_assert(kInterDqThreads == 2 * 128 && kInterDqMaxDv == 2 * 128, "two warpgroups of 128 Dv columns");
  using MMA = hw::Wgmma<T, 64>;
  extern __shared__ unsigned char smem_raw[];
  // 1024-byte alignment for the swizzle patterns (the allocation has 1024 bytes of slack for it)
  unsigned char* const smem = smem_raw + ((1024u - (hw::smem_addr(smem_raw) & 1023u)) & 1023u);
  auto sK = [&](int s) { return smem + s * kSlotBytes; };  // the update's A: K (dq) or Q (dk)
  auto sV = [&](int s) { return sK(s) + kKBytes; };         // the update's B: V (dq) or dH (dk)
  auto sDH = [&](int s) { return sV(s) + kVBytes; };        // the output's B: dH (dq) or V (dk)
  float* const sWts = reinterpret_cast<float*>(smem + kInterDqSlots * kSlotBytes);
  auto sW = [&](int s) { return sWts + s * kInterDqSlotFloats; };  // [0, 64): token weights, [64]: chunk decay
  float* const sRed = sWts + kInterDqSlots * kInterDqSlotFloats;   // warpgroup 1's out^T partial [dk][token]
  // dk: the state's hi part, per warp its 16 rows x 128 columns in the 128-byte swizzle (two 64-column panels)
  constexpr int kWarpStageBytes = 16 * 128 * 2;
  unsigned char* const sStage = reinterpret_cast<unsigned char*>(sRed + kInterDqRows * kInterDqLdRed) +
                                (threadIdx.x >> 5) * kWarpStageBytes;

  const int ti = blockIdx.x, bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g4 = lane >> 2, t4 = lane & 3;
  const int wg = warp >> 2, wi = warp & 3;
  const int dk0 = ti * kInterDqRows, rows = min(kInterDqRows, a.Dk - dk0);
  const int dv0 = 128 * wg;                 // this warpgroup's state columns
  const bool carries_n = tid < rows;        // n^ of the tile's rows: threads 0 .. rows - 1 (warpgroup 0)
  // dq: n^ is only needed for <dn_last, n_last>; dk: dn^ only decays (den is held constant) and is stored per chunk
  const bool tracks_n = !REVERSE && carries_n && a.dn_last.data;
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  const tfla_tensor& tA = REVERSE ? a.q : a.k;    // the update's A, Dk columns
  const tfla_tensor& tB = REVERSE ? a.dh : a.v;   // the update's B, Dv columns
  const tfla_tensor& tX = REVERSE ? a.v : a.dh;   // the output's B, Dv columns
  const T* gA = static_cast<const T*>(tA.data) + off4(tA, b, h, 0, dk0);
  const T* gB = static_cast<const T*>(tB.data) + off4(tB, b, h, 0, 0);
  const T* gX = static_cast<const T*>(tX.data) + off4(tX, b, h, 0, 0);
  const tfla_tensor& init = REVERSE ? a.dc_last : a.c0;  // the state entering the walk
  const tfla_tensor& init_n = REVERSE ? a.dn_last : a.n0;
  float* const out_inter = REVERSE ? a.dk_inter : a.dq_inter;

  // ---- initial state: rows 16 wi + g4 (+ 8) of the tile, columns dv0 + 64 q + 8 (i / 4) + 2 t4 (+ 1) in st[q][i] ----
  auto row_of = [&](int i) { return 16 * wi + g4 + 8 * ((i & 3) >> 1); };
  auto col_of = [&](int q, int i) { return dv0 + 64 * q + 8 * (i >> 2) + 2 * t4 + (i & 1); };
  float st[2][32];
#pragma unroll
  for (int q = 0; q < 2; ++q)
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int r = row_of(i), c = col_of(q, i);
      st[q][i] = (init.data && r < rows && c < a.Dv)
                     ? static_cast<const float*>(init.data)[off4(init, b, h, dk0 + r, c)] : 0.f;
    }
  float n = (carries_n && init_n.data) ? static_cast<const float*>(init_n.data)[off3(init_n, b, h, dk0 + tid)] : 0.f;

  // Walk step j's chunk (reverse order for dk): its tiles (zero past S and past the head dims), its weights and
  // decay, into slot j % 2.
  auto chunk_of = [&](int j) { return REVERSE ? a.NC - 1 - j : j; };
  auto issue = [&](int j) {
    const int c = chunk_of(j), s = j % kInterDqSlots, t0 = c * kTile, ntok = min(kTile, a.S - t0);
    load_tile_sw128<T, kTile, kInterDqRows, kInterDqThreads>(sK(s), gA + t0 * tA.stride[2], tA.stride[2], ntok, rows,
                                                             tid);
    load_tile_sw128_low_regs<T, kTile, kInterDqMaxDv, kInterDqThreads>(sV(s), gB + t0 * tB.stride[2], tB.stride[2],
                                                                       ntok, a.Dv, tid);
    load_tile_sw128_low_regs<T, kTile, kInterDqMaxDv, kInterDqThreads>(sDH(s), gX + t0 * tX.stride[2], tX.stride[2],
                                                                       ntok, a.Dv, tid);
    if (tid < kTile) {
      const bool ok = tid < ntok;  // zero weight past S
      hw::cp_async_4(sW(s) + tid, (REVERSE ? a.wrev : a.wstate) + tok0 + t0 + (ok ? tid : 0), ok ? 4 : 0);
    } else if (tid == kTile) {
      hw::cp_async_4(sW(s) + kTile, a.chunk_decay + static_cast<int64_t>(bh) * a.NC + c, 4);
    }
  };

  // ---- the walk over the chunks --------------------------------------------------------------------
  issue(0);
  hw::cp_async_commit();
  for (int j = 0; j < a.NC; ++j) {
    const int c = chunk_of(j), s = j % kInterDqSlots, t0 = c * kTile, ntok = min(kTile, a.S - t0);
    hw::cp_async_wait<0>();
    hw::fence_proxy_async_smem();  // the chunk's cp.async writes, for wgmma's reads
    __syncthreads();                // the chunk visible; every warp is done with the last one (its slot, sRed)
    if (j + 1 < a.NC) issue(j + 1);
    hw::cp_async_commit();

    if constexpr (REVERSE) {
      // dC^_{c+1} -> dcstates slot c + 1 as part 0 of the split layout (Args::split_states; chunk_gradients' dv reads
      // only that part here), each warp's 16 rows through its own piece of shared memory so that every store writes
      // whole 128-byte lines (4-byte stores from the registers made the recurrence 3x slower, NOTES v7.3); dn^_{c+1}
      if (state_slot_read(a, true, c + 1)) {
#pragma unroll
        for (int q = 0; q < 2; ++q)
#pragma unroll
          for (int i = 0; i < 32; i += 2)
            *reinterpret_cast<uint32_t*>(sStage + sw128_offset(16, g4 + 8 * ((i & 3) >> 1), 64 * q + 8 * (i >> 2) + 2 * t4)) =
                pack2<T>(st[q][i], st[q][i + 1]);
        __syncwarp();
        T* const dt = reinterpret_cast<T*>(a.dcstates) + static_cast<int64_t>(bh) * (a.NC + 1) * 2 * a.Dk * a.Dv +
                      static_cast<int64_t>(c + 1) * 2 * a.Dk * a.Dv + static_cast<int64_t>(dk0 + 16 * wi) * a.Dv + dv0;
        // lane: 16-byte chunk lane % 16 of rows lane / 16, + 2, ... (a warp store: two whole 256-byte rows)
        const int cc = 8 * (lane % 16);
        if (dv0 + cc < a.Dv) {
#pragma unroll
          for (int r = lane / 16; r < 16; r += 2)
            if (16 * wi + r < rows)
              *reinterpret_cast<uint4*>(dt + static_cast<int64_t>(r) * a.Dv + cc) =
                  *reinterpret_cast<const uint4*>(sStage + sw128_offset(16, r, cc));
        }
        if (carries_n) a.dnstates[(static_cast<int64_t>(bh) * (a.NC + 1) + c + 1) * a.Dk + dk0 + tid] = n;
      }
    }

    // ---- out^T = state X^T over this warpgroup's columns: A = the state in 2 parts from the accumulator registers
    // (the k-step's 16 columns are accumulator n-tiles 2 kk, 2 kk + 1 of the panel), B = X [token][dv] (K-major) -----
    float acc[32];
    {
      uint32_t fa[8][2][4];
#pragma unroll
      for (int kk = 0; kk < 8; ++kk)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int i = 8 * (kk & 3) + 2 * r;  // registers 0, 1: rows g4, g4 + 8 of n-tile 2 kk; 2, 3: of 2 kk + 1
          pack2_split<T, 2>(&fa[kk][0][r], 4, st[kk >> 2][i], st[kk >> 2][i + 1]);
        }
      const uint32_t dh_addr = hw::smem_addr(sDH(s));
      hw::wgmma_fence_operands(acc);
      hw::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 8; ++kk)
#pragma unroll
        for (int p = 0; p < 2; ++p)
          MMA::template rs<0>(acc, fa[kk][p], desc_k_major(dh_addr, kTile, dv0 + 16 * kk), (kk | p) ? 1 : 0);
      hw::wgmma_commit();
      hw::wgmma_wait<0>();
      hw::wgmma_fence_operands(acc);
    }
    // ---- the two warpgroups' partial sums: warpgroup 1's through shared memory, warpgroup 0 stores the sum ------
    // out[token][dk] (fp32): per instruction 4 tokens x 8 consecutive Dk values (32-byte sectors, all used)
    if (wg == 1) {
#pragma unroll
      for (int i = 0; i < 32; i += 2)
        *reinterpret_cast<float2*>(sRed + row_of(i) * kInterDqLdRed + 8 * (i >> 2) + 2 * t4) =
            make_float2(acc[i], acc[i + 1]);
    }
    __syncthreads();
    if (wg == 0) {
      float* const dst = out_inter + (tok0 + t0) * a.Dk + dk0;
#pragma unroll
      for (int i = 0; i < 32; i += 2) {
        const int r = row_of(i), t = 8 * (i >> 2) + 2 * t4;
        const float2 o = *reinterpret_cast<const float2*>(sRed + r * kInterDqLdRed + t);
        if (r < rows) {
          if (t < ntok) dst[static_cast<int64_t>(t) * a.Dk + r] = acc[i] + o.x;
          if (t + 1 < ntok) dst[static_cast<int64_t>(t + 1) * a.Dk + r] = acc[i + 1] + o.y;
        }
      }
    }

    // ---- the state update: state *= decay; state += (A^T diag(w)) B (A = this warp's 16 Dk rows of K^T or Q^T,
    // weighted, in kStateParts parts; B = V or dH, this warpgroup's two panels, MN-major) ----------------------------
    const float* w = sW(s);
    decay_state(st, n, w[kTile]);
    if (tracks_n) n += tile_weighted_column_sum<T>(sK(s), w, tid);
    weighted_state_update<T, kParts>(st, sK(s), w, 16 * wi, hw::smem_addr(sV(s)), 2 * wg);
  }

  // ---- dk: dc0 and dn0 (the adjoint of the initial state) -----------------------------------------------------------
  if (REVERSE && a.dc0.data) {
#pragma unroll
    for (int q = 0; q < 2; ++q)
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const int r = row_of(i), c = col_of(q, i);
        if (r < rows && c < a.Dv) static_cast<float*>(a.dc0.data)[off4(a.dc0, b, h, dk0 + r, c)] = st[q][i];
      }
  }
  if (REVERSE && carries_n && a.dn0.data) static_cast<float*>(a.dn0.data)[off3(a.dn0, b, h, dk0 + tid)] = n;

  // ---- dq: the gate gradients' partials <dc_last, C_last> (+ <dn_last, n_last>), one per 64 x 64 panel in the
  // recurrence's layout (statedot[bh][dk tile x n_dv64 + dv panel], gates.cuh sums them); n's term in panel 0's ----
  if (!REVERSE && a.statedot) {
    const int n_dv64 = cdiv(a.Dv, kTile);
    __shared__ float red[4][4];  // [panel][warp of its warpgroup]
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      float x = 0.f;
      if (a.dc_last.data) {
#pragma unroll
        for (int i = 0; i < 32; ++i) {
          const int r = row_of(i), c = col_of(q, i);
          if (r < rows && c < a.Dv)
            x += st[q][i] * static_cast<const float*>(a.dc_last.data)[off4(a.dc_last, b, h, dk0 + r, c)];
        }
      }
      if (q == 0 && tracks_n) x += n * static_cast<const float*>(a.dn_last.data)[off3(a.dn_last, b, h, dk0 + tid)];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
      if (lane == 0) red[2 * wg + q][wi] = x;
    }
    __syncthreads();
    if (tid < 4 && tid < n_dv64)
      a.statedot[static_cast<int64_t>(bh) * cdiv(a.Dk, kTile) * n_dv64 + ti * n_dv64 + tid] =
          (red[tid][0] + red[tid][1]) + (red[tid][2] + red[tid][3]);
  }
#endif
}

}  // namespace tfla::cuda
