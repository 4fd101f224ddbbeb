// The forward walk on Hopper's warpgroup tensor-core instructions (wgmma, sm_90a): the algorithm of
// kernels/output_walk.cuh (docs/algorithm.md, "The forward walk"), its matrix products issued asynchronously.
//
// Why: the portable walk (mma.sync) is bound by issue latency, not by the tensor cores: ~13 instructions per mma, one
// 215 KB block of 8 warps per SM, 0.45 eligible warps per scheduler, 16% tensor-pipe activity (ncu, bench/NOTES.md v3,
// v5). A wgmma m64n64k16 replaces 32 mma.sync and their 48 ldmatrix: operands come from shared memory through
// descriptors, and the warps do the weights, the exponentials and the state copy while the products run.
//
// One block of 2 warpgroups (8 warps) owns a 128-wide Dv slice of one head and walks its segment in 64-token tiles,
// L = 64 (each tile is a chunk). Warpgroup w: the state rows dk 64 w .. 64 w + 63 (both 64-column panels of the
// slice) and h's columns 64 w .. 64 w + 63 of the slice. Per tile j (all in shared memory, 128-byte swizzle,
// hopper/sw128.cuh):
//   barrier (tile j landed; tile j - 1's slot and the state copy are free) | queue tile j + 2 (3-slot ring)
//   C^ -> sC as T (MN-major B), n^ -> sN | C^ *= decay, n^ *= decay | barrier (sC visible to the async proxy)
//   group A: h  = Q C^ (m64n64, K = Dk), S = Q K^T (m64n64, K = Dk)                         [async]
//   group B: C^ += (K^T diag(w)) V (A from registers: ldmatrix.trans, weighted; 2 x m64n64 per k-step)  [async]
//     (the final-state variant, PARTS > 1, issues it one k-step at a time after h instead)
//   wait A, B | P = S * weights (exp, causal mask) -> registers as T, h *= row scale, q . n^
//   group C: h += P V (A = P from registers)                                                [async]
//   wait C | h / (den + eps) -> global | n^'s update K^T w (4 partial sums, folded in at the next tile)
// STATES_ONLY (the segment pass: sequence segments as in kernels/output_walk.cuh): each block walks its segment from
// a zero state with only K, V and the state update (group B), one barrier per tile, and leaves the segment's own end
// state X_k for segment_start_states_kernel. The portable walk's states-only form took 0.62 ms of the 2.27 ms forward
// at S = 65,536 (ncu, exp, H100, bench/results/2026-11-26-h100-v8).
// Limits (dispatch.cu runs the portable walk otherwise): 16-bit inputs, Dk <= 128, L = 64, sm_90a.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include "cuda/args.cuh"
#include "cuda/hopper/output_walk_config.hpp"
#include "cuda/hopper/sw128.cuh"
#include "cuda/tiles.cuh"

