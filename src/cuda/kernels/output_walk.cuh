// output_walk: the forward in one pass with the running state on chip (docs/algorithm.md, "The forward walk").
//
// One block owns one 128-wide slice of Dv of one head and walks a segment of its sequence in 64-token tiles,
// in order. The fp32 state slice C^ (Dk x 128) lives in registers for the whole walk; at each chunk start it
// is copied to shared memory as T, where the chunk's queries read it (h's inter-chunk term), and then decayed
// and updated with the chunk's keys and values. The materialized path (chunk_states -> chunk_tiles) writes
// every chunk's state to memory and reads it back once per 64-row block: at the main shape the states are as
// many bytes as q, k and v together, and chunk_states alone was 0.84 of 3.1 ms (ncu, S = 1024, v2.2).
//
//   per tile j of chunk c (rows = the tile's 64 queries, warp w: rows 16(w%4).., Dv columns 64(w/4)..):
//     h_j   = diag(e^{b + m^_c - m} * scale) Q_j C^_c  +  sum_{partner tiles p of chunk c, p <= j} P_jp V_p
//     C^    = (chunk start: C^ *= e^{g_c + m^_c - m^_{c+1}})  +=  K_j^T diag(w_j) V_j
//   with P = (Q_j K_p^T) * e^{b_tau - b_sigma + iota_sigma - m_tau} * scale, causal, and the denominator from
//   n^_c . q + rowsum(P) as in chunk_tiles' kOutput role (identical arithmetic, so both paths agree).
//
// Sequence segments: a head's walk is sequential, so with few heads (B*H*ceil(Dv/128) < #SMs / 2) the
// sequence is cut into chunk-aligned segments. STATES_ONLY blocks walk each segment from a zero state and
// keep only its end state X_k; segment_start_states_kernel turns those into the true start states
// (C_{k+1} = D_k C_k + X_k, D_k the product of the segment's chunk decays); the output walk then starts each
// segment there. Everything is linear in the state, so this is the same recurrence, re-associated.
//
// Limits (dispatch.cu picks the materialized path otherwise): 16-bit inputs, Dk <= 128 (the state slice is
// <= 2 register units of 16 x 64 per warp), L <= 128 (a chunk's earlier tile is still in the 3-slot ring).
// Configuration and shared memory (195 KB): output_walk_config.hpp.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cfloat>

#include "cuda/args.cuh"
#include "cuda/kernels/output_walk_config.hpp"
#include "cuda/tiles.cuh"

