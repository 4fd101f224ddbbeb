// chunk_gradients: every gradient of one 64-token chunk in one block (L = 64; docs/algorithm.md, "The fused
// chunk backward").
//
// The per-role kernels (chunk_tiles.cuh: kDq, kDk, kDv) each recompute a score matrix of the chunk, and dq / dk
// run once per 64-wide Dk tile: at the main shape the intra-chunk scores are formed 5 times and the fp32 states
// split into parts 4 times (dq + dk + dv = 3.9 + 4.0 + 2.5 ms of the 12.6 ms backward, ncu, S = 1024, H200,
// bench/results/2026-11-26-h200-v3). With L = 64 a chunk is one tile, so one block can hold all of it:
//
//   scores (once)  S_qk = Q K^T, S_dv = dH V^T, W = e^{b_tau - b_sigma + iota_sigma - m_tau} / (den_tau + eps) (causal)
//                  dS = S_dv * W   P = S_qk * W * scale   A = dS * S_qk * scale (fp32: the gate-gradient dots)
//   dq = scale (diag(e^{b + m^_c - m} / (den + eps)) dH C^_c^T  +  dS K)
//   dk = scale (diag(e^{a - m^_{c+1}} / scale) (V dC^_{c+1}^T + dn^_{c+1})  +  dS^T Q)
//   dv =        diag(e^{a - m^_{c+1}}) K dC^_{c+1}  +  P^T dH
//   q.dq, k.dk per token: the inter-chunk part from the fp32 accumulators, the intra part as the row / column
//   sums of A -- the same quantities, in the same roles, as chunk_tiles' kDq / kDk (one computation of dS serves
//   both, so its rounding cancels exactly in d phi = revcumsum(q.dq - k.dk)).
//
// Pipeline: q, k, v, dh of the chunk land in shared memory once (cp.async, 128-byte swizzled: wgmma reads the scores'
// operands, the state products' A and dv's operands from there; dS K and dS^T Q stay on mma.sync). The states, stored
// by the recurrences as 2 parts of T (hi + lo, ~2^-17 relative for bf16), stream through in 64-column Dv slices: C^_c
// (dq), then dC^_{c+1} (dk and the matching 64 columns of dv). Per slice:
//   wait for slice j (its stage) | barrier | queue slice j + 1's cp.async into the other stage | slice j's products
// so each slice's load overlaps the previous slice's products. With Args::dk_inter (dk's inter-chunk term from the dk
// kernel) dv's 1-part dC^ slices land all at once instead.
//
// Warps: w = 0..15, row group rg = w % 4 (tokens 16 rg ..), column group cg = w / 4 = warpgroup (score columns
// 16 cg .., Dk columns 32 cg .. of dq / dk; dv's slice cg on wgmma, all 64 rows x 64 columns, by the warpgroup).
// Limits (dispatch.cu runs the per-role kernels otherwise): 16-bit inputs, L = 64, Dk <= 128, Dv <= 256, and the
// 199 KB of shared memory of chunk_gradients_config.hpp (sm_90).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cfloat>

#include "cuda/args.cuh"
#include "cuda/hopper/sw128.cuh"
#include "cuda/kernels/chunk_gradients_config.hpp"
#include "cuda/tiles.cuh"

