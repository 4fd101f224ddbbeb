// The intra-chunk tile kernel of TFLA, in four roles that share one structure (docs/algorithm.md):
//
//   role        rows (64 tokens)   out cols   inter-chunk term                     intra-chunk term
//   kOutput  h   queries tau       Dv tile    w_t  Q^ C^_c                          sum_{sigma<=tau} P (q^.k) v
//   kDq      dq  queries tau       Dk tile    w_t dH' C^_c^T                        sum_{sigma<=tau} P (dh'.v) k
//   kDv      dv  keys sigma        Dv tile    e^{a-m^_{c+1}} K dC^_{c+1}            sum_{tau>=sigma} P (q^.k) dh'
//   kDk      dk  keys sigma        Dk tile    e^{a-m^_{c+1}} (V dC^_{c+1}^T + dn)   sum_{tau>=sigma} P (dh'.v) q^
//
// with P_{tau,sigma} = e^{b_tau - b_sigma + iota_sigma - m_tau} (<= 1) and dh' = dh / (den + eps).
// This is the TFLA tiling: a chunk of L tokens is split over L/64 thread blocks along the rows, each
// looping over the partner tiles of the same chunk (the causal L x L part) and over 64-wide head-dim
// slices, so any L runs in the same 4 shared-memory tiles.
//
// Per block: 4 warps, a 64 x 64 fp32 accumulator (warp w owns rows 16w..16w+15).
// Pipeline of one partner tile: load the two score operands slice by slice (cp.async), score GEMM,
// weight + causal mask in registers, stage P (as T) in shared memory, load the value tile, value GEMM.
// Grid: (output-column tiles, row tiles over the whole sequence, B*H).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cfloat>

#include "cuda/args.cuh"
#include "cuda/tiles.cuh"

