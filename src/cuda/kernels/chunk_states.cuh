// chunk_states: the inter-chunk recurrence over chunk boundaries (docs/algorithm.md).
//
//   forward  (REVERSE = false): C^_{c+1} = e^{g_c + m^_c - m^_{c+1}} C^_c + K_c^T diag(e^{a - m^_{c+1}}) V_c
//                               slot c of cstates holds C^_c (state before chunk c), slot NC the final state.
//   backward (REVERSE = true) : dC^_c = e^{g_c + m^_c - m^_{c+1}} dC^_{c+1} + Q^_c^T diag(w / (den + eps)) dH_c
//                               slot c + 1 of dcstates holds dC^_{c+1} (the adjoint after chunk c), slot 0 = dc0.
//
// Grid: (Dk tiles x Dv tiles, B*H); one 64x64 fp32 tile of the running state stays in registers for
// the whole sequence (warp w owns state rows 16w..16w+15), so the state never round-trips through
// memory inside the recurrence. The n-vector (length Dk) rides along in the blocks of Dv tile 0.
//
// Schedule (v2): the sequence streams through shared memory in 64-token tiles, two stages deep: while
// the tensor cores work on tile j, cp.async brings tile j+1 (and its per-token weights are computed).
// The per-token weight multiplies the A operand (K^T or Q^T) in registers, right after ldmatrix, split
// into PARTS fragments there: v1 rescaled the B tile in a separate shared-memory pass between two
// barriers (1.42 ms of ncu time at S = 1024 with 2 parts, bench/results/2026-11-25-h100-v1.3).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include "cuda/args.cuh"
#include "cuda/tiles.cuh"