namespace tfla::cuda {

template <class T, bool STATES_ONLY, int PARTS>
__global__ void __launch_bounds__(kWalkThreads, 1) output_walk_kernel(Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  // 195 KB of shared memory per block: more than sm_80 (163 KB) or sm_86/89 (99 KB) can give, so dispatch.cu never
  // picks the walk there; its sm_80 build would only cost compile time (and spilled at the register limit).
  __trap();
#else
  // ---- configuration -------------------------------------------------------------------------------
  static_assert(kWalkTile == kTile, "the walk's tiles are the shared 64-token tiles of tiles.cuh");
  static_assert(kWalkThreads == 2 * kWalkMaxDk, "n^ as two partial sums, one per thread");
  constexpr int kSlotElems = kTile * kWalkLd;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* const sRing = reinterpret_cast<T*>(smem_raw);  // slot s: Q at 3s, K at 3s + 1, V at 3s + 2 (kSlotElems each)
  T* const sC = sRing + kWalkSlots * 3 * kSlotElems;  // C^_c as T, [dk][dv col of this block]; n^ parts in the pad
  T* const sP0 = sC + kWalkMaxDk * kWalkLd;            // P of partner buffer pb: [query row][partner token]
  float* const sTok = reinterpret_cast<float*>(sP0 + kWalkPBufs * kTile * kWalkLdP);  // slot s: b, iota, m, w
  float* const sN = sTok + kWalkSlots * kWalkSlotFloats;  // n^ as two partial sums: [d] + [kWalkMaxDk + d]
  float* const sRowP = sN + 2 * kWalkMaxDk;               // [pb][column half][row]: P's row sums
  auto sQ = [&](int s) { return sRing + (3 * s) * kSlotElems; };
  auto sK = [&](int s) { return sRing + (3 * s + 1) * kSlotElems; };
  auto sV = [&](int s) { return sRing + (3 * s + 2) * kSlotElems; };
  auto sB = [&](int s) { return sTok + s * kWalkSlotFloats; };
  auto sIota = [&](int s) { return sB(s) + kTile; };
  auto sM = [&](int s) { return sB(s) + 2 * kTile; };
  auto sW = [&](int s) { return sB(s) + 3 * kTile; };
  auto sChunk = [&](int s) { return sB(s) + 4 * kTile; };  // [0] = the chunk's decay, [1] = m^_c
  auto sP = [&](int pb) { return sP0 + pb * kTile * kWalkLdP; };
  // bf16 carries n^ in the state copy's pad (hi, lo parts: ~2^-17 relative, within fp32's exponent range); f16's
  // range (65,504) could not hold it, so f16 keeps v3's scalar q . n^ loop over the fp32 partial sums in sN.
  constexpr bool kNInPad = std::is_same_v<T, __nv_bfloat16>;
  // mLSTMsig with normalize = 0 divides by nothing: h needs neither n^ . q nor P's row sums, and n^ itself is only
  // wanted as the final state's n_last (and, for that, the segments' n^). v5.0 computed them for every variant (the
  // n^ update alone is a 32-token loop per thread and tile, ~12% of the walk's instructions; bench/NOTES.md v5.2).
  const bool uses_den = a.variant == TFLA_VARIANT_EXP || a.normalize;
  const bool tracks_n = uses_den || a.n_last.data != nullptr;

  const int dvt = blockIdx.x, bh = blockIdx.y, seg = blockIdx.z, b = bh / a.H, h = bh % a.H;
  const int warp = threadIdx.x >> 5, tid = threadIdx.x, lane = tid & 31, g4 = lane >> 2;
  const int dv0 = dvt * kWalkDv, dvc = min(kWalkDv, a.Dv - dv0);
  const int dk16 = cdiv(a.Dk, 16) * 16;  // contraction length over Dk (zero-filled past Dk)
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  const float* mhat = a.mhat + static_cast<int64_t>(bh) * (a.NC + 1);
  const int tpc = a.L / kTile, n_tiles = cdiv(a.S, kTile);
  const int c_begin = seg * a.seg_chunks, c_end = min(a.NC, c_begin + a.seg_chunks);
  const int j_begin = c_begin * tpc, j_end = min(n_tiles, c_end * tpc);
  const T* gQ = static_cast<const T*>(a.q.data) + off4(a.q, b, h, 0, 0);
  const T* gK = static_cast<const T*>(a.k.data) + off4(a.k, b, h, 0, 0);
  const T* gV = static_cast<const T*>(a.v.data) + off4(a.v, b, h, 0, dv0);
  const int64_t seg_elems = static_cast<int64_t>(a.Dk) * a.Dv + a.Dk;  // one segment state: C^ then n^
  float* const seg_state = a.seg_states ? a.seg_states + (static_cast<int64_t>(bh) * a.nseg + seg) * seg_elems : nullptr;

  // State register units: unit i of warp w is u = w + 8i, rows 16(u/2).. of Dk, columns 64(u%2).. of the slice.
  float st[2][8][4];
  bool unit_ok[2];
  int unit_row[2], unit_col[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int u = warp + 8 * i;
    unit_row[i] = 16 * (u >> 1);
    unit_col[i] = 64 * (u & 1);
    unit_ok[i] = unit_row[i] < a.Dk && unit_col[i] < dvc;
  }

  // ---- initial state: zero (STATES_ONLY), c0 / n0 (one segment), or the segment's start state ---------
  const bool from_ws = !STATES_ONLY && a.nseg > 1;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = unit_row[i] + acc_row(0, e), cl = unit_col[i] + acc_col(nt, e);
        float x = 0.f;
        if (!STATES_ONLY && unit_ok[i] && r < a.Dk && cl < dvc) {
          if (from_ws) x = seg_state[static_cast<int64_t>(r) * a.Dv + dv0 + cl];
          else if (a.c0.data) x = static_cast<const float*>(a.c0.data)[off4(a.c0, b, h, r, dv0 + cl)];
        }
        st[i][nt][e] = x;
      }
  // n^ element tid % 128, as two partial sums (threads tid and tid + 128 each sum half of every tile's tokens: a
  // 64-token loop on 4 warps made the other 4 wait at the next barrier); the initial value sits in the first.
  float n = 0.f;
  if (!STATES_ONLY && tid < a.Dk) {
    if (from_ws) n = seg_state[static_cast<int64_t>(a.Dk) * a.Dv + tid];
    else if (a.n0.data) n = static_cast<const float*>(a.n0.data)[off3(a.n0, b, h, tid)];
  }