namespace tfla::cuda {

template <class T>
__global__ void __launch_bounds__(kGradThreads, 1) chunk_gradients_kernel(Args a) {
#if !TFLA_HAS_WGMMA
  // sm_90a only (wgmma; 199 KB of shared memory per block, more than sm_80 / sm_86 / sm_89 can give): dispatch.cu
  // never picks this kernel elsewhere (the per-role kernels run); its build there would only cost compile time.
  __trap();
#else
  // ---- configuration -------------------------------------------------------------------------------
  static_assert(kGradTile == kTile && kGradLdS == kLd, "the chunk is one of tiles.cuh's 64-token tiles");
  constexpr int kLdS = kGradLdS, CG = kGradColGroups;
  constexpr int kPartBytes = kGradMaxDk * kGradSlice * 2;  // one part of a state slice: [dk][dv - v0], swizzled
  // Columns per warp: of the 64 score columns, of the 128 Dk columns (dq, dk).
  constexpr int kScoreCols = kTile / CG, kDkCols = kGradMaxDk / CG;
  constexpr int NS = kScoreCols / 8, NK = kDkCols / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // The state slices' parts first, 1024-byte aligned (the allocation has the slack): per stage kGradStateParts tiles
  // [dk][64] of T in the 128-byte swizzle (hopper/sw128.cuh), copied there from the recurrences' split states, read
  // by wgmma (K-major: dq's and dk's C^T / dC^T; MN-major: dv's dC).
  unsigned char* const sCp = smem_raw + ((1024u - (hw::smem_addr(smem_raw) & 1023u)) & 1023u);
  auto part = [&](int j, int p) { return sCp + ((j & 1) * kGradStateParts + p) * kPartBytes; };  // slice j's part p
  // The chunk's rows in the 128-byte swizzle (panels of 64 columns, each 1024-byte aligned), so that wgmma reads them:
  // dH [token][dv] (A of S_dv = dH V^T, K-major; B of dv's P^T dH, MN-major), Q, K [token][dk] (A and B of S_qk =
  // Q K^T), V [token][dv] (B of S_dv). ldmatrix reads them too (load_a_sw128, load_b2_sw128).
  unsigned char* const sDH = sCp + kGradSliceStages * kGradStateParts * kPartBytes;
  unsigned char* const sQ = sDH + kTile * kGradMaxDv * sizeof(T);
  unsigned char* const sK = sQ + kTile * kGradMaxDk * sizeof(T);
  unsigned char* const sV = sK + kTile * kGradMaxDk * sizeof(T);
  T* const sP = reinterpret_cast<T*>(sV + kTile * kGradMaxDv * sizeof(T));  // P [tau][sigma]
  T* const sDS = sP + kTile * kLdS;               // dS [tau][sigma], 2 parts (hi at sDS, lo at sDS + kTile * kLdS)
  float* const sB = reinterpret_cast<float*>(sDS + 2 * kTile * kLdS);  // per token: b, iota, m, 1 / (den + eps)
  float* const sIota = sB + kTile;
  float* const sM = sIota + kTile;
  float* const sInv = sM + kTile;
  float* const sSq = sInv + kTile;    // dq's inter-chunk row scale e^{b + m^_c - m} / (den + eps)
  float* const sSk = sSq + kTile;     // dk / dv's inter-chunk row scale e^{a - m^_{c+1}} (state_weight)
  float* const sRowA = sSk + kTile;   // [cg][tau]: row sums of A over this column group (q.dq, intra part)
  float* const sColA = sRowA + CG * kTile;  // [rg][sigma]: column sums of A over this row group (k.dk, intra)
  float* const sDotQ = sColA + 4 * kTile;   // [cg][tau]: q.dq, inter part, over this group's Dk columns
  float* const sDotK = sDotQ + CG * kTile;  // [cg][sigma]: k.dk, inter part
  float* const sDn = sDotK + CG * kTile;    // dn^_{c+1} [dk]
  static_assert(3 * CG + 4 <= 4 * CG, "kGradTokFloats covers the per-group sums");

  const int c = blockIdx.x, bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, rg = warp & 3, cg = warp >> 2;
  const int t0 = c * kTile, ntok = min(kTile, a.S - t0);
  const int nvs = cdiv(a.Dv, kGradSlice);
  const int dk_live = a.Dk - kDkCols * cg;  // this warp's live dq / dk columns (<= 0: none)
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  const int64_t slot = static_cast<int64_t>(bh) * (a.NC + 1) + c;
  const float m_in = a.mhat[slot];
  const int64_t state_elems = static_cast<int64_t>(a.Dk) * a.Dv;
  // C^_c (the backward's recompute) and dC^_{c+1}, each as kGradStateParts parts of T (Args::split_states: part p
  // at p * Dk * Dv, [dk][dv])
  const T* const cst = reinterpret_cast<const T*>(a.cstates) + slot * kGradStateParts * state_elems;
  const T* const dcst = reinterpret_cast<const T*>(a.dcstates) + (slot + 1) * kGradStateParts * state_elems;

  // ---- loads: the chunk's q, k, v, dh (zero past S and past the head dims), the first state slice ----
  {
    auto rows = [&](const tfla_tensor& t, unsigned char* dst, int width, auto cols) {
      load_tile_sw128<T, kTile, decltype(cols)::value, kGradThreads>(
          dst, static_cast<const T*>(t.data) + off4(t, b, h, t0, 0), t.stride[2], ntok, width, tid);
    };
    rows(a.q, sQ, a.Dk, std::integral_constant<int, kGradMaxDk>{});
    rows(a.k, sK, a.Dk, std::integral_constant<int, kGradMaxDk>{});
    rows(a.v, sV, a.Dv, std::integral_constant<int, kGradMaxDv>{});
    rows(a.dh, sDH, a.Dv, std::integral_constant<int, kGradMaxDv>{});
  }
  // Slice j < nvs: columns 64 j.. of C^_c; j >= nvs: columns 64 (j - nvs).. of dC^_{c+1}; its parts straight into
  // stage j % 2 (rows >= Dk and columns >= Dv as zeros). v6 streamed fp32 slices through one staging buffer and split
  // them there, between two barriers, with no second buffer to load into meanwhile (NOTES v4, v6).
  auto issue_slice = [&](int j) {
    const int v0 = (j < nvs ? j : j - nvs) * kGradSlice;
    const T* src = (j < nvs ? cst : dcst) + v0;
#pragma unroll
    for (int p = 0; p < kGradStateParts; ++p)
      load_tile_sw128<T, kGradMaxDk, kGradSlice, kGradThreads>(part(j, p), src + p * state_elems, a.Dv, a.Dk,
                                                               min(kGradSlice, a.Dv - v0), tid);
  };
  // With Args::dk_inter the dC^ slices feed dv's 1-part product only (inter_chunk_grads.cuh stores part 0 alone): all
  // of them at once, slice j in the stage area's j-th part-sized buffer, so that the warpgroups form their dv slices
  // side by side after one barrier (one slice per barrier left three warpgroups waiting for the fourth's dv: +0.06 ms
  // of fwbw at S = 16,384, bench/NOTES.md v10).
  auto dv_part = [&](int j) { return a.dk_inter ? sCp + j * kPartBytes : part(nvs + j, 0); };
  auto issue_dv_parts = [&]() {
#pragma unroll 1
    for (int j = 0; j < nvs; ++j)
      load_tile_sw128<T, kGradMaxDk, kGradSlice, kGradThreads>(dv_part(j), dcst + j * kGradSlice, a.Dv, a.Dk,
                                                               min(kGradSlice, a.Dv - j * kGradSlice), tid);
  };
  static_assert(kGradSliceStages * kGradStateParts * kGradSlice >= kGradMaxDv, "one buffer per dv slice");
  // dq's and dk's inter-chunk terms: from hopper/inter_chunk_grads.cuh where it ran (Args::dq_inter, dk_inter: no C^
  // slices, dC^ slices for dv only), else from the state slices. Without c0, C^_0 = 0: chunk 0 has no dq inter-chunk
  // term, and the recurrences do not store that slot (Args::skip_state0), so its slices are neither loaded nor
  // multiplied.
  const bool dq_states = !a.dq_inter && !(c == 0 && a.skip_state0);
  // Likewise without dc_last, dC^_NC = 0 (Args::skip_dstate_last): the last chunk has no dk / dv inter-chunk terms.
  const bool dkdv_inter = !(c == a.NC - 1 && a.skip_dstate_last);
  const bool dv_parts = dkdv_inter && a.dk_inter;  // the 1-part dC^ slices, all at once (issue_dv_parts)
  const int last_slice = (dkdv_inter && !a.dk_inter) ? 2 * nvs : nvs;  // streamed slices j < last_slice
  if (dq_states || (dkdv_inter && !a.dk_inter)) issue_slice(dq_states ? 0 : nvs);
  if (!dq_states && dv_parts) issue_dv_parts();
  // the inter-chunk terms' fp32 values at this warp's accumulator positions (zero without them), loaded now, used
  // after the scores
  auto load_inter = [&](const float* terms, float (&dst)[NK][4]) {
    zero(dst);
    if (!terms) return;
    const float* src = terms + (tok0 + t0) * a.Dk;
#pragma unroll
    for (int nt = 0; nt < NK; ++nt)
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const int r = acc_row(rg, e), col = kDkCols * cg + acc_col(nt, e);
        if (r < ntok && col < a.Dk) {  // (Dk is a multiple of 8: both columns of the pair)
          const float2 x = *reinterpret_cast<const float2*>(src + static_cast<int64_t>(r) * a.Dk + col);
          dst[nt][e] = x.x;
          dst[nt][e + 1] = x.y;
        }
      }
  };
  float dq_in[NK][4], dk_in[NK][4];
  load_inter(a.dq_inter, dq_in);
  load_inter(a.dk_inter, dk_in);
  hw::cp_async_commit();
  if (tid < kTile) {
    const bool ok = tid < ntok;
    const int64_t t = tok0 + t0 + tid;
    const float bt = ok ? a.bcum[t] : 0.f, io = ok ? a.iota[t] : -INFINITY, mt = ok ? a.mtok[t] : 0.f;
    const float inv = ok ? a.inv_den[t] : 0.f;
    sB[tid] = bt;
    sIota[tid] = io;
    sM[tid] = mt;
    sInv[tid] = inv;
    sSq[tid] = ok ? expf(bt + m_in - mt) * inv : 0.f;
    sSk[tid] = ok ? a.wstate[t] : 0.f;  // state_weight, stored by prepare_gates (backward_token_weights_kernel)
  } else if (tid < kTile + kGradMaxDk) {
    const int d = tid - kTile;
    sDn[d] = (d < a.Dk && dkdv_inter) ? a.dnstates[(slot + 1) * a.Dk + d] : 0.f;  // dn^_NC = 0 when not stored
  }
  hw::cp_async_wait<0>();
  hw::fence_proxy_async_smem();  // the rows' cp.async writes, for wgmma's reads
  __syncthreads();