namespace tfla::cuda {

template <class T, int PARTS, bool STATES_ONLY>
__global__ void __launch_bounds__(kHopperWalkThreads, 1) hopper_output_walk_kernel(Args a) {
#if !TFLA_HAS_WGMMA
  __trap();  // built for sm_90a only; dispatch.cu picks it only on sm_90 devices
#else
  // ---- configuration -------------------------------------------------------------------------------
  constexpr int kTileBytes = kTile * 128 * 2;  // one 64 x 128 tile of T: two 64-column panels
  using MMA = hw::Wgmma<T, 64>;
  extern __shared__ unsigned char smem_raw[];
  // 1024-byte alignment for the swizzle patterns (the allocation has 1024 bytes of slack for it)
  unsigned char* const smem = smem_raw + ((1024u - (hw::smem_addr(smem_raw) & 1023u)) & 1023u);
  unsigned char* const sRing = smem;                                   // slot s: Q, K, V tiles at 3 s, 3 s + 1, 3 s + 2
  unsigned char* const sC = sRing + kHopperWalkSlots * 3 * kTileBytes;  // C^_c as T: [dk][dv] (128 rows), MN-major
  float* const sTok = reinterpret_cast<float*>(sC + kHopperWalkMaxDk * 128 * 2);  // slot s: b, iota, m, w; decay, m^_c
  float* const sN = sTok + kHopperWalkSlots * kHopperWalkSlotFloats;  // n^_c [d], for q . n^
  float* const sX = sN + kHopperWalkMaxDk;  // the tile's n^ update K^T w, per quarter of its tokens: [4][d]
  auto sQ = [&](int s) { return sRing + (3 * s) * kTileBytes; };
  auto sK = [&](int s) { return sRing + (3 * s + 1) * kTileBytes; };
  auto sV = [&](int s) { return sRing + (3 * s + 2) * kTileBytes; };
  auto sB = [&](int s) { return sTok + s * kHopperWalkSlotFloats; };
  auto sIota = [&](int s) { return sB(s) + kTile; };
  auto sM = [&](int s) { return sB(s) + 2 * kTile; };
  auto sW = [&](int s) { return sB(s) + 3 * kTile; };
  auto sChunk = [&](int s) { return sB(s) + 4 * kTile; };  // [0] = the chunk's decay, [1] = m^_c
  // as in the portable walk: mLSTMsig with normalize = 0 needs neither n^ . q nor P's row sums
  const bool uses_den = a.variant == TFLA_VARIANT_EXP || a.normalize;
  const bool tracks_n = uses_den || a.n_last.data != nullptr;

  const int dvt = blockIdx.x, bh = blockIdx.y, seg = blockIdx.z, b = bh / a.H, h = bh % a.H;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g4 = lane >> 2, t4 = lane & 3;
  const int wg = warp >> 2, wi = warp & 3;  // warpgroup, warp within it
  const int dv0 = dvt * kHopperWalkDv, dvc = min(kHopperWalkDv, a.Dv - dv0);
  const bool wg_rows = 64 * wg < a.Dk;  // this warpgroup's state rows exist (warpgroup-uniform)
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  const float* mhat = a.mhat + static_cast<int64_t>(bh) * (a.NC + 1);
  const int n_tiles = cdiv(a.S, kTile);
  const int c_begin = seg * a.seg_chunks, c_end = min(a.NC, c_begin + a.seg_chunks);
  const int j_begin = c_begin, j_end = min(n_tiles, c_end);  // L = 64: tile j is chunk j
  const T* gQ = static_cast<const T*>(a.q.data) + off4(a.q, b, h, 0, 0);
  const T* gK = static_cast<const T*>(a.k.data) + off4(a.k, b, h, 0, 0);
  const T* gV = static_cast<const T*>(a.v.data) + off4(a.v, b, h, 0, dv0);
  const int64_t seg_elems = static_cast<int64_t>(a.Dk) * a.Dv + a.Dk;
  const float* seg_state = a.seg_states ? a.seg_states + (static_cast<int64_t>(bh) * a.nseg + seg) * seg_elems : nullptr;

  // The state rows of this thread: dk = 64 wg + 16 wi + g4 (+ 8); panel q's columns 64 q + 8 j + 2 t4 (+ 1) in
  // st[q][4 j + e] (the wgmma accumulator layout).
  float st[2][32];
  const int st_row = 64 * wg + 16 * wi + g4;
  const bool from_ws = !STATES_ONLY && a.nseg > 1;  // the segment pass starts every segment from zero
#pragma unroll
  for (int q = 0; q < 2; ++q)
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int r = st_row + 8 * ((i & 3) >> 1), cl = 64 * q + 8 * (i >> 2) + 2 * t4 + (i & 1);
      float x = 0.f;
      if (r < a.Dk && cl < dvc) {
        if (from_ws) x = seg_state[static_cast<int64_t>(r) * a.Dv + dv0 + cl];
        else if (!STATES_ONLY && a.c0.data) x = static_cast<const float*>(a.c0.data)[off4(a.c0, b, h, r, dv0 + cl)];
      }
      st[q][i] = x;
    }
  // n^ element tid (threads 0..127); each tile's update K^T w is summed by all 256 threads into sX and folded in at
  // the next tile's start (v6.1 kept two partial sums per element, which doubled the shared loads of q . n^)
  float n = 0.f;
  if (tracks_n && tid < kHopperWalkMaxDk) sX[tid] = sX[kHopperWalkMaxDk + tid] = sX[2 * kHopperWalkMaxDk + tid] =
      sX[3 * kHopperWalkMaxDk + tid] = 0.f;
  if (tid < a.Dk && tracks_n) {
    if (from_ws) n = seg_state[static_cast<int64_t>(a.Dk) * a.Dv + tid];
    else if (!STATES_ONLY && a.n0.data) n = static_cast<const float*>(a.n0.data)[off3(a.n0, b, h, tid)];
  }