  // Queue tile j's loads into its ring slot, and its per-token gate values (threads 0..63).
  auto issue = [&](int j) {
    const int s = (j - j_begin) % kWalkSlots, t0 = j * kTile, ntok = min(kTile, a.S - t0), c = t0 / a.L;
    if constexpr (!STATES_ONLY)
      load_tile_async_ld<T, 128, kWalkThreads>(sQ(s), kWalkLd, gQ + t0 * a.q.stride[2], a.q.stride[2], ntok, a.Dk);
    load_tile_async_ld<T, 128, kWalkThreads>(sK(s), kWalkLd, gK + t0 * a.k.stride[2], a.k.stride[2], ntok, a.Dk);
    load_tile_async_ld<T, 128, kWalkThreads>(sV(s), kWalkLd, gV + t0 * a.v.stride[2], a.v.stride[2], ntok, dvc);
    // gate values: thread tid copies token tid % 64 of array tid / 64 (zero past S: weight 0; the causal mask
    // keeps those partners out of P). Copied, not loaded: a load here stalled the issuing warps ~1 us per tile.
    {
      static_assert(kWalkThreads == 4 * kTile, "one gate value per thread");
      const int arr = tid / kTile, e = tid % kTile;
      const float* src = arr == 0 ? a.bcum : arr == 1 ? a.iota : arr == 2 ? a.mtok : a.wstate;
      const bool ok = e < ntok;
      hw::cp_async_4(sB(s) + tid, src + tok0 + t0 + (ok ? e : 0), ok ? 4 : 0);
      if (tid < 2) hw::cp_async_4(sChunk(s) + tid, tid == 0 ? a.chunk_decay + static_cast<int64_t>(bh) * a.NC + c : mhat + c, 4);
    }
  };

  // ---- the walk ------------------------------------------------------------------------------------
  // Per tile: wait for tile j | barrier (tile j visible; everyone is done with tile j - 2's slot) | queue
  // tile j + 1 into that slot | (chunk start: C^ -> shared, decay, barrier) | h of tile j | state update.
  // One cp.async group in flight: tile j + 1 loads while tile j computes.
  issue(j_begin);
  hw::cp_async_commit();
  for (int j = j_begin; j < j_end; ++j) {
    const int s = (j - j_begin) % kWalkSlots, t0 = j * kTile, c = t0 / a.L, ntok = min(kTile, a.S - t0);
    hw::cp_async_wait<0>();
    __syncthreads();
    if (j + 1 < j_end) issue(j + 1);
    hw::cp_async_commit();

    if (j % tpc == 0) {  // chunk start: st holds C^_c
      if constexpr (!STATES_ONLY) {
#pragma unroll
        for (int i = 0; i < 2; ++i)
          if (unit_ok[i])
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
              for (int e = 0; e < 4; e += 2) {
                const int r = unit_row[i] + acc_row(0, e), cl = unit_col[i] + acc_col(nt, e);
                *reinterpret_cast<uint32_t*>(sC + r * kWalkLd + cl) = pack2<T>(st[i][nt][e], st[i][nt][e + 1]);
              }
        if constexpr (kNInPad) {
          // partial sum tid / 128 of n^[tid % 128] as (hi, lo) at columns kWalkNCol + 2 (tid / 128) + {0, 1}; the
          // half-0 threads zero columns +4.. (the n-tile is 8 wide)
          const int d = tid % kWalkMaxDk, half = tid / kWalkMaxDk;
          const float nv = d < a.Dk ? n : 0.f;
          const float hi = to_float<T>(from_float<T>(nv));
          uint32_t* row = reinterpret_cast<uint32_t*>(sC + d * kWalkLd + kWalkNCol);
          row[half] = pack2<T>(hi, nv - hi);
          row[2 + half] = 0u;
        } else {
          sN[tid] = (tid % kWalkMaxDk) < a.Dk ? n : 0.f;
        }
      }
      const float decay = sChunk(s)[0];  // e^{g_c + m^_c - m^_{c+1}} <= 1 (prepare_gates)
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) st[i][nt][e] *= decay;
      n *= decay;
      if constexpr (!STATES_ONLY) __syncthreads();  // the state copy is visible
    }