  // ---- scores, once: rows tau = 16 rg.., columns sigma = kScoreCols cg.. ------------------------------
  {
    // On wgmma, warpgroup cg: S_qk and S_dv's 64 rows x 16 columns 16 cg.. as m64n16 accumulators (per warp the layout
    // of float[NS][4]), both operands K-major from the swizzled rows (B: 16 rows in). v9 ran them on mma.sync, each of
    // the 4 warps of a row group loading the same A fragments: 18% of the kernel's stall samples (NOTES v10).
    static_assert(NS == 2 && kScoreCols == 16, "one m64n16 accumulator per warpgroup");
    float sqk[NS][4], sdv[NS][4];
    float (&sqk_wg)[8] = reinterpret_cast<float (&)[8]>(sqk);
    float (&sdv_wg)[8] = reinterpret_cast<float (&)[8]>(sdv);
    const uint32_t q_addr = hw::smem_addr(sQ), k_addr = hw::smem_addr(sK) + kScoreCols * cg * 128;
    const uint32_t dh_addr = hw::smem_addr(sDH), v_addr = hw::smem_addr(sV) + kScoreCols * cg * 128;
    hw::wgmma_fence_operands(sqk_wg);
    hw::wgmma_fence_operands(sdv_wg);
    hw::wgmma_fence();
    // Over the whole tile width (columns >= Dk / Dv are zeros): a loop bounded by the head dims made ptxas put a
    // warpgroup.arrive before every wgmma (C7519) for the accumulators carried around the loop.
#pragma unroll
    for (int k0 = 0; k0 < kGradMaxDk; k0 += 16)
      hw::Wgmma<T, 16>::template ss<0, 0>(sqk_wg, desc_k_major(q_addr, kTile, k0), desc_k_major(k_addr, kTile, k0),
                                          k0 > 0 ? 1 : 0);
#pragma unroll
    for (int k0 = 0; k0 < kGradMaxDv; k0 += 16)
      hw::Wgmma<T, 16>::template ss<0, 0>(sdv_wg, desc_k_major(dh_addr, kTile, k0), desc_k_major(v_addr, kTile, k0),
                                          k0 > 0 ? 1 : 0);
    hw::wgmma_commit();
    hw::wgmma_wait<0>();
    hw::wgmma_fence_operands(sqk_wg);
    hw::wgmma_fence_operands(sdv_wg);
    float row_a[2] = {0.f, 0.f}, col_a[NS][2];
#pragma unroll
    for (int nt = 0; nt < NS; ++nt) {
      col_a[nt][0] = col_a[nt][1] = 0.f;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = acc_row(rg, e), p = kScoreCols * cg + acc_col(nt, e);
        // the same expression, in the same order, as chunk_tiles' kDq / kDk / kDv weights
        const float w = decay_exp<T>(sB[r] - sB[p] + sIota[p] - sM[r]) * sInv[r];
        const float ds = (p <= r && r < ntok) ? sdv[nt][e] * w : 0.f;  // a select: no branch around the exp
        const float av = ds * sqk[nt][e] * a.scale;
        row_a[e >> 1] += av;
        col_a[nt][e & 1] += av;
        sqk[nt][e] = (p <= r && r < ntok) ? sqk[nt][e] * w * a.scale : 0.f;
        sdv[nt][e] = ds;
      }
      // rows g and g + 8 of columns p, p + 1 as packed pairs: P (1 part), dS (2 parts: dq and dk need ~fp32
      // products with it, chunk_tiles' kPParts)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r = acc_row(rg, 2 * i), p = kScoreCols * cg + acc_col(nt, 0);
        *reinterpret_cast<uint32_t*>(sP + r * kLdS + p) = pack2<T>(sqk[nt][2 * i], sqk[nt][2 * i + 1]);
        pack2_split<T, 2>(reinterpret_cast<uint32_t*>(sDS + r * kLdS + p), kTile * kLdS / 2, sdv[nt][2 * i],
                          sdv[nt][2 * i + 1]);
      }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      row_a[i] += __shfl_xor_sync(0xffffffffu, row_a[i], 1);
      row_a[i] += __shfl_xor_sync(0xffffffffu, row_a[i], 2);
      if ((lane & 3) == 0) sRowA[cg * kTile + acc_row(rg, 2 * i)] = row_a[i];
    }