  // Queue tile j's loads into its ring slot (zero past S and past the head dims) and its gate values.
  auto issue = [&](int j) {
    const int s = (j - j_begin) % kHopperWalkSlots, t0 = j * kTile, ntok = min(kTile, a.S - t0);
    if (!STATES_ONLY)
      load_tile_sw128_low_regs<T, kTile, 128, kHopperWalkThreads>(sQ(s), gQ + t0 * a.q.stride[2], a.q.stride[2], ntok, a.Dk,
                                                                 tid);
    load_tile_sw128_low_regs<T, kTile, 128, kHopperWalkThreads>(sK(s), gK + t0 * a.k.stride[2], a.k.stride[2], ntok, a.Dk, tid);
    load_tile_sw128_low_regs<T, kTile, 128, kHopperWalkThreads>(sV(s), gV + t0 * a.v.stride[2], a.v.stride[2], ntok, dvc, tid);
    static_assert(kHopperWalkThreads == 4 * kTile, "one gate value per thread");
    const int arr = tid / kTile, e = tid % kTile;
    const float* src = arr == 0 ? a.bcum : arr == 1 ? a.iota : arr == 2 ? a.mtok : a.wstate;
    const bool ok = e < ntok;
    hw::cp_async_4(sB(s) + tid, src + tok0 + t0 + (ok ? e : 0), ok ? 4 : 0);
    if (tid < 2)
      hw::cp_async_4(sChunk(s) + tid, tid == 0 ? a.chunk_decay + static_cast<int64_t>(bh) * a.NC + j : mhat + j, 4);
  };

