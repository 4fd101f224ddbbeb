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
// Per block: 4 warps, a 64 x kOut fp32 accumulator (warp w owns rows 16w..16w+15); the block's 64 rows of
// the score operand stay in shared memory over the whole contraction dim (Dk or Dv <= 512).
// Pipeline of one partner tile (v2, narrated at the loop): score operand slices double-buffered with
// cp.async, score GEMM, weight + causal mask in registers, P kept in registers as the A operand of the
// value GEMM (16-bit inputs), value tile loaded while the scores are computed.
// Grid: (output-column tiles, row tiles over the whole sequence, B*H).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cfloat>

#include "cuda/args.cuh"
#include "cuda/tiles.cuh"

namespace tfla::cuda {

enum Role : int { kOutput = 0, kDq = 1, kDv = 2, kDk = 3 };

// Output columns per block of a role, and the dynamic shared memory its kernel needs for a score
// contraction dim `dsc` (Dk for h and dv, Dv for dq and dk).
__host__ __device__ constexpr int chunk_tiles_out_cols(int role) { return role == kOutput || role == kDv ? 128 : 64; }
__host__ __device__ inline int chunk_tiles_x_ld(int dsc) { return cdiv(dsc, kTile) * kTile + 8; }
template <class T>
inline size_t chunk_tiles_smem_bytes(int role, int dsc) {
  return (static_cast<size_t>(kTile) * chunk_tiles_x_ld(dsc) + 3 * kTile * kLd + kTile * (chunk_tiles_out_cols(role) + 8)) *
             sizeof(T) + 11 * kTile * sizeof(float);
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
  // 16-bit inputs keep the weighted scores P in registers: the score accumulator of m16n8k16 has the
  // layout of the A operand of the next product (v1 staged P through shared memory between two barriers).
  // fp32 inputs (FMA fragments, tiles.cuh) stage P in shared memory.
  constexpr bool kRegP = sizeof(T) == 2;
  // dq and dk multiply P by their values in two parts (hi + lo): with one bf16 rounding of P the largest
  // dq element missed the accuracy rule by 1.29x (bench/results/2026-11-25-h100-v1.3/python: one ulp
  // off at |dq| ~ 80); two parts make the product ~fp32 and cost one more mma per value step.
  constexpr int kPParts = (kRegP && (ROLE == kDq || ROLE == kDk)) ? 2 : 1;

  const int Dout = kOutIsDk ? a.Dk : a.Dv, Dsc = kScoreOverDk ? a.Dk : a.Dv;
  const int ldx = chunk_tiles_x_ld(Dsc), nks = cdiv(Dsc, kTile);

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sX = reinterpret_cast<T*>(smem_raw);   // the block's rows, whole contraction dim [row token][Dsc]     (ldx)
  T* const sZ0 = sX + kTile * ldx;         // ring of 2: partner score operand slices (kLd); slot s at sZ(s)
  auto sZ = [&](int s) { return sZ0 + s * (kTile * kLd); };  // arithmetic, not a pointer array (no stack)
  T* sY = sZ0 + 2 * kTile * kLd;            // partner value tile [partner token][out col] or state slice (kLdO)
  T* sP = sY + kTile * kLdO;                // weighted scores (fp32 inputs) / state part / rows' own q or k (kLd)
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
  // the gate gradients, which need ~fp32 (v1.1: 2 parts left 8 grid cases failing d f). The forward's
  // states arrive already in T (chunk_states stores them so) and are loaded as they are.
  constexpr int kInterParts = (ROLE == kDq || ROLE == kDk) ? kStateParts<T> : 1;
  T* const sParts[3] = {kOutIsDk ? sZ(0) : sY, sZ(1), sP};
  constexpr int kLdParts = kOutIsDk ? kLd : kLdO;
  // dq / dk blocks also produce the per-token gate-gradient dots (q.dq, k.dk) in fp32: the inter-chunk part
  // from the fp32 accumulator over this Dk tile, and (Dk tile 0 only) the intra-chunk part as the row sums
  // of A = dP * P in fp32 -- not from the bf16-rounded dP that the dq / dk products use, so the gate
  // gradients keep fp32 accuracy (as an autograd implementation's do) and q.dq - k.dk telescopes.
  constexpr bool kGateDots = ROLE == kDq || ROLE == kDk;

  const int oc = blockIdx.x, rt = blockIdx.y, bh = blockIdx.z, b = bh / a.H, h = bh % a.H;
  const int warp = threadIdx.x >> 5, tid = threadIdx.x;
  const int r0 = rt * kTile, nrows = min(kTile, a.S - r0);
  const int c = r0 / a.L, cstart = c * a.L, cend = min(a.S, cstart + a.L);
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
  // State: C^_c for query rows, dC^_{c+1} for key rows; stored [Dk][Dv] (T for kOutput, else fp32).
  const int64_t state_off = (static_cast<int64_t>(bh) * (a.NC + 1) + (kRowsAreQueries ? c : c + 1)) * a.Dk * a.Dv;
  const float* state = (kRowsAreQueries ? a.cstates : a.dcstates) + state_off;
  const T* state_t = reinterpret_cast<const T*>(a.cstates) + state_off;
  const float* nvec = (ROLE == kOutput ? a.nstates : a.dnstates) +
                      (static_cast<int64_t>(bh) * (a.NC + 1) + (ROLE == kOutput ? c : c + 1)) * a.Dk;

  // The block's rows over the whole contraction dim, once (v1 reloaded them for every partner tile).
  for (int k0 = 0; k0 < Dsc; k0 += kTile)
    load_tile_async_ld<T>(sX + k0, ldx, gX + r0 * tX.stride[2] + k0, tX.stride[2], nrows, min(kTile, Dsc - k0));
  hw::cp_async_commit();

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
      sRowS[tid] = ok ? expf(bt + m_in - mt) * inv * (ROLE == kOutput ? a.scale : 1.f) : 0.f;
    } else {
      const float io = ok ? a.iota[t] : -INFINITY;
      sRowM[tid] = io;
      // e^{a_sigma - m^_{c+1}} (kDk: / scale, which its epilogue multiplies back)
      sRowS[tid] = ok ? state_weight(a.variant, g, bt, io, m_out) / (ROLE == kDk ? a.scale : 1.f) : 0.f;
    }
  }

  float acc[NTO][4];
  zero(acc);

  // ---- inter-chunk term: acc = X (rows x D) * state slice (D x out) ----------------------------------
  // Output/Dv: state slice rows = contraction over Dk, cols = out over Dv: stored [k][n] (n-major).
  // Dq/Dk:     contraction over Dv, out over Dk: the slice is read as [n = dk][k = dv] (k-major).
  float nq = 0.f;  // kOutput: this thread's partial n^_c . q_t for row tid (tid < 64)
  for (int k0 = 0; k0 < Dsc; k0 += kTile) {
    const int kc = min(kTile, Dsc - k0);
    if constexpr (ROLE == kOutput) {
      load_tile_async<T, kOut, kLdO>(sY, state_t + static_cast<int64_t>(k0) * a.Dv + o0, a.Dv, kc, ocols);
      hw::cp_async_commit();
    } else if constexpr (kOutIsDk) {
      load_tile_f32_split<T, kInterParts>(sParts, state + static_cast<int64_t>(o0) * a.Dv + k0, a.Dv, ocols, kc);
    } else {
      load_tile_f32_split<T, kInterParts, kOut, kLdO>(sParts, state + static_cast<int64_t>(k0) * a.Dv + o0, a.Dv, kc, ocols);
    }
    if (ROLE == kOutput && tid < kTile) sVec[tid] = tid < kc ? nvec[k0 + tid] : 0.f;
    hw::cp_async_wait<0>();
    __syncthreads();
#pragma unroll
    for (int p = 0; p < kInterParts; ++p)
      warp_gemm_ld<T, true, kOutIsDk, NTO>(acc, sX + k0, ldx, warp * 16, sParts[p], kLdParts, kTile);
    if (ROLE == kOutput && tid < kTile)
      for (int d = 0; d < kc; ++d) nq += to_float<T>(sX[tid * ldx + k0 + d]) * sVec[d];
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
  // Schedule per partner tile (cp.async groups complete in order; one group per issue):
  //   for each 64-wide slice ks of the score dim: issue slice ks+1 (or, after the last, the value tile)
  //     | wait for slice ks | barrier | S += X[:, ks] Z_ks^T | barrier
  //   issue slice 0 of the next partner tile | weight + mask S into P (registers) | wait for the value
  //   tile | barrier | acc += P Y | barrier
  // so every load but the first overlaps a tensor-core product.
  float rowsum[2] = {0.f, 0.f};  // kOutput: sum_sigma P (q^.k) for rows acc_row(warp, 0) and + 8
  const int p_first = kRowsAreQueries ? cstart / kTile : rt;
  const int p_last = kRowsAreQueries ? rt : (cend - 1) / kTile;
  auto issue_z = [&](int pt, int ks, T* dst) {
    const int p0 = pt * kTile, k0 = ks * kTile;
    load_tile_async<T>(dst, gZ + p0 * tZ.stride[2] + k0, tZ.stride[2], min(kTile, a.S - p0), min(kTile, Dsc - k0));
  };
  int slot = 0;  // ring slot of the next score-operand slice
  issue_z(p_first, 0, sZ(0));
  hw::cp_async_commit();
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
    for (int ks = 0; ks < nks; ++ks) {
      if (ks + 1 < nks) {
        issue_z(pt, ks + 1, sZ(slot ^ 1));
      } else {
        load_tile_async<T, kOut, kLdO>(sY, gY + p0 * tY.stride[2], tY.stride[2], npar, ocols);
      }
      hw::cp_async_commit();
      hw::cp_async_wait<1>();
      __syncthreads();
      warp_gemm_ld<T, true, true, 8>(sc, sX + ks * kTile, ldx, warp * 16, sZ(slot), kLd, kTile);
      __syncthreads();
      slot ^= 1;
    }
    // kGateDots, Dk tile 0: the q.k score of the same pairs, for A = dP * P (both ring slots are free here;
    // this path waits for everything, the value tile included)
    float s2[8][4];
    zero(s2);
    if (intra_dots) {
      const tfla_tensor& tQ = ROLE == kDq ? a.q : a.k;  // rows' operand
      const tfla_tensor& tK = ROLE == kDq ? a.k : a.q;  // partners' operand
      const T* gQ = static_cast<const T*>(tQ.data) + off4(tQ, b, h, 0, 0);
      const T* gK = static_cast<const T*>(tK.data) + off4(tK, b, h, 0, 0);
      for (int k0 = 0; k0 < a.Dk; k0 += kTile) {
        const int kc = min(kTile, a.Dk - k0);
        load_tile_async<T>(sZ(0), gQ + r0 * tQ.stride[2] + k0, tQ.stride[2], nrows, kc);
        load_tile_async<T>(sZ(1), gK + p0 * tK.stride[2] + k0, tK.stride[2], npar, kc);
        hw::cp_async_commit();
        hw::cp_async_wait<0>();
        __syncthreads();
        warp_gemm<T, true, true>(s2, sZ(0), warp * 16, sZ(1), kTile);
        __syncthreads();
      }
    }
    if (pt < p_last) issue_z(pt + 1, 0, sZ(slot));
    hw::cp_async_commit();  // possibly empty: keeps the group count uniform
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
            w = decay_exp<T>(sRowB[r] - sParB[p] + sParX[p] - sRowM[r]) * sRowD[r] * (ROLE == kOutput ? a.scale : 1.f);
        } else {
          if (tp >= tr && r < nrows && p < npar && tp < cend)
            w = decay_exp<T>(sParB[p] - sRowB[r] + sRowM[r] - sParX[p]) * sParD[p] * (ROLE == kDv ? a.scale : 1.f);
        }
        const float pv = sc[nt][e] * w;
        if (ROLE == kOutput) rowsum[e >> 1] += pv;
        if (kGateDots && intra_dots) gdot_intra[e >> 1] += pv * s2[nt][e] * a.scale;  // A = dP P, fp32
        sc[nt][e] = pv;
        if constexpr (!kRegP) sP[r * kLd + p] = from_float<T>(pv);
      }
    hw::cp_async_wait<1>();
    __syncthreads();
    // acc(rows x out) += P (rows x partners) * Y (partners x out)
    if constexpr (kRegP) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {  // k-step j: partners 16j..16j+15 = score n-tiles 2j, 2j+1
        FragA<T> pa[kPParts];
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          pack2_split<T, kPParts>(&pa[0].r[2 * hf], 4, sc[2 * j + hf][0], sc[2 * j + hf][1]);      // row g
          pack2_split<T, kPParts>(&pa[0].r[2 * hf + 1], 4, sc[2 * j + hf][2], sc[2 * j + hf][3]);  // row g + 8
        }
        mma_parts_over_tiles<T, false>(acc, pa, sY, kLdO, 16 * j);
      }
    } else {
      warp_gemm_ld<T, true, false, NTO>(acc, sP, kLd, warp * 16, sY, kLdO, kTile);
    }
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
          den = fminf(fmaxf(fabsf(nqt), expf(-sRowM[r])), FLT_MAX);  // finite even where e^{-m} overflows
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
