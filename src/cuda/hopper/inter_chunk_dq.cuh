// The backward's inter-chunk dq term with the recomputed state on chip (wgmma, sm_90a), for the fused chunk backward:
//
//   dq_inter_c = dH_c C^_c^T   (per token of chunk c, over Dk; chunk_gradients scales its rows and adds dS K)
//   C^_{c+1}   = e^{g_c + m^_c - m^_{c+1}} C^_c + K_c^T diag(wstate) V_c
//
// Why: the recompute recurrence (hopper/chunk_states.cuh, z = 0) wrote every chunk's C^ (Dk x Dv, 2 parts of T = 4
// bytes per element) and chunk_gradients read it back in four 64-column slices: 2.1 GB each way at S = 1,024 on the
// main shape, where both kernels are bound by DRAM (2.4-2.7 TB/s, ncu, bench/NOTES.md v8). A block that holds a state
// tile over the whole Dv finishes dq's inter-chunk term itself: 64 tokens x 64 Dk fp32 per chunk and Dk tile instead
// of 64 x 256 state values, a quarter of the bytes, and chunk_gradients drops its C^ slices and their products.
//
// One block: Dk rows dk0 .. dk0 + 63 of one head, all Dv (<= 256), walking its chunks in order (L = 64: a tile is a
// chunk). Warpgroup w holds Dv columns 128 w .. 128 w + 127 of the fp32 state in registers (the wgmma accumulator
// layout, 64 per thread); per chunk c (all operands in shared memory, 128-byte swizzle; 2-slot ring):
//   wait for chunk c | barrier (chunk c visible; chunk c - 1's slot and the partial sum are free) | queue chunk c + 1
//   dq^T (64 Dk x 64 tokens) = C^_c dH_c^T over the warpgroup's 128 columns: A = C^ from registers in 2 parts
//     (hi, lo: ~2^-17 relative, as the split states chunk_gradients read before), B = dH (K-major)   [async]
//   warpgroup 1's partial -> shared | barrier | warpgroup 0 adds it and stores dq_inter[token][dk] (fp32)
//   C^ *= decay | C^ += (K^T diag(w)) V: A weighted in registers in kStateParts parts, B = V (MN-major)  [async]
// and at the end the partials <dc_last, C_last> (+ <dn_last, n_last>) of the gate gradients, as the recurrence did.
// Limits (dispatch.cu keeps the recurrence and the state slices otherwise): 16-bit inputs, L = 64, Dv <= 256, sm_90a,
// and enough heads x Dk tiles to fill the GPU (the walk is sequential per block).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include "cuda/args.cuh"
#include "cuda/hopper/inter_chunk_dq_config.hpp"
#include "cuda/hopper/sw128.cuh"
#include "cuda/tiles.cuh"

namespace tfla::cuda {

template <class T>
__global__ void __launch_bounds__(kInterDqThreads, 1) hopper_inter_chunk_dq_kernel(Args a) {
#if !TFLA_HAS_WGMMA
  __trap();  // built for sm_90a only; dispatch.cu picks it only on sm_90 devices
#else
  // ---- configuration -------------------------------------------------------------------------------
  constexpr int kParts = kStateParts<T>;
  constexpr int kKBytes = kTile * kInterDqRows * 2;   // K [token][dk]: one 64-column panel
  constexpr int kVBytes = kTile * kInterDqMaxDv * 2;  // V, dH [token][dv]: four panels
  constexpr int kSlotBytes = kKBytes + 2 * kVBytes;
  static_assert(kInterDqThreads == 2 * 128 && kInterDqMaxDv == 2 * 128, "two warpgroups of 128 Dv columns");
  using MMA = hw::Wgmma<T, 64>;
  extern __shared__ unsigned char smem_raw[];
  // 1024-byte alignment for the swizzle patterns (the allocation has 1024 bytes of slack for it)
  unsigned char* const smem = smem_raw + ((1024u - (hw::smem_addr(smem_raw) & 1023u)) & 1023u);
  auto sK = [&](int s) { return smem + s * kSlotBytes; };
  auto sV = [&](int s) { return sK(s) + kKBytes; };
  auto sDH = [&](int s) { return sV(s) + kVBytes; };
  float* const sWts = reinterpret_cast<float*>(smem + kInterDqSlots * kSlotBytes);
  auto sW = [&](int s) { return sWts + s * kInterDqSlotFloats; };  // [0, 64): token weights, [64]: chunk decay
  float* const sRed = sWts + kInterDqSlots * kInterDqSlotFloats;   // warpgroup 1's dq^T partial [dk][token]

  const int ti = blockIdx.x, bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g4 = lane >> 2, t4 = lane & 3;
  const int wg = warp >> 2, wi = warp & 3;
  const int dk0 = ti * kInterDqRows, rows = min(kInterDqRows, a.Dk - dk0);
  const int dv0 = 128 * wg;                 // this warpgroup's state columns
  const bool carries_n = tid < rows;        // n^ of the tile's rows: threads 0 .. rows - 1 (warpgroup 0)
  const bool tracks_n = carries_n && a.dn_last.data;  // n^ is only needed for <dn_last, n_last>
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  const T* gK = static_cast<const T*>(a.k.data) + off4(a.k, b, h, 0, dk0);
  const T* gV = static_cast<const T*>(a.v.data) + off4(a.v, b, h, 0, 0);
  const T* gDH = static_cast<const T*>(a.dh.data) + off4(a.dh, b, h, 0, 0);

  // ---- initial state: rows 16 wi + g4 (+ 8) of the tile, columns dv0 + 64 q + 8 (i / 4) + 2 t4 (+ 1) in st[q][i] ----
  auto row_of = [&](int i) { return 16 * wi + g4 + 8 * ((i & 3) >> 1); };
  auto col_of = [&](int q, int i) { return dv0 + 64 * q + 8 * (i >> 2) + 2 * t4 + (i & 1); };
  float st[2][32];
#pragma unroll
  for (int q = 0; q < 2; ++q)
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int r = row_of(i), c = col_of(q, i);
      st[q][i] = (a.c0.data && r < rows && c < a.Dv)
                     ? static_cast<const float*>(a.c0.data)[off4(a.c0, b, h, dk0 + r, c)] : 0.f;
    }
  float n = (carries_n && a.n0.data) ? static_cast<const float*>(a.n0.data)[off3(a.n0, b, h, dk0 + tid)] : 0.f;