  // ---- the walk ------------------------------------------------------------------------------------
  // Two tiles in flight: one cp.async group per tile (empty past the end), wait_group 1 leaves tile j + 1 pending.
  issue(j_begin);
  hw::cp_async_commit();
  if (j_begin + 1 < j_end) issue(j_begin + 1);
  hw::cp_async_commit();
  for (int j = j_begin; j < j_end; ++j) {
    const int s = (j - j_begin) % kHopperWalkSlots, t0 = j * kTile, ntok = min(kTile, a.S - t0);
    hw::cp_async_wait<1>();
    hw::fence_proxy_async_smem();  // tile j's cp.async writes, for wgmma's reads
    __syncthreads();                // tile j visible; every warp is done with tile j - 1 (its slot, sC, sN)
    if (j + 2 < j_end) issue(j + 2);
    hw::cp_async_commit();

    // C^_c -> sC (T, [dk][dv], MN-major operand of Q C^); n^_c -> sN; then both decay to the chunk's end scale
    if constexpr (!STATES_ONLY) {
#pragma unroll
      for (int q = 0; q < 2; ++q)
#pragma unroll
        for (int i = 0; i < 32; i += 2) {
          const int r = st_row + 8 * ((i & 3) >> 1), cl = 64 * q + 8 * (i >> 2) + 2 * t4;
          *reinterpret_cast<uint32_t*>(sC + sw128_offset(kHopperWalkMaxDk, r, cl)) = pack2<T>(st[q][i], st[q][i + 1]);
        }
    }
    if (tracks_n && tid < kHopperWalkMaxDk) {
      n += (sX[tid] + sX[kHopperWalkMaxDk + tid]) + (sX[2 * kHopperWalkMaxDk + tid] + sX[3 * kHopperWalkMaxDk + tid]);
      if (uses_den && !STATES_ONLY) sN[tid] = n;
    }
    const float decay = sChunk(s)[0];  // e^{g_c + m^_c - m^_{c+1}} <= 1 (prepare_gates)
#pragma unroll
    for (int q = 0; q < 2; ++q)
#pragma unroll
      for (int i = 0; i < 32; ++i) st[q][i] *= decay;
    n *= decay;
    const uint32_t v_addr = hw::smem_addr(sV(s));
    // C^ += (K^T diag(w)) V, A = this warpgroup's 64 Dk rows of K^T from registers (group B below). PARTS > 1 (the
    // final-state variant): the weighted A in parts (~fp32 products, tiles.cuh pack2_split), one k-step at a time
    // after h (all of them in flight at once spilled at the 255-register limit).
    const float* w = sW(s);
    auto state_update = [&](int kk) {
      FragA<T> raw, fk[PARTS];
      load_a_trans_sw128(raw.r, sK(s), kTile, 64 * wg + 16 * wi, 16 * kk);
      scale_a_cols<T, PARTS>(fk, raw, w, 16 * kk);
      hw::wgmma_fence_operands(st[0]);
      hw::wgmma_fence_operands(st[1]);
      hw::wgmma_fence();
#pragma unroll
      for (int p = 0; p < PARTS; ++p)
#pragma unroll
        for (int q = 0; q < 2; ++q) MMA::template rs<1>(st[q], fk[p].r, desc_mn_major(v_addr, kTile, q, 16 * kk), 1);
    };
    if constexpr (STATES_ONLY) {
      // the segment pass: C^ += (K^T diag(w)) V only (1 part: all k-steps in one group; PARTS > 1: below, one k-step
      // at a time as in the output walk). Not skipped for a warpgroup without state rows (Dk <= 64: its K^T rows are
      // the tile's zero fill): behind that condition ptxas serialized every wgmma (C7520, a divergent path).
      if (PARTS == 1) {
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk) state_update(kk);
      }
      hw::wgmma_commit();
      hw::wgmma_wait<0>();
      hw::wgmma_fence_operands(st[0]);
      hw::wgmma_fence_operands(st[1]);
    } else {
      hw::fence_proxy_async_smem();
      __syncthreads();  // the state copy is visible to wgmma

      const uint32_t q_addr = hw::smem_addr(sQ(s)), k_addr = hw::smem_addr(sK(s));
      const uint32_t c_addr = hw::smem_addr(sC);
      // ---- group A: h = Q C^ (this warpgroup's 64 columns), S = Q K^T, over the full 128 of Dk (zero-filled past Dk;
      // a run-time k-step count put a branch and a wgmma.fence before every wgmma) -----------------------------------
      float acc_h[32], acc_s[32];
      hw::wgmma_fence_operands(acc_h);
      hw::wgmma_fence_operands(acc_s);
      hw::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kHopperWalkMaxDk / 16; ++kk)
        MMA::template ss<0, 1>(acc_h, desc_k_major(q_addr, kTile, 16 * kk), desc_mn_major(c_addr, kHopperWalkMaxDk, wg, 16 * kk),
                               kk > 0);
#pragma unroll
      for (int kk = 0; kk < kHopperWalkMaxDk / 16; ++kk)
        MMA::template ss<0, 0>(acc_s, desc_k_major(q_addr, kTile, 16 * kk), desc_k_major(k_addr, kTile, 16 * kk), kk > 0);
      hw::wgmma_commit();