#pragma unroll
    for (int nt = 0; nt < NS; ++nt)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        float s = col_a[nt][j];
        s += __shfl_xor_sync(0xffffffffu, s, 4);
        s += __shfl_xor_sync(0xffffffffu, s, 8);
        s += __shfl_xor_sync(0xffffffffu, s, 16);
        if (lane < 4) sColA[rg * kTile + kScoreCols * cg + acc_col(nt, j)] = s;
      }
  }
  // P's shared stores (generic proxy) are read by dv's wgmma (async proxy): each thread fences its own, the next
  // barrier publishes them (PTX ISA, "Memory Consistency Model": proxies).
  hw::fence_proxy_async_smem();

  // ---- state slices: wait for slice j, queue slice j + 1 into the other stage ----------------------------
  auto next_slice = [&](int j) {
    hw::cp_async_wait<0>();
    hw::fence_proxy_async_smem();  // slice j's cp.async writes, for wgmma's reads
    __syncthreads();  // slice j landed for every thread; slice j - 1's products (and P, dS, the sums) are done
    if (j + 1 < last_slice) issue_slice(j + 1);
    hw::cp_async_commit();
  };
  // The gate dot of this warp's Dk columns: sum over them of acc * the rows' own q (dq) or k (dk).
  auto group_dot = [&](const float (&acc)[NK][4], const unsigned char* sRows, float* dst) {
    float d[2] = {0.f, 0.f};
#pragma unroll
    for (int nt = 0; nt < NK; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        d[e >> 1] += acc[nt][e] * to_float<T>(*reinterpret_cast<const T*>(
                                      sRows + sw128_offset(kTile, acc_row(rg, e), kDkCols * cg + acc_col(nt, e))));
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      d[i] += __shfl_xor_sync(0xffffffffu, d[i], 1);
      d[i] += __shfl_xor_sync(0xffffffffu, d[i], 2);
      if ((lane & 3) == 0) dst[cg * kTile + acc_row(rg, 2 * i)] = d[i];
    }
  };
  auto scale_by = [&](auto& acc, float s) {
#pragma unroll
    for (auto& t : acc)
#pragma unroll
      for (float& x : t) x *= s;
  };

  float acc[NK][4];  // dq, then dk: rows 16 rg.., Dk columns kDkCols cg..
  // The state products (2 parts) on wgmma: warpgroup cg (warps 4 cg .. 4 cg + 3 = row groups 0..3) computes the 64 rows
  // x kDkCols columns of acc as one m64n32 accumulator, whose per-warp layout is acc's. A = dH or V (64 columns of the
  // slice, K-major from the swizzled rows), B = the parts' rows kDkCols cg.. (K-major). v4's mma.sync form spent 65% of
  // the kernel's mma and most of its fragment loads here (bench/NOTES.md v4, v6); v10.1 loaded A by ldmatrix.
  static_assert(kDkCols == 32 && NK == 4, "one m64n32 accumulator per warpgroup");
  float (&acc_wg)[16] = reinterpret_cast<float (&)[16]>(acc);
  // (A: dH's slice j for dq, V's for dk, both from the swizzled rows)
  auto state_product = [&](int j, bool a_is_dh) {
    const int v0 = (j < nvs ? j : j - nvs) * kGradSlice;
    const uint32_t a_addr = hw::smem_addr(a_is_dh ? sDH : sV);
    hw::wgmma_fence_operands(acc_wg);
    hw::wgmma_fence();
#pragma unroll
    for (int k = 0; k < kGradSlice / 16; ++k)
#pragma unroll
      for (int p = 0; p < kGradStateParts; ++p)
        hw::Wgmma<T, 32>::template ss<0, 0>(
            acc_wg, desc_k_major(a_addr, kTile, v0 + 16 * k),
            desc_k_major(hw::smem_addr(part(j, p)) + kDkCols * cg * 128, kGradMaxDk, 16 * k), 1);
    hw::wgmma_commit();
  };
  auto state_product_done = [&]() {
    hw::wgmma_wait<0>();
    hw::wgmma_fence_operands(acc_wg);
  };
  // dq's and dk's tail once acc holds the row-scaled inter-chunk term: the rows' gate dot (q.dq or k.dk), the
  // intra-chunk term (dS K for dq: A = dS; dS^T Q for dk: A = dS^T, the same tile read transposed), scale, store.
  auto finish_rows = [&](auto ds_k_major, const unsigned char* sRows, float* dot_dst, const unsigned char* sPartner,
                         const tfla_tensor& out) {
    group_dot(acc, sRows, dot_dst);
    gemm_parts_b_sw128<T, decltype(ds_k_major)::value, NK, 2>(acc, sDS, kTile * kLdS, kLdS, 16 * rg, sPartner, kTile,
                                                               kDkCols * cg, kTile, dk_live);
    if (out.data) {
      scale_by(acc, a.scale);
      store_acc<T, NK>(static_cast<T*>(out.data) + off4(out, b, h, t0, kDkCols * cg), out.stride[2], acc, rg, ntok,
                       dk_live, nullptr);
    }
  };
  // dq's inter-chunk term: dH C^_c^T over Dv, slice by slice (or the values loaded above)