    // ---- h of tile j (warp: 16 query rows x 64 columns; the row group's two warps split the scores) --------
    if constexpr (!STATES_ONLY) {
      const int rg = warp & 3, ch = warp >> 2, rw = 16 * rg, cw = 64 * ch;
      const bool has_cols = cw < dvc;  // both warps of a row group form scores; only these form h
      const T* q = sQ(s);
      const float m_in = sChunk(s)[1];
      // this thread's rows: rw + g4 (e = 0, 1) and rw + g4 + 8 (e = 2, 3)
      float rscale[2], rb[2], rm[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r = rw + g4 + 8 * i;
        rb[i] = sB(s)[r];
        rm[i] = sM(s)[r];
        rscale[i] = r < ntok ? expf(rb[i] + m_in - rm[i]) * a.scale : 0.f;
      }
      float acc[8][4], nq[2] = {0.f, 0.f};
      zero(acc);
      if (has_cols) {
        // Q C^ over Dk, and (bf16) q . n^ from the pad columns as a ninth n-tile
        float accn[1][4];
        zero(accn);
#pragma unroll 1
        for (int k0 = 0; k0 < dk16; k0 += 16) {
          FragA<T> fa[1];
          load_a<T, true>(fa[0], q, kWalkLd, rw, k0);
          mma_parts_over_tiles<T, false, 8, 1>(acc, fa, sC + cw, kWalkLd, k0);
          if (kNInPad && uses_den) {
            FragB<T> fb;
            load_b<T, false>(fb, sC + kWalkNCol, kWalkLd, 0, k0);
            mma<T>(accn[0], fa[0], fb);
          }
        }
#pragma unroll
        for (int i = 0; i < 2 && uses_den; ++i) {
          float x;
          if constexpr (kNInPad) {
            x = accn[0][2 * i] + accn[0][2 * i + 1];  // lanes 4g, 4g + 1: the two partial sums' (hi, lo) products
          } else {
            // n^_c . q_r: lanes 4g..4g+3 split Dk in 8-element vectors
            const int r = rw + g4 + 8 * i;
            x = 0.f;
            for (int d0 = 8 * (lane & 3); d0 < a.Dk; d0 += 32) {
              const uint4 raw = *reinterpret_cast<const uint4*>(q + r * kWalkLd + d0);
              const uint32_t w4[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
              for (int k = 0; k < 4; ++k) {
                const float2 f = unpack2<T>(w4[k]);
                x += f.x * (sN[d0 + 2 * k] + sN[kWalkMaxDk + d0 + 2 * k]) +
                     f.y * (sN[d0 + 2 * k + 1] + sN[kWalkMaxDk + d0 + 2 * k + 1]);
              }
            }
          }
          x += __shfl_xor_sync(0xffffffffu, x, 1);
          x += __shfl_xor_sync(0xffffffffu, x, 2);
          nq[i] = x * rscale[i];
        }
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[nt][e] *= rscale[e >> 1];
      }

      // intra-chunk: partner tiles of chunk c up to j (L <= 128: at most tile j - 1, still in the ring). Per partner:
      // this warp's 32 score columns -> weights -> P half and its row sums to shared memory | pair barrier (named
      // barrier 1 + rg: the row group's two warps) | P V over all 64 partners.
      float rowsum[2] = {0.f, 0.f};
      for (int p = max(c * tpc, j_begin); p <= j; ++p) {
        const int ps = (p - j_begin) % kWalkSlots, p0 = p * kTile, pb = p % kWalkPBufs, col0 = kWalkScoreCols * ch;
        float sc[kWalkScoreCols / 8][4];
        zero(sc);
        gemm_parts<T, true, true, kWalkScoreCols / 8, 1, 1>(sc, q, 0, kWalkLd, rw, sK(ps) + col0 * kWalkLd, 0, kWalkLd,
                                                             dk16, kWalkScoreCols);
        // P = S * e^{((b_tau - b_sigma) + iota_sigma) - m_tau} * scale (the materialized path's order: b_tau - b_sigma is
        // exact for nearby tokens). The causal mask is a select on every element (a branch on the diagonal tile cost
        // 12 bytes of spills at the 255-register limit); earlier partner tiles are full. Rows past S (zero-filled,
        // never stored) may get any value; they stay in their own rows of P V.
        const float* pbc = sB(ps);
        const float* pic = sIota(ps);
        float rs[2] = {0.f, 0.f};
        T* const sp = sP(pb);
#pragma unroll
        for (int nt = 0; nt < kWalkScoreCols / 8; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int r = rw + g4 + 8 * (e >> 1), pc = col0 + acc_col(nt, e);
            float w = decay_exp<T>(((rb[e >> 1] - pbc[pc]) + pic[pc]) - rm[e >> 1]) * a.scale;
            if (p0 + pc > t0 + r) w = 0.f;
            sc[nt][e] *= w;
            rs[e >> 1] += sc[nt][e];
          }
#pragma unroll
          for (int i = 0; i < 2; ++i)
            *reinterpret_cast<uint32_t*>(sp + (rw + g4 + 8 * i) * kWalkLdP + col0 + acc_col(nt, 0)) =
                pack2<T>(sc[nt][2 * i], sc[nt][2 * i + 1]);
        }
#pragma unroll
        for (int i = 0; i < 2 && uses_den; ++i) {
          rs[i] += __shfl_xor_sync(0xffffffffu, rs[i], 1);
          rs[i] += __shfl_xor_sync(0xffffffffu, rs[i], 2);
          if ((lane & 3) == 0) sRowP[(pb * 2 + ch) * kTile + rw + g4 + 8 * i] = rs[i];
        }
        hw::named_barrier_sync(1 + rg, 64);
#pragma unroll
        for (int i = 0; i < 2 && uses_den; ++i)  // both halves in the same order in both warps
          rowsum[i] += sRowP[(pb * 2) * kTile + rw + g4 + 8 * i] + sRowP[(pb * 2 + 1) * kTile + rw + g4 + 8 * i];
        if (has_cols) gemm_parts<T, true, false, 8, 1, 1>(acc, sp, 0, kWalkLdP, rw, sV(ps) + cw, 0, kWalkLd, kTile, kTile);
      }

      // epilogue: den = max(|n.q|, e^{-m}) (exp) or max(|n.q|, 1) (sig, normalized); h = num / (den + eps)
      if (has_cols) {
        float inv[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const float den = output_denominator(a, rowsum[i] + nq[i], rm[i], &inv[i]);
          const int r = rw + g4 + 8 * i;
          if (dvt == 0 && cw == 0 && (lane & 3) == 0 && r < ntok && a.den_token.data)
            static_cast<float*>(a.den_token.data)[off3(a.den_token, b, h, t0 + r)] = den;
        }
        T* gH = static_cast<T*>(a.h.data) + off4(a.h, b, h, t0 + rw, dv0 + cw);
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
          for (int e = 0; e < 4; e += 2) {
            const int r = g4 + 8 * (e >> 1), cl = acc_col(nt, e);
            if (rw + r < ntok && cw + cl < dvc)
              *reinterpret_cast<uint32_t*>(gH + r * a.h.stride[2] + cl) =
                  pack2<T>(acc[nt][e] * inv[e >> 1], acc[nt][e + 1] * inv[e >> 1]);
          }
      }
    }

