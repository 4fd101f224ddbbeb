// chunk_states: the inter-chunk recurrence over chunk boundaries (docs/algorithm.md).
//
//   forward  (REVERSE = false): C^_{c+1} = e^{g_c + m^_c - m^_{c+1}} C^_c + K_c^T diag(e^{a - m^_{c+1}}) V_c
//                               slot c of cstates holds C^_c (state before chunk c), slot NC the final state.
//   backward (REVERSE = true) : dC^_c = e^{g_c + m^_c - m^_{c+1}} dC^_{c+1} + Q^_c^T diag(w / (den + eps)) dH_c
//                               slot c + 1 of dcstates holds dC^_{c+1} (the adjoint after chunk c), slot 0 = dc0.
//
// Grid: (Dk tiles x Dv tiles, B*H); one 64x64 fp32 tile of the running state stays in registers for
// the whole sequence (warp w owns state rows 16w..16w+15), so the state never round-trips through
// memory inside the recurrence; each chunk's tokens stream through shared memory 64 at a time.
// The n-vector (length Dk) rides along in the blocks of Dv tile 0, one row per thread.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include "cuda/args.cuh"
#include "cuda/tiles.cuh"

namespace tfla::cuda {

// PARTS: how many T tiles carry each gate-weighted value (tiles.cuh, split_store): 2 for the forward
// (final state within the accuracy rule), kStateParts (~fp32) where the backward's gate gradients use the
// states. Measured (ncu, H100, S=1024, Dk=128, Dv=256): 1.70 ms with 3 parts.
template <class T, bool REVERSE, int PARTS>
__global__ void __launch_bounds__(kThreads, 1) chunk_states_kernel(Args a) {
  // ---- configuration -------------------------------------------------------------------------------
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sA = reinterpret_cast<T*>(smem_raw);  // [token][dk]: K (forward) or Q (backward)
  constexpr int kParts = sizeof(T) == 2 ? PARTS : 1;
  T* const sB0 = sA + kTile * kLd;  // [token][dv]: V (forward) or dH (backward) scaled per token, kParts tiles
  T* sB[kParts];
#pragma unroll
  for (int p = 0; p < kParts; ++p) sB[p] = sB0 + p * kTile * kLd;
  float* sW = reinterpret_cast<float*>(sB0 + kParts * kTile * kLd);  // per-token weights of the current tile

  const int n_dv_tiles = cdiv(a.Dv, kTile);
  const int ti = blockIdx.x / n_dv_tiles, tj = blockIdx.x % n_dv_tiles;
  const int bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
  const int warp = threadIdx.x >> 5, tid = threadIdx.x;
  const int dk0 = ti * kTile, dv0 = tj * kTile;
  const int rows = min(kTile, a.Dk - dk0), cols = min(kTile, a.Dv - dv0);
  const bool carries_n = tj == 0;
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  const float* mhat = a.mhat + static_cast<int64_t>(bh) * (a.NC + 1);
  float* states = (REVERSE ? a.dcstates : a.cstates) + static_cast<int64_t>(bh) * (a.NC + 1) * a.Dk * a.Dv;
  float* nstates = (REVERSE ? a.dnstates : a.nstates) + static_cast<int64_t>(bh) * (a.NC + 1) * a.Dk;
  const tfla_tensor& init = REVERSE ? a.dc_last : a.c0;       // state entering the recurrence
  const tfla_tensor& init_n = REVERSE ? a.dn_last : a.n0;
  const tfla_tensor& tA = REVERSE ? a.q : a.k;
  const tfla_tensor& tB = REVERSE ? a.dh : a.v;
  const T* gA = static_cast<const T*>(tA.data) + off4(tA, b, h, 0, dk0);
  const T* gB = static_cast<const T*>(tB.data) + off4(tB, b, h, 0, dv0);

  // ---- initial state -------------------------------------------------------------------------------
  float acc[8][4];
#pragma unroll
  for (int nt = 0; nt < 8; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = acc_row(warp, e), c = acc_col(nt, e);
      acc[nt][e] = (init.data && r < rows && c < cols)
                       ? static_cast<const float*>(init.data)[off4(init, b, h, dk0 + r, dv0 + c)] : 0.f;
    }
  float n = 0.f;
  if (carries_n && tid < rows && init_n.data)
    n = static_cast<const float*>(init_n.data)[off3(init_n, b, h, dk0 + tid)];

  auto store_state = [&](int slot) {
    float* dst = states + static_cast<int64_t>(slot) * a.Dk * a.Dv + static_cast<int64_t>(dk0) * a.Dv + dv0;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const int r = acc_row(warp, e), c = acc_col(nt, e);
        if (r < rows && c < cols) *reinterpret_cast<float2*>(dst + r * a.Dv + c) = make_float2(acc[nt][e], acc[nt][e + 1]);
      }
    if (carries_n && tid < rows) nstates[static_cast<int64_t>(slot) * a.Dk + dk0 + tid] = n;
  };