  // Chunk c's K, V, dH tiles (zero past S and past the head dims), its weights and decay, into slot c % 2.
  auto issue = [&](int c) {
    const int s = c % kInterDqSlots, t0 = c * kTile, ntok = min(kTile, a.S - t0);
    load_tile_sw128<T, kTile, kInterDqRows, kInterDqThreads>(sK(s), gK + t0 * a.k.stride[2], a.k.stride[2], ntok, rows,
                                                             tid);
    load_tile_sw128_low_regs<T, kTile, kInterDqMaxDv, kInterDqThreads>(sV(s), gV + t0 * a.v.stride[2], a.v.stride[2],
                                                                       ntok, a.Dv, tid);
    load_tile_sw128_low_regs<T, kTile, kInterDqMaxDv, kInterDqThreads>(sDH(s), gDH + t0 * a.dh.stride[2], a.dh.stride[2],
                                                                       ntok, a.Dv, tid);
    if (tid < kTile) {
      const bool ok = tid < ntok;  // zero weight past S
      hw::cp_async_4(sW(s) + tid, a.wstate + tok0 + t0 + (ok ? tid : 0), ok ? 4 : 0);
    } else if (tid == kTile) {
      hw::cp_async_4(sW(s) + kTile, a.chunk_decay + static_cast<int64_t>(bh) * a.NC + c, 4);
    }
  };

  // ---- the walk over the chunks --------------------------------------------------------------------
  issue(0);
  hw::cp_async_commit();
  for (int c = 0; c < a.NC; ++c) {
    const int s = c % kInterDqSlots, t0 = c * kTile, ntok = min(kTile, a.S - t0);
    hw::cp_async_wait<0>();
    hw::fence_proxy_async_smem();  // chunk c's cp.async writes, for wgmma's reads
    __syncthreads();                // chunk c visible; every warp is done with chunk c - 1 (its slot, sRed)
    if (c + 1 < a.NC) issue(c + 1);
    hw::cp_async_commit();

    // ---- dq^T = C^_c dH_c^T over this warpgroup's columns: A = C^ in 2 parts from the accumulator registers (the
    // k-step's 16 columns are accumulator n-tiles 2 kk, 2 kk + 1 of the panel), B = dH [token][dv] (K-major) ---------
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
    // dq_inter[token][dk] (fp32): per instruction 4 tokens x 8 consecutive Dk values (32-byte sectors, all used)
    if (wg == 1) {
#pragma unroll
      for (int i = 0; i < 32; i += 2)
        *reinterpret_cast<float2*>(sRed + row_of(i) * kInterDqLdRed + 8 * (i >> 2) + 2 * t4) =
            make_float2(acc[i], acc[i + 1]);
    }
    __syncthreads();
    if (wg == 0) {
      float* const dst = a.dq_inter + (tok0 + t0) * a.Dk + dk0;
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

    // ---- the state update: C^ *= decay; C^ += (K^T diag(w)) V (A = this warp's 16 Dk rows of K^T, weighted, in
    // kStateParts parts; B = V, this warpgroup's two panels, MN-major) ----------------------------------------------
    const float* w = sW(s);
    const float decay = w[kTile];  // e^{g_c + m^_c - m^_{c+1}} <= 1 (prepare_gates)
#pragma unroll
    for (int q = 0; q < 2; ++q)
#pragma unroll
      for (int i = 0; i < 32; ++i) st[q][i] *= decay;
    n *= decay;
    if (tracks_n) {
      float x = 0.f;
#pragma unroll 8
      for (int r = 0; r < kTile; ++r)  // zero weight past S
        x += w[r] * to_float<T>(*reinterpret_cast<const T*>(sK(s) + sw128_offset(kTile, r, tid)));
      n += x;
    }
    const uint32_t v_addr = hw::smem_addr(sV(s));
    FragA<T> fk[kTile / 16][kParts];
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
      FragA<T> raw;
      load_a_trans_sw128(raw.r, sK(s), kTile, 16 * wi, 16 * kk);
      scale_a_cols<T, kParts>(fk[kk], raw, w, 16 * kk);
    }
    hw::wgmma_fence_operands(st[0]);
    hw::wgmma_fence_operands(st[1]);
    hw::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk)
#pragma unroll
      for (int p = 0; p < kParts; ++p)
#pragma unroll
        for (int q = 0; q < 2; ++q)
          MMA::template rs<1>(st[q], fk[kk][p].r, desc_mn_major(v_addr, kTile, 2 * wg + q, 16 * kk), 1);
    hw::wgmma_commit();
    hw::wgmma_wait<0>();
    hw::wgmma_fence_operands(st[0]);
    hw::wgmma_fence_operands(st[1]);
  }

  // ---- the gate gradients' partials <dc_last, C_last> (+ <dn_last, n_last>), one per 64 x 64 panel in the
  // recurrence's layout (statedot[bh][dk tile x n_dv64 + dv panel], gates.cuh sums them); n's term in panel 0's ----
  if (a.statedot) {
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