    // ---- state update: C^ += K_j^T diag(w_j) V_j (unit: 16 Dk rows x 64 columns) ---------------------
    const float* w = sW(s);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      if (!unit_ok[i]) continue;
#pragma unroll 1
      for (int k0 = 0; k0 < kTile; k0 += 16) {
        // parts one after another (PARTS > 1: the final-state variant), one A fragment live at a time (the raw
        // fragment is reloaded per part: at the 255-register limit, holding it spilled on sm_80)
#pragma unroll 1
        for (int pp = 0; pp < PARTS; ++pp) {
          FragA<T> ap[1];
          {
            FragA<T> araw;
            load_a<T, false>(araw, sK(s), kWalkLd, unit_row[i], k0);
            scale_a_cols_part<T, PARTS>(ap[0], araw, w, k0, pp);
          }
          mma_parts_over_tiles<T, false, 8, 1>(st[i], ap, sV(s) + unit_col[i], kWalkLd, k0);
        }
      }
    }
    {
      const int d = tid % kWalkMaxDk, r0 = (tid / kWalkMaxDk) * (kTile / 2);
      if (tracks_n && d < a.Dk) {
        const T* kk = sK(s) + d;
        float x = 0.f;
#pragma unroll 8
        for (int r = r0; r < r0 + kTile / 2; ++r) x += w[r] * to_float<T>(kk[r * kWalkLd]);  // zero weight past the end
        n += x;
      }
    }
  }

  // ---- end of the segment --------------------------------------------------------------------------
  // STATES_ONLY: the segment's own contribution X_k (fp32) for segment_start_states_kernel.
  // Output walk, last segment: the final state, if wanted (c_last; n_last from the blocks of Dv slice 0).
  float* dst = nullptr;
  int64_t ld = 0;
  if (STATES_ONLY) {
    dst = seg_state + dv0;
    ld = a.Dv;
  }
  const bool final_out = !STATES_ONLY && seg == gridDim.z - 1;