  // ---- the recurrence over chunks ------------------------------------------------------------------
  for (int step = 0; step < a.NC; ++step) {
    const int c = REVERSE ? a.NC - 1 - step : step;
    store_state(REVERSE ? c + 1 : c);
    const int cstart = c * a.L, cend = min(a.S, cstart + a.L);
    const float g = a.bcum[tok0 + cend - 1];
    const float m_in = mhat[c], m_out = mhat[c + 1];
    const float decay = __expf(g + m_in - m_out);  // <= 1 by the choice of m^_{c+1}
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nt][e] *= decay;
    n *= decay;

    for (int t0 = cstart; t0 < cend; t0 += kTile) {
      const int ntok = min(kTile, cend - t0);
      load_tile_async<T>(sA, gA + t0 * tA.stride[2], tA.stride[2], ntok, rows);
      load_tile_async<T>(sB0, gB + t0 * tB.stride[2], tB.stride[2], ntok, cols);
      hw::cp_async_commit();
      if (tid < kTile) {
        float w = 0.f;
        if (tid < ntok) {
          const int64_t t = tok0 + t0 + tid;
          w = REVERSE ? a.scale * __expf(a.bcum[t] + m_in - a.mtok[t]) * a.inv_den[t]   // w_t q^ / (den + eps)
                      : __expf(g - a.bcum[t] + a.iota[t] - m_out);                      // e^{a_t - m^_{c+1}}
        }
        sW[tid] = w;
      }
      hw::cp_async_wait<0>();
      __syncthreads();
      // Scale the B rows by their token weight, as kParts tiles of T (tiles.cuh, kStateParts): the states
      // then carry ~fp32 precision, which the gate gradients need.
      for (int idx = tid; idx < kTile * kTile; idx += kThreads) {
        const int r = idx / kTile, cc = idx % kTile;
        split_store<T, kParts>(sB, r * kLd + cc, to_float<T>(sB0[r * kLd + cc]) * sW[r]);
      }
      if (!REVERSE && carries_n && tid < rows) {
        float s = 0.f;
        for (int r = 0; r < ntok; ++r) s += sW[r] * to_float<T>(sA[r * kLd + tid]);
        n += s;
      }
      __syncthreads();
      // acc(dk x dv) += A^T(dk x tok) * B(tok x dv): A stored [tok][dk] (m-major), B stored [tok][dv] (n-major).
#pragma unroll
      for (int p = 0; p < kParts; ++p) warp_gemm<T, false, false>(acc, sA, warp * 16, sB[p], kTile);
      __syncthreads();
    }
  }
  store_state(REVERSE ? 0 : a.NC);

  // ---- outputs -------------------------------------------------------------------------------------
  const tfla_tensor& out = REVERSE ? a.dc0 : a.c_last;
  const tfla_tensor& out_n = REVERSE ? a.dn0 : a.n_last;
  if (out.data) {
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = acc_row(warp, e), c = acc_col(nt, e);
        if (r < rows && c < cols) static_cast<float*>(out.data)[off4(out, b, h, dk0 + r, dv0 + c)] = acc[nt][e];
      }
  }
  if (carries_n && tid < rows && out_n.data) static_cast<float*>(out_n.data)[off3(out_n, b, h, dk0 + tid)] = n;

  // Backward's forward recompute: partial <dc_last, C_last> (+ <dn_last, n_last>) for d phi.
  if (!REVERSE && a.statedot) {
    float s = 0.f;
    if (a.dc_last.data) {
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = acc_row(warp, e), c = acc_col(nt, e);
          if (r < rows && c < cols)
            s += acc[nt][e] * static_cast<const float*>(a.dc_last.data)[off4(a.dc_last, b, h, dk0 + r, dv0 + c)];
        }
    }
    if (carries_n && tid < rows && a.dn_last.data)
      s += n * static_cast<const float*>(a.dn_last.data)[off3(a.dn_last, b, h, dk0 + tid)];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    __shared__ float red[kThreads / 32];
    if ((tid & 31) == 0) red[warp] = s;
    __syncthreads();
    if (tid == 0) a.statedot[static_cast<int64_t>(bh) * gridDim.x + blockIdx.x] = red[0] + red[1] + red[2] + red[3];
  }
}

}  // namespace tfla::cuda