#pragma unroll
  for (int nt = 0; nt < NK; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[nt][e] = dq_in[nt][e];
  for (int j = 0; dq_states && j < nvs; ++j) {
    next_slice(j);
    state_product(j, true);
    state_product_done();  // before slice j + 2 is copied into this stage
  }
  // Without the inter-chunk loop, no next_slice barrier has published P, dS and A's sums yet (racecheck found dq's
  // dS K reading dS before every warp had written it).
  if (!dq_states) __syncthreads();
  // dq = scale (row scale * inter + dS K)
#pragma unroll
  for (int nt = 0; nt < NK; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[nt][e] *= sSq[acc_row(rg, e)];
  finish_rows(std::true_type{}, sQ, sDotQ, sK, a.dq);

  // dk's inter-chunk term V dC^T (all warpgroups, slice by slice) and dv, 64 columns per slice, on wgmma by warpgroup
  // j % 4 (Dv <= 256: one slice each):
  //   dv_j = diag(e^{a - m^_{c+1}}) K dC_j (1 part: chunk_tiles' kDv passes the rule with 1)  +  P^T dH_j
  // K dC_j: A = K (K-major, swizzled), B = part 0 of the slice [dk][64] (MN-major); P^T dH_j: A = P^T
  // (ldmatrix.trans, padded), B = dH's panel j (MN-major). v8's form ran both on mma.sync in every warp, 16 x 16 per
  // warp, with an ldmatrix per mma: ~16% of chunk_gradients' stall samples (ncu source counters,
  // bench/results/2026-11-26-h100-v8/v8.1; bench/NOTES.md v10).
  float dv_acc[32];  // m64n64: rows 16 rg.., the slice's 64 columns in 8 n-tiles (the layout of float[8][4])
  auto dv_slice = [&](int j, bool inter) {
    if (inter) {
      hw::wgmma_fence_operands(dv_acc);
      hw::wgmma_fence();
#pragma unroll
      for (int k = 0; k < kGradMaxDk / 16; ++k)  // (K's columns >= Dk and the part's rows >= Dk are zeros)
        hw::Wgmma<T, 64>::template ss<0, 1>(dv_acc, desc_k_major(hw::smem_addr(sK), kTile, 16 * k),
                                            desc_mn_major(hw::smem_addr(dv_part(j)), kGradMaxDk, 0, 16 * k),
                                            k > 0 ? 1 : 0);
      hw::wgmma_commit();
      hw::wgmma_wait<0>();
      hw::wgmma_fence_operands(dv_acc);
#pragma unroll
      for (int i = 0; i < 32; ++i) dv_acc[i] *= sSk[acc_row(rg, i & 3)];
    }
    FragA<T> fp[kTile / 16];
#pragma unroll
    for (int k = 0; k < kTile / 16; ++k) load_a<T, false>(fp[k], sP, kLdS, 16 * rg, 16 * k);
    hw::wgmma_fence_operands(dv_acc);
    hw::wgmma_fence();
#pragma unroll
    for (int k = 0; k < kTile / 16; ++k)
      hw::Wgmma<T, 64>::template rs<1>(dv_acc, fp[k].r, desc_mn_major(hw::smem_addr(sDH), kTile, j, 16 * k),
                                       (inter || k > 0) ? 1 : 0);
    hw::wgmma_commit();
    hw::wgmma_wait<0>();
    hw::wgmma_fence_operands(dv_acc);
    const int v0 = j * kGradSlice;
    if (a.dv.data)
      store_acc<T, 8>(static_cast<T*>(a.dv.data) + off4(a.dv, b, h, t0, v0), a.dv.stride[2],
                      reinterpret_cast<const float (&)[8][4]>(dv_acc), rg, ntok, min(kGradSlice, a.Dv - v0), nullptr);
  };
#pragma unroll
  for (int nt = 0; nt < NK; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[nt][e] = dk_in[nt][e];
  // (the conditions in the loop headers, as dq's: around the loop body, ptxas serialized every wgmma, C7518)
  for (int j = 0; dkdv_inter && !a.dk_inter && j < nvs; ++j) {
    next_slice(nvs + j);
    state_product(nvs + j, false);
    state_product_done();
    if (cg == j) dv_slice(j, true);
  }
  if (dv_parts) {  // dk's inter-chunk term came with dk_in
    if (dq_states) {  // the stage area is free once every warpgroup is through dq's slices
      __syncthreads();
      issue_dv_parts();
      hw::cp_async_commit();
    }
    hw::cp_async_wait<0>();
    hw::fence_proxy_async_smem();
    __syncthreads();
    if (cg < nvs) dv_slice(cg, true);
  }
  // the last chunk without dc_last: dv = P^T dH, no dk inter term (P and dH were published by dq's barriers)
  if (!dkdv_inter && cg < nvs) dv_slice(cg, false);
  // dk = scale ((row scale / scale) (inter + dn) + dS^T Q), as chunk_tiles' kDk
#pragma unroll
  for (int nt = 0; nt < NK; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      acc[nt][e] = (acc[nt][e] + sDn[kDkCols * cg + acc_col(nt, e)]) * (sSk[acc_row(rg, e)] / a.scale);
  finish_rows(std::false_type{}, sK, sDotK, sQ, a.dk);

  // ---- per-token gate dots: the whole Dk in slot 0 of the per-Dk-tile partials (gates.cuh sums the slots) ----
  __syncthreads();
  if (tid < ntok) {
    float qi = 0.f, ki = 0.f, qx = 0.f, kx = 0.f;  // intra (A's sums) and inter parts, in a fixed order
#pragma unroll
    for (int i = 0; i < CG; ++i) {
      qi += sRowA[i * kTile + tid];
      qx += sDotQ[i * kTile + tid];
      kx += sDotK[i * kTile + tid];
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) ki += sColA[i * kTile + tid];
    const int n_dk = cdiv(a.Dk, kTile);
    const int64_t t = (tok0 + t0 + tid) * n_dk;
    a.qdq[t] = qx * a.scale + qi;
    a.kdk[t] = kx * a.scale + ki;
    for (int p = 1; p < n_dk; ++p) a.qdq[t + p] = a.kdk[t + p] = 0.f;
  }
#endif
}

}  // namespace tfla::cuda