namespace tfla::cuda {

// The per-token weights of one 64-token tile and its chunk's decay for the recurrences (threads 0..64; precomputed by
// prepare_gates: wstate = state_weight, wrev = scale w_t / (den + eps), with expf), loaded into a register ahead of
// their tile and stored to shared memory one tile later, so no warp waits on them. v2 computed them from global loads
// in the tile loop (long-scoreboard stalls 2.1 cycles per instruction, ncu, H100); 4-byte cp.async copies instead
// added an L2 request per token (L2 throughput 85 -> 92%, 2.54 -> 2.80 ms at S = 1,024; bench/NOTES.md v4.5). Both
// recurrence kernels (this one and hopper/chunk_states.cuh) use it.
struct TileWeightsAhead {
  const float* wtok;         // this head's per-token weights
  const float* chunk_decay;  // this head's per-chunk decays
  int S, L;
  float w = 0.f;
  __device__ __forceinline__ void load(int t0, int tid) {  // tile starting at token t0
    if (tid < kTile) w = t0 + tid < S ? wtok[t0 + tid] : 0.f;  // zero past S
    else if (tid == kTile) w = chunk_decay[t0 / L];
  }
  __device__ __forceinline__ void store(float* dst, int tid) const {  // dst[0, 64): weights, dst[64]: decay
    if (tid <= kTile) dst[tid] = w;
  }
};

// Shared memory of chunk_states_kernel<T>: two stages of (A tile, B tile, per-token weights and the chunk's decay).
constexpr int kStatesStageFloats = kTile + 4;
template <class T>
constexpr size_t chunk_states_smem_bytes() {
  return 2 * (2 * kTile * kLd * sizeof(T) + kStatesStageFloats * sizeof(float));
}

// PARTS: how many T fragments carry each gate-weighted operand (tiles.cuh, scale_a_cols): 1 where only
// the forward's h consumes the states; kStateParts (~fp32) where the final state is an output (c_last is fp32
// like a plain implementation's; 2 parts are ~2^-17 relative. The one grid case that failed with 2 parts had
// another cause, the exponent's order: 3 parts left it unchanged, bench/results/2026-11-26-h100-v2.1) and where
// the backward's gate gradients use the states.
// STATE_T: the element type of the stored per-chunk states: T for the forward (h rounds them to T for its
// tensor-core product anyway: half the bytes of fp32, and the output kernel loads them without conversion),
// float for the backward (dq and the gate gradients need ~fp32 states).
template <class T, bool REVERSE, int PARTS, class STATE_T>
__device__ __forceinline__ void chunk_states_body(const Args& a) {
  // ---- configuration -------------------------------------------------------------------------------
  constexpr int kParts = sizeof(T) == 2 ? PARTS : 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* const sA0 = reinterpret_cast<T*>(smem_raw);        // stage s: [token][dk], K (forward) or Q (backward)
  T* const sB0 = sA0 + 2 * kTile * kLd;                  // stage s: [token][dv], V (forward) or dH (backward)
  float* const sW0 = reinterpret_cast<float*>(sB0 + 2 * kTile * kLd);  // stage s: per-token weights

  const int n_dv_tiles = cdiv(a.Dv, kTile);
  const int ti = blockIdx.x / n_dv_tiles, tj = blockIdx.x % n_dv_tiles;
  const int bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
  const int warp = threadIdx.x >> 5, tid = threadIdx.x;
  const int dk0 = ti * kTile, dv0 = tj * kTile;
  const int rows = min(kTile, a.Dk - dk0), cols = min(kTile, a.Dv - dv0);
  const bool carries_n = tj == 0;
  // n^: the forward's denominators need it; in the backward's recompute (statedot set) only <dn_last, n_last> does
  // (den comes from the forward's den_token), so without dn_last the 64-token loop, which held 2 of the 4 warps of
  // every Dv-tile-0 block before the barrier, is skipped there.
  const bool tracks_n = carries_n && tid < rows && (!a.statedot || a.dn_last.data);
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  STATE_T* states = reinterpret_cast<STATE_T*>(REVERSE ? a.dcstates : a.cstates) +
                    static_cast<int64_t>(bh) * (a.NC + 1) * a.Dk * a.Dv;
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
    if (!state_slot_read(a, REVERSE, slot)) return;
    STATE_T* dst = states + static_cast<int64_t>(slot) * a.Dk * a.Dv + static_cast<int64_t>(dk0) * a.Dv + dv0;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const int r = acc_row(warp, e), c = acc_col(nt, e);
        if (r < rows && c < cols) {
          if constexpr (std::is_same_v<STATE_T, float> && sizeof(T) == 2) {
            if (a.split_states) {  // the slot's T parts at the slot's bytes (Args::split_states)
              uint32_t hl[2];
              pack2_split<T, 2>(hl, 1, acc[nt][e], acc[nt][e + 1]);
              T* dt = reinterpret_cast<T*>(states + static_cast<int64_t>(slot) * a.Dk * a.Dv) + (dk0 + r) * a.Dv + dv0 + c;
              *reinterpret_cast<uint32_t*>(dt) = hl[0];
              *reinterpret_cast<uint32_t*>(dt + static_cast<int64_t>(a.Dk) * a.Dv) = hl[1];
            } else {
              *reinterpret_cast<float2*>(dst + r * a.Dv + c) = make_float2(acc[nt][e], acc[nt][e + 1]);
            }
          } else if constexpr (std::is_same_v<STATE_T, float>) {
            *reinterpret_cast<float2*>(dst + r * a.Dv + c) = make_float2(acc[nt][e], acc[nt][e + 1]);
          } else {
            *reinterpret_cast<uint32_t*>(dst + r * a.Dv + c) = pack2<STATE_T>(acc[nt][e], acc[nt][e + 1]);
          }
        }
      }
    if (carries_n && tid < rows) nstates[static_cast<int64_t>(slot) * a.Dk + dk0 + tid] = n;
  };

  // ---- the token tiles, in processing order ----------------------------------------------------------
  // L is a multiple of 64, so the 64-token tiles of the sequence never straddle a chunk boundary: tile j
  // (in processing order) is sequence tile j (forward) or n_tiles - 1 - j (backward).
  const int n_tiles = cdiv(a.S, kTile);
  const int tiles_per_chunk = a.L / kTile;
  auto seq_tile = [&](int j) { return REVERSE ? n_tiles - 1 - j : j; };

  // Queue the loads of tile j into stage j & 1 (its operand tiles, cp.async).
  auto issue = [&](int j) {
    const int st = j & 1, t0 = seq_tile(j) * kTile, ntok = min(kTile, a.S - t0);
    load_tile_async<T>(sA0 + st * kTile * kLd, gA + t0 * tA.stride[2], tA.stride[2], ntok, rows);
    load_tile_async<T>(sB0 + st * kTile * kLd, gB + t0 * tB.stride[2], tB.stride[2], ntok, cols);
  };
  // Tile j's weights and its chunk's decay (TileWeightsAhead): into a register one tile ahead, to shared one later.
  TileWeightsAhead wts{(REVERSE ? a.wrev : a.wstate) + tok0, a.chunk_decay + static_cast<int64_t>(bh) * a.NC, a.S, a.L};
  auto load_weight = [&](int j) { wts.load(seq_tile(j) * kTile, tid); };
  auto store_weight = [&](int j) { wts.store(sW0 + (j & 1) * kStatesStageFloats, tid); };

  // ---- the recurrence --------------------------------------------------------------------------------
  // Pipeline: issue(j + 1), weights of j + 1 to shared, of j + 2 to a register | (chunk boundary: store) |
  // wait(tile j) | barrier | (chunk boundary: decay) | MMAs on tile j | barrier.
  issue(0);
  hw::cp_async_commit();
  load_weight(0);
  store_weight(0);
  if (n_tiles > 1) load_weight(1);
  for (int j = 0; j < n_tiles; ++j) {
    const int st = j & 1, tile = seq_tile(j), c = tile / tiles_per_chunk;
    if (j + 1 < n_tiles) {
      issue(j + 1);
      store_weight(j + 1);  // stage (j + 1) & 1 was last read before the previous iteration's closing barrier
      if (j + 2 < n_tiles) load_weight(j + 2);
    }
    hw::cp_async_commit();  // possibly empty: keeps one group per tile
    // First tile of chunk c in processing order: the state entering it is complete. Its store goes out before the
    // wait, as in v2 (stored after the barrier, together with the 4-byte weight copies, the kernel took 2.80 ms at
    // S = 1,024; with the store back here 2.70, H100, bench/NOTES.md v4.5); the decay comes with the tile's
    // weights, so it is applied after the barrier.
    const bool chunk_start = REVERSE ? (tile == n_tiles - 1 || (tile + 1) % tiles_per_chunk == 0)
                                     : tile % tiles_per_chunk == 0;
    if (chunk_start) store_state(REVERSE ? c + 1 : c);
    hw::cp_async_wait<1>();
    __syncthreads();
    const T* sA = sA0 + st * kTile * kLd;
    const T* sB = sB0 + st * kTile * kLd;
    const float* sW = sW0 + st * kStatesStageFloats;
    if (chunk_start) {
      const float decay = sW[kTile];  // e^{g_c + m^_c - m^_{c+1}} <= 1 by the choice of m^_{c+1}
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[nt][e] *= decay;
      n *= decay;
    }
    if (!REVERSE && tracks_n) {
      float s = 0.f;
#pragma unroll 8
      for (int r = 0; r < kTile; ++r) s += sW[r] * to_float<T>(sA[r * kLd + tid]);  // zero weight past the end
      n += s;
    }
    // acc(dk x dv) += (A^T diag(w)) (dk x tok) * B (tok x dv): A stored [tok][dk] (m-major), B [tok][dv] (n-major).
#pragma unroll 1
    for (int k0 = 0; k0 < kTile; k0 += 16) {
      FragA<T> araw;
      load_a<T, false>(araw, sA, kLd, warp * 16, k0);
      FragA<T> ap[kParts];
      scale_a_cols<T, kParts>(ap, araw, sW, k0);
      if constexpr (sizeof(T) == 2) {
        mma_parts_over_tiles<T, false>(acc, ap, sB, kLd, k0);
      } else {
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          FragB<T> bf;
          load_b<T, false>(bf, sB, kLd, nt * 8, k0);
          mma<T>(acc[nt], ap[0], bf);
        }
      }
    }
    __syncthreads();  // stage st is reloaded by issue(j + 2)
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

template <class T, bool REVERSE, int PARTS, class STATE_T>
__global__ void __launch_bounds__(kThreads, 2) chunk_states_kernel(Args a) {
  chunk_states_body<T, REVERSE, PARTS, STATE_T>(a);
}

// The backward's two recurrences in one launch (blockIdx.z = 0: the states C^_c recomputed, ~fp32; 1: the adjoints
// dC^_c). They are independent, and with few heads each alone fills half the GPU: 128 blocks of 2 per SM on 132 SMs
// at S = 65,536 (3.2 + 2.9 ms one after the other, H200, bench/results/2026-11-26-h200-v4).
template <class T>
__global__ void __launch_bounds__(kThreads, 2) chunk_states_backward_kernel(Args a) {
  if (blockIdx.z == 0) chunk_states_body<T, false, kStateParts<T>, float>(a);
  else chunk_states_body<T, true, kStateParts<T>, float>(a);
}

}  // namespace tfla::cuda