#pragma unroll
  for (int i = 0; i < 2; ++i)
    if (unit_ok[i])
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = unit_row[i] + acc_row(0, e), cl = unit_col[i] + acc_col(nt, e);
          if (r >= a.Dk || cl >= dvc) continue;
          if (STATES_ONLY) dst[r * ld + cl] = st[i][nt][e];
          else if (final_out && a.c_last.data)
            static_cast<float*>(a.c_last.data)[off4(a.c_last, b, h, r, dv0 + cl)] = st[i][nt][e];
        }
  __syncthreads();  // every warp is done with sN (the last tile's n.q)
  sN[tid] = n;
  __syncthreads();
  n = sN[tid % kWalkMaxDk] + sN[kWalkMaxDk + tid % kWalkMaxDk];
  if (dvt == 0 && tid < a.Dk) {
    if (STATES_ONLY) seg_state[static_cast<int64_t>(a.Dk) * a.Dv + tid] = n;
    else if (final_out && a.n_last.data) static_cast<float*>(a.n_last.data)[off3(a.n_last, b, h, tid)] = n;
  }
#endif
}

// Segment start states from the segments' own contributions, in place: slot k of seg_states holds X_k on
// entry and C^ at the start of segment k on exit (C_0 = c0, n_0 = n0; C_{k+1} = D_k C_k + X_k, with D_k the
// product of the chunk decays e^{g_c + m^_c - m^_{c+1}} of segment k). Grid: (ceil((Dk*Dv + Dk) / 256), B*H).
template <class T>  // T unused: a template so that only its own TUs compile it
__global__ void __launch_bounds__(256) segment_start_states_kernel(Args a) {
  __shared__ float seg_decay[kWalkMaxSegments];
  const int bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
  for (int k = threadIdx.x; k < a.nseg; k += blockDim.x) {
    float d = 1.f;
    for (int c = k * a.seg_chunks; c < min(a.NC, (k + 1) * a.seg_chunks); ++c)
      d *= a.chunk_decay[static_cast<int64_t>(bh) * a.NC + c];  // the walk's factors
    seg_decay[k] = d;
  }
  __syncthreads();
  const int64_t seg_elems = static_cast<int64_t>(a.Dk) * a.Dv + a.Dk;
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= seg_elems) return;
  float x = 0.f;
  if (e < static_cast<int64_t>(a.Dk) * a.Dv) {
    if (a.c0.data) x = static_cast<const float*>(a.c0.data)[off4(a.c0, b, h, e / a.Dv, e % a.Dv)];
  } else if (a.n0.data) {
    x = static_cast<const float*>(a.n0.data)[off3(a.n0, b, h, e - static_cast<int64_t>(a.Dk) * a.Dv)];
  }
  float* p = a.seg_states + static_cast<int64_t>(bh) * a.nseg * seg_elems + e;
  for (int k = 0; k < a.nseg; ++k, p += seg_elems) {
    const float own = *p;
    *p = x;
    x = seg_decay[k] * x + own;
  }
}

}  // namespace tfla::cuda