      // ---- group B: C^ += (K^T diag(w)) V (state_update above) ------------------------------------------------------
      if (PARTS == 1 && wg_rows) {
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk) state_update(kk);
      }
      hw::wgmma_commit();

      // ---- wait for groups A and B; P, row scales and q . n^ --------------------------------------------------------
      // (waiting for A alone, so that B ran under this work, made ptxas serialize every wgmma of the kernel: the
      // scaling below writes A's accumulators while B is in flight, C7515)
      hw::wgmma_wait<0>();
      hw::wgmma_fence_operands(acc_h);
      hw::wgmma_fence_operands(acc_s);
      const float m_in = sChunk(s)[1];
      float rb[2], rm[2], rscale[2], rowsum[2] = {0.f, 0.f}, nq[2] = {0.f, 0.f};
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r = 16 * wi + g4 + 8 * i;
        rb[i] = sB(s)[r];
        rm[i] = sM(s)[r];
        rscale[i] = r < ntok ? expf(rb[i] + m_in - rm[i]) * a.scale : 0.f;
      }
      // P = S * e^{((b_tau - b_sigma) + iota_sigma) - m_tau} * scale, causal (the portable walk's expression and order)
      uint32_t pf[kTile / 16][4];
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = 16 * wi + g4 + 8 * (e >> 1), pc = 8 * jj + 2 * t4 + (e & 1);
          float wt = decay_exp<T>(((rb[e >> 1] - sB(s)[pc]) + sIota(s)[pc]) - rm[e >> 1]) * a.scale;
          if (pc > r) wt = 0.f;
          acc_s[4 * jj + e] *= wt;
          rowsum[e >> 1] += acc_s[4 * jj + e];
        }
        // A fragment of k-step jj / 2: registers 0, 1 (columns 0..7 of the step) from n-tile 2 kk, 2, 3 from 2 kk + 1
        pf[jj >> 1][2 * (jj & 1)] = pack2<T>(acc_s[4 * jj], acc_s[4 * jj + 1]);
        pf[jj >> 1][2 * (jj & 1) + 1] = pack2<T>(acc_s[4 * jj + 2], acc_s[4 * jj + 3]);
      }
#pragma unroll
      for (int i = 0; i < 32; ++i) acc_h[i] *= rscale[(i & 3) >> 1];
      if (uses_den) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          rowsum[i] += __shfl_xor_sync(0xffffffffu, rowsum[i], 1);
          rowsum[i] += __shfl_xor_sync(0xffffffffu, rowsum[i], 2);
          // n^_c . q_r: lanes t4 = 0..3 split Dk in 8-element chunks (zero past Dk: q and n^ are)
          const int r = 16 * wi + g4 + 8 * i;
          float x = 0.f;
#pragma unroll
          for (int d0 = 8 * t4; d0 < kHopperWalkMaxDk; d0 += 32) {
            const uint4 raw = *reinterpret_cast<const uint4*>(sQ(s) + sw128_offset(kTile, r, d0));
            const float4 n0 = *reinterpret_cast<const float4*>(sN + d0), n1 = *reinterpret_cast<const float4*>(sN + d0 + 4);
            const float nv[8] = {n0.x, n0.y, n0.z, n0.w, n1.x, n1.y, n1.z, n1.w};
            const uint32_t w4[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              const float2 f = unpack2<T>(w4[k]);
              x += f.x * nv[2 * k] + f.y * nv[2 * k + 1];
            }
          }
          x += __shfl_xor_sync(0xffffffffu, x, 1);
          x += __shfl_xor_sync(0xffffffffu, x, 2);
          nq[i] = x * rscale[i];
        }
      }

      // ---- group C: h += P V (this warpgroup's 64 columns) ------------------------------------------------------
      hw::wgmma_fence_operands(acc_h);
      hw::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kTile / 16; ++kk) MMA::template rs<1>(acc_h, pf[kk], desc_mn_major(v_addr, kTile, wg, 16 * kk), 1);
      hw::wgmma_commit();
      hw::wgmma_wait<0>();
      hw::wgmma_fence_operands(acc_h);
      hw::wgmma_fence_operands(st[0]);
      hw::wgmma_fence_operands(st[1]);

      // ---- epilogue: den = max(|n.q|, e^{-m}) (exp) or max(|n.q|, 1) (sig, normalized); h = num / (den + eps) --------
      float inv[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float den = output_denominator(a, rowsum[i] + nq[i], rm[i], &inv[i]);
        const int r = 16 * wi + g4 + 8 * i;
        if (dvt == 0 && wg == 0 && t4 == 0 && r < ntok && a.den_token.data)
          static_cast<float*>(a.den_token.data)[off3(a.den_token, b, h, t0 + r)] = den;
      }
      const int cw = 64 * wg;
      T* gH = static_cast<T*>(a.h.data) + off4(a.h, b, h, t0 + 16 * wi, dv0 + cw);