namespace tfla::cuda {

enum Role : int { kOutput = 0, kDq = 1, kDv = 2, kDk = 3 };

// Output columns per block of a role, and the dynamic shared memory its kernel needs.
__host__ __device__ constexpr int chunk_tiles_out_cols(int role) { return role == kOutput || role == kDv ? 128 : 64; }
template <class T>
constexpr size_t chunk_tiles_smem_bytes(int role) {
  return (2 * kTile * kLd + 2 * kTile * (chunk_tiles_out_cols(role) + 8)) * sizeof(T) + 11 * kTile * sizeof(float);
}

template <class T, int ROLE>
__global__ void __launch_bounds__(kThreads, 1) chunk_tiles_kernel(Args a) {
  // ---- configuration -------------------------------------------------------------------------------
  constexpr bool kRowsAreQueries = ROLE == kOutput || ROLE == kDq;
  constexpr bool kOutIsDk = ROLE == kDq || ROLE == kDk;          // output columns run over Dk (else Dv)
  constexpr bool kScoreOverDk = ROLE == kOutput || ROLE == kDv;  // score contraction dim Dk (else Dv)

  // Output columns per block: 128 for h and dv (half the blocks, so Q K^T / K Q^T is computed half as
  // often as with 64), 64 for dq and dk (their extra fp32 gate-dot work needs the registers).
  constexpr int kOut = chunk_tiles_out_cols(ROLE);
  constexpr int kLdO = kOut + 8;
  constexpr int NTO = kOut / 8;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sX = reinterpret_cast<T*>(smem_raw);  // row operand slice      [row token][contraction]           (kLd)
  T* sZ = sX + kTile * kLd;                 // partner score operand [partner][contraction] (kLd), or state slice (kLdO)
  T* sY = sZ + kTile * kLdO;                // partner value tile      [partner token][out col]           (kLdO)
  T* sP = sY + kTile * kLdO;                // weighted scores         [row token][partner token]         (kLd)
  float* sRowB = reinterpret_cast<float*>(sP + kTile * kLd);  // per row token: b, m (or iota), inv_den, scale
  float* sRowM = sRowB + kTile;
  float* sRowD = sRowM + kTile;
  float* sRowS = sRowD + kTile;
  float* sParB = sRowS + kTile;             // per partner token: b, iota (or m), inv_den
  float* sParX = sParB + kTile;
  float* sParD = sParX + kTile;
  float* sVec = sParD + kTile;              // a 64-vector slice of n^_c / dn^_{c+1}
  float* sNq = sVec + kTile;                // per row: inter-chunk part of n.q (kOutput)
  // Products with the fp32 boundary states use kInterParts tiles of T (tiles.cuh, kStateParts): h and dv
  // pass the accuracy rule with 1 (bench/results/2026-11-25-h100-v1: no h or dv failure); dq and dk feed
  // the gate gradients, which need ~fp32 (v1.1: 2 parts left 8 grid cases failing d f).
  constexpr int kInterParts = (ROLE == kDq || ROLE == kDk) ? kStateParts<T> : 1;
  T* const sParts[3] = {sZ, sY, sP};
  // dq / dk blocks also produce the per-token gate-gradient dots (q.dq, k.dk) in fp32: the inter-chunk part
  // from the fp32 accumulator over this Dk tile, and (Dk tile 0 only) the intra-chunk part as the row sums
  // of A = dP * P in fp32 -- not from the bf16-rounded dP that the dq / dk products use, so the gate
  // gradients keep fp32 accuracy (as an autograd implementation's do) and q.dq - k.dk telescopes.
  constexpr bool kGateDots = ROLE == kDq || ROLE == kDk;

  const int oc = blockIdx.x, rt = blockIdx.y, bh = blockIdx.z, b = bh / a.H, h = bh % a.H;
  const int warp = threadIdx.x >> 5, tid = threadIdx.x;
  const int r0 = rt * kTile, nrows = min(kTile, a.S - r0);
  const int c = r0 / a.L, cstart = c * a.L, cend = min(a.S, cstart + a.L);
  const int Dout = kOutIsDk ? a.Dk : a.Dv, Dsc = kScoreOverDk ? a.Dk : a.Dv;
  const int o0 = oc * kOut, ocols = min(kOut, Dout - o0);
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  const float m_in = a.mhat[static_cast<int64_t>(bh) * (a.NC + 1) + c];
  const float m_out = a.mhat[static_cast<int64_t>(bh) * (a.NC + 1) + c + 1];
  const float g = a.bcum[tok0 + cend - 1];

  // Operands by role: X rows x contraction, Z partners x contraction, Y partners x out.
  const tfla_tensor& tX = ROLE == kOutput ? a.q : ROLE == kDq ? a.dh : ROLE == kDv ? a.k : a.v;
  const tfla_tensor& tZ = ROLE == kOutput ? a.k : ROLE == kDq ? a.v : ROLE == kDv ? a.q : a.dh;
  const tfla_tensor& tY = ROLE == kOutput ? a.v : ROLE == kDq ? a.k : ROLE == kDv ? a.dh : a.q;
  const T* gX = static_cast<const T*>(tX.data) + off4(tX, b, h, 0, 0);
  const T* gZ = static_cast<const T*>(tZ.data) + off4(tZ, b, h, 0, 0);
  const T* gY = static_cast<const T*>(tY.data) + off4(tY, b, h, 0, o0);
  // State: C^_c for query rows, dC^_{c+1} for key rows; stored [Dk][Dv] fp32.
  const float* state = (kRowsAreQueries ? a.cstates : a.dcstates) +
                       (static_cast<int64_t>(bh) * (a.NC + 1) + (kRowsAreQueries ? c : c + 1)) * a.Dk * a.Dv;
  const float* nvec = (ROLE == kOutput ? a.nstates : a.dnstates) +
                      (static_cast<int64_t>(bh) * (a.NC + 1) + (ROLE == kOutput ? c : c + 1)) * a.Dk;

  // Per row token gate values, and the row scale of the inter-chunk term.
  if (tid < kTile) {
    const int64_t t = tok0 + r0 + tid;
    const bool ok = tid < nrows;
    const float bt = ok ? a.bcum[t] : 0.f;
    sRowB[tid] = bt;
    if constexpr (kRowsAreQueries) {
      const float mt = ok ? a.mtok[t] : 0.f;
      const float inv = (ROLE == kDq && ok) ? a.inv_den[t] : 1.f;
      sRowM[tid] = mt;
      sRowD[tid] = inv;
      sRowS[tid] = ok ? __expf(bt + m_in - mt) * inv * (ROLE == kOutput ? a.scale : 1.f) : 0.f;
    } else {
      const float io = ok ? a.iota[t] : -INFINITY;
      sRowM[tid] = io;
      // e^{a_sigma - m^_{c+1}} (kDk: / scale, which its epilogue multiplies back)
      sRowS[tid] = ok ? __expf(g - bt + io - m_out) / (ROLE == kDk ? a.scale : 1.f) : 0.f;
    }
  }

  float acc[NTO][4];
  zero(acc);

  // ---- inter-chunk term: acc = X (rows x D) * state slice (D x out) ----------------------------------
  // Output/Dv: state slice rows = contraction over Dk, cols = out over Dv: stored [k][n] (n-major).
  // Dq/Dk:     contraction over Dv, out over Dk: the slice is read as [n = dk][k = dv] (k-major).
  float nq = 0.f;  // kOutput: this thread's partial n^_c . q_t for row tid (tid < 64)
  const int Dst = kScoreOverDk ? a.Dk : a.Dv;  // contraction dim of the inter term (= score dim)
  for (int k0 = 0; k0 < Dst; k0 += kTile) {
    const int kc = min(kTile, Dst - k0);
    load_tile_async<T>(sX, gX + r0 * tX.stride[2] + k0, tX.stride[2], nrows, kc);
    hw::cp_async_commit();
    // the state slice as kInterParts tiles of T (sZ, sY, sP are free during the inter-chunk term)
    if constexpr (kOutIsDk) {
      load_tile_f32_split<T, kInterParts>(sParts, state + static_cast<int64_t>(o0) * a.Dv + k0, a.Dv, ocols, kc);
    } else {
      load_tile_f32_split<T, kInterParts, kOut, kLdO>(sParts, state + static_cast<int64_t>(k0) * a.Dv + o0, a.Dv, kc, ocols);
    }
    if (ROLE == kOutput && tid < kTile) sVec[tid] = tid < kc ? nvec[k0 + tid] : 0.f;
    hw::cp_async_wait<0>();
    __syncthreads();
#pragma unroll
    for (int p = 0; p < kInterParts; ++p)
      warp_gemm_ld<T, true, kOutIsDk, NTO>(acc, sX, kLd, warp * 16, sParts[p], kLdO, kTile);
    if (ROLE == kOutput && tid < kTile)
      for (int d = 0; d < kc; ++d) nq += to_float<T>(sX[tid * kLd + d]) * sVec[d];
    __syncthreads();
  }
  if constexpr (ROLE == kDk) {  // + dn^_{c+1} on every row, before the row scale
    if (tid < kTile) sVec[tid] = tid < ocols ? nvec[o0 + tid] : 0.f;
    __syncthreads();
#pragma unroll
    for (int nt = 0; nt < NTO; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nt][e] += sVec[acc_col(nt, e)];
  }
#pragma unroll
  for (int nt = 0; nt < NTO; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[nt][e] *= sRowS[acc_row(warp, e)];
  if (ROLE == kOutput && tid < kTile) sNq[tid] = nq * sRowS[tid];

  float gdot_inter[2] = {0.f, 0.f}, gdot_intra[2] = {0.f, 0.f};  // rows acc_row(warp, 0) and + 8
  const tfla_tensor& tR = ROLE == kDq ? a.q : a.k;               // the rows' own q (kDq) or k (kDk)
  const bool intra_dots = kGateDots && oc == 0;
  if constexpr (kGateDots) {
    __syncthreads();  // sP held a state part
    load_tile_async<T>(sP, static_cast<const T*>(tR.data) + off4(tR, b, h, r0, o0), tR.stride[2], nrows, ocols);
    hw::cp_async_commit();
    hw::cp_async_wait<0>();
    __syncthreads();
#pragma unroll
    for (int nt = 0; nt < NTO; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) gdot_inter[e >> 1] += acc[nt][e] * to_float<T>(sP[acc_row(warp, e) * kLd + acc_col(nt, e)]);
    __syncthreads();
  }

  // ---- intra-chunk term: loop over the partner tiles of this chunk -----------------------------------
  float rowsum[2] = {0.f, 0.f};  // kOutput: sum_sigma P (q^.k) for rows acc_row(warp, 0) and + 8
  const int p_first = kRowsAreQueries ? cstart / kTile : rt;
  const int p_last = kRowsAreQueries ? rt : (cend - 1) / kTile;
  for (int pt = p_first; pt <= p_last; ++pt) {
    const int p0 = pt * kTile, npar = min(kTile, a.S - p0);
    if (tid < kTile) {
      const int64_t t = tok0 + p0 + tid;
      const bool ok = tid < npar;
      sParB[tid] = ok ? a.bcum[t] : 0.f;
      if constexpr (kRowsAreQueries) {
        sParX[tid] = ok ? a.iota[t] : -INFINITY;
      } else {
        sParX[tid] = ok ? a.mtok[t] : 0.f;
        sParD[tid] = ok ? a.inv_den[t] : 0.f;
      }
    }
    // score S = X Z^T over the score dim, slice by slice
    float sc[8][4];
    zero(sc);
    for (int k0 = 0; k0 < Dsc; k0 += kTile) {
      const int kc = min(kTile, Dsc - k0);
      load_tile_async<T>(sX, gX + r0 * tX.stride[2] + k0, tX.stride[2], nrows, kc);
      load_tile_async<T>(sZ, gZ + p0 * tZ.stride[2] + k0, tZ.stride[2], npar, kc);
      hw::cp_async_commit();
      hw::cp_async_wait<0>();
      __syncthreads();
      warp_gemm<T, true, true>(sc, sX, warp * 16, sZ, kTile);
      __syncthreads();
    }
    // kGateDots, Dk tile 0: the q.k score of the same pairs, for A = dP * P
    float s2[8][4];
    zero(s2);
    if (intra_dots) {
      const tfla_tensor& tQ = ROLE == kDq ? a.q : a.k;  // rows' operand
      const tfla_tensor& tK = ROLE == kDq ? a.k : a.q;  // partners' operand
      const T* gQ = static_cast<const T*>(tQ.data) + off4(tQ, b, h, 0, 0);
      const T* gK = static_cast<const T*>(tK.data) + off4(tK, b, h, 0, 0);
      for (int k0 = 0; k0 < a.Dk; k0 += kTile) {
        const int kc = min(kTile, a.Dk - k0);
        load_tile_async<T>(sX, gQ + r0 * tQ.stride[2] + k0, tQ.stride[2], nrows, kc);
        load_tile_async<T>(sZ, gK + p0 * tK.stride[2] + k0, tK.stride[2], npar, kc);
        hw::cp_async_commit();
        hw::cp_async_wait<0>();
        __syncthreads();
        warp_gemm<T, true, true>(s2, sX, warp * 16, sZ, kTile);
        __syncthreads();
      }
    }
    // value tile load overlaps the weighting below
    load_tile_async<T, kOut, kLdO>(sY, gY + p0 * tY.stride[2], tY.stride[2], npar, ocols);
    hw::cp_async_commit();
    // weight and causal mask: P = S * e^{b_tau - b_sigma + iota_sigma - m_tau} (* scale, / (den + eps))
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = acc_row(warp, e), p = acc_col(nt, e);
        const int tr = r0 + r, tp = p0 + p;
        float w = 0.f;
        if constexpr (kRowsAreQueries) {
          if (tp <= tr && r < nrows && p < npar)
            w = __expf(sRowB[r] - sParB[p] + sParX[p] - sRowM[r]) * sRowD[r] * (ROLE == kOutput ? a.scale : 1.f);
        } else {
          if (tp >= tr && r < nrows && p < npar && tp < cend)
            w = __expf(sParB[p] - sRowB[r] + sRowM[r] - sParX[p]) * sParD[p] * (ROLE == kDv ? a.scale : 1.f);
        }
        const float pv = sc[nt][e] * w;
        if (ROLE == kOutput) rowsum[e >> 1] += pv;
        if (kGateDots && intra_dots) gdot_intra[e >> 1] += pv * s2[nt][e] * a.scale;  // A = dP P, fp32
        sP[r * kLd + p] = from_float<T>(pv);
      }
    hw::cp_async_wait<0>();
    __syncthreads();
    // acc(rows x out) += P (rows x partners) * Y (partners x out)
    warp_gemm_ld<T, true, false, NTO>(acc, sP, kLd, warp * 16, sY, kLdO, kTile);
    __syncthreads();
  }

  // ---- epilogue ------------------------------------------------------------------------------------
  const tfla_tensor& tO = ROLE == kOutput ? a.h : ROLE == kDq ? a.dq : ROLE == kDv ? a.dv : a.dk;
  T* gO = tO.data ? static_cast<T*>(tO.data) + off4(tO, b, h, r0, o0) : nullptr;
  if constexpr (ROLE == kOutput) {
    // den = max(|n.q|, e^{-m}) (exp) or max(|n.q|, 1) (sig); h = num / (den + eps)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      rowsum[i] += __shfl_xor_sync(0xffffffffu, rowsum[i], 1);
      rowsum[i] += __shfl_xor_sync(0xffffffffu, rowsum[i], 2);
    }
    if ((tid & 3) == 0)
      for (int i = 0; i < 2; ++i) {
        const int r = acc_row(warp, 2 * i);
        const float nqt = rowsum[i] + sNq[r];
        float den = 1.f, inv = 1.f;
        if (a.variant == TFLA_VARIANT_EXP) {
          den = fminf(fmaxf(fabsf(nqt), __expf(-sRowM[r])), FLT_MAX);  // finite even where e^{-m} overflows
          inv = 1.f / (den + a.eps);
        } else if (a.normalize) {
          den = fmaxf(fabsf(nqt), 1.f);
          inv = 1.f / (den + a.eps);
        }
        sRowD[r] = inv;
        if (oc == 0 && r < nrows && a.den_token.data)
          static_cast<float*>(a.den_token.data)[off3(a.den_token, b, h, r0 + r)] = den;
      }
    __syncthreads();
    store_acc<T, NTO>(gO, tO.stride[2], acc, warp, nrows, ocols, sRowD);
  } else {
    // dq and dk stage the same weighted dP (bit for bit up to the mma accumulation order), so that its
    // bf16 rounding cancels in d phi = revcumsum(q.dq - k.dk); the scale of q^ is applied here instead.
    // dk's inter-chunk term carries no scale, so its row scale was divided by it (sRowS, kDk).
    const float out_scale = (ROLE == kDq || ROLE == kDk) ? a.scale : 1.f;
#pragma unroll
    for (int nt = 0; nt < NTO; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nt][e] *= out_scale;
    if (tO.data) store_acc<T, NTO>(gO, tO.stride[2], acc, warp, nrows, ocols, nullptr);  // dq/dk may be wanted only for the gate grads
    if constexpr (kGateDots) {
      // per-token partial q.dq / k.dk for this Dk tile (inter part, plus the intra part on tile 0)
      float* dst = ROLE == kDq ? a.qdq : a.kdk;
      const int n_dk_tiles = gridDim.x;
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        float d = gdot_inter[i] * out_scale + gdot_intra[i];
        d += __shfl_xor_sync(0xffffffffu, d, 1);
        d += __shfl_xor_sync(0xffffffffu, d, 2);
        const int r = acc_row(warp, 2 * i);
        if ((tid & 3) == 0 && r < nrows) dst[(tok0 + r0 + r) * n_dk_tiles + oc] = d;
      }
    }
  }
}

}  // namespace tfla::cuda