#pragma unroll
      for (int i = 0; i < 32; i += 2) {
        const int r = g4 + 8 * ((i & 3) >> 1), cl = 8 * (i >> 2) + 2 * t4;
        if (16 * wi + r < ntok && cw + cl < dvc)
          *reinterpret_cast<uint32_t*>(gH + r * a.h.stride[2] + cl) =
              pack2<T>(acc_h[i] * inv[(i & 3) >> 1], acc_h[i + 1] * inv[(i & 3) >> 1]);
      }
    }  // !STATES_ONLY
    if (PARTS > 1 && wg_rows) {
#pragma unroll 1
      for (int kk = 0; kk < kTile / 16; ++kk) {
        state_update(kk);
        hw::wgmma_commit();
        hw::wgmma_wait<0>();
      }
      hw::wgmma_fence_operands(st[0]);
      hw::wgmma_fence_operands(st[1]);
    }
    // n^'s update K^T w: elements 2 (tid % 64), + 1 over tokens 16 (tid / 64).. (zero weight past S, zero k past Dk)
    if (tracks_n) {
      const int d = 2 * (tid % 64), r0 = (tid / 64) * (kTile / 4);
      const unsigned char* kt = sK(s);
      float x0 = 0.f, x1 = 0.f;
#pragma unroll
      for (int r = r0; r < r0 + kTile / 4; ++r) {
        const float2 kv = unpack2<T>(*reinterpret_cast<const uint32_t*>(kt + sw128_offset(kTile, r, d)));
        x0 += w[r] * kv.x;
        x1 += w[r] * kv.y;
      }
      *reinterpret_cast<float2*>(sX + (tid / 64) * kHopperWalkMaxDk + d) = make_float2(x0, x1);
    }
  }

  // ---- end of the walk: the final state, if wanted (last segment; n_last from the blocks of Dv slice 0); the segment
  // pass leaves its segment's own end state X_k (fp32, [dk][dv], then n^) in its seg_states slot --------------------
  if constexpr (STATES_ONLY) {
#pragma unroll
    for (int q = 0; q < 2; ++q)
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const int r = st_row + 8 * ((i & 3) >> 1), cl = 64 * q + 8 * (i >> 2) + 2 * t4 + (i & 1);
        if (r < a.Dk && cl < dvc) a.seg_states[(static_cast<int64_t>(bh) * a.nseg + seg) * seg_elems +
                                               static_cast<int64_t>(r) * a.Dv + dv0 + cl] = st[q][i];
      }
  }
  const bool final_out = !STATES_ONLY && seg == gridDim.z - 1;
  if (final_out && a.c_last.data) {
#pragma unroll
    for (int q = 0; q < 2; ++q)
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const int r = st_row + 8 * ((i & 3) >> 1), cl = 64 * q + 8 * (i >> 2) + 2 * t4 + (i & 1);
        if (r < a.Dk && cl < dvc) static_cast<float*>(a.c_last.data)[off4(a.c_last, b, h, r, dv0 + cl)] = st[q][i];
      }
  }
  __syncthreads();  // the last tile's n^ update is in sX
  if (tracks_n && tid < kHopperWalkMaxDk)
    n += (sX[tid] + sX[kHopperWalkMaxDk + tid]) + (sX[2 * kHopperWalkMaxDk + tid] + sX[3 * kHopperWalkMaxDk + tid]);
  if (STATES_ONLY && dvt == 0 && tid < a.Dk)
    a.seg_states[(static_cast<int64_t>(bh) * a.nseg + seg) * seg_elems + static_cast<int64_t>(a.Dk) * a.Dv + tid] = n;
  if (final_out && dvt == 0 && tid < a.Dk && a.n_last.data) static_cast<float*>(a.n_last.data)[off3(a.n_last, b, h, tid)] = n;
#endif
}

}  // namespace tfla::cuda
