// The one argument block every kernel of the portable path receives (by value, ~0.6 KB of the 4 KB
// kernel-parameter space): user tensors as given (strided), sizes, options, and workspace pointers.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cfloat>
#include <cstdint>

#include "tfla/tfla.h"

namespace tfla::cuda {

struct Args {
  int B, H, S, Dk, Dv;
  int L;   // chunk size (multiple of 64)
  int NC;  // number of chunks, ceil(S / L)
  int variant, normalize;
  float scale, eps;

  // user tensors (fwd and bwd; absent = data NULL)
  tfla_tensor q, k, v, igate, fgate, c0, n0, m0;
  tfla_tensor h, c_last, n_last, m_last, m_token, den_token;
  tfla_tensor dh, dc_last, dn_last, dq, dk, dv, digate, dfgate, dc0, dn0;

  // workspace (fp32). Per token (B*H*S, index (b*H + h)*S + t):
  float* bcum;     // b_tau: inclusive cumulative log forget gate within the chunk
  float* iota;     // log input gate
  float* mtok;     // m_t (0 for sig)
  float* inv_den;  // 1 / (den_t + eps) (1 for sig without normalization); backward only
  float* wstate;   // the token's weight in the state after its chunk (state_weight): read by the walk and chunk_states
  float* wrev;     // backward only: the token's weight in the adjoint recurrence, scale e^{b + m^_c - m_t} / (den + eps)
  // Per chunk boundary (B*H*(NC+1)):
  float* mhat;     // m^_c, c = 0..NC (m^_NC = m_last)
  // Per chunk (B*H*NC), scratch of prepare_gates: g_c and max(iota - b).
  float* chunk_a;
  float* chunk_b;
  float* chunk_decay;  // e^{g_c + m^_c - m^_{c+1}}, the state's decay over chunk c
  // States (B*H*(NC+1)*Dk*Dv and B*H*(NC+1)*Dk): forward C^_c, n^_c before chunk c (slot NC = final);
  // backward adjoints dC^_c, dn^_c (slot c + 1 is the adjoint after chunk c).
  float* cstates;
  float* nstates;
  float* dcstates;
  float* dnstates;
  // Backward per-token partial dot products, one per 64-wide Dk tile: (B*H*S, nDkTiles).
  float* qdq;
  float* kdk;
  // Per chunk (B*H*NC), fp64, backward only: the chunk totals and carries of d phi's reverse cumulative sum.
  double* grad_chunk_total;
  double* grad_chunk_carry;
  // <dc_last, C_last> + <dn_last, n_last> partials per (b,h, state tile): (B*H, nDkTiles*nDvTiles + nDkTiles).
  float* statedot;
  // Forward walk (output_walk.cuh): the sequence in nseg chunk-aligned segments of seg_chunks chunks; with
  // nseg > 1, seg_states holds per (b,h, segment) Dk*Dv + Dk floats: the segment's start state C^, n^.
  int nseg, seg_chunks;
  float* seg_states;
  // Backward with the fused chunk kernel and no c0: slot 0 of cstates (C^_0 = 0) is not read (chunk_gradients skips
  // chunk 0's dq inter-chunk term), so the recurrences do not store it.
  int skip_state0;
  // Backward with the fused chunk kernel and neither dc_last nor dn_last: slot NC of dcstates and dnstates (dC^_NC = 0,
  // dn^_NC = 0) is not read either (the last chunk skips its dk / dv inter-chunk terms), so the reverse recurrence does
  // not store it.
  int skip_dstate_last;
  // Backward with the fused chunk kernel: the recurrences store cstates / dcstates as 2 parts of T (hi, lo), part p
  // of slot s at T offset (2 s + p) Dk Dv, each [dk][dv] (the same bytes as fp32), which chunk_gradients copies
  // straight into its operand tiles; else fp32 (the per-role kernels).
  int split_states;
  // Chunks per round of the per-head scans over chunk boundaries (gates.cuh): kScanChunks; TFLA_CUDA_SCAN_ROUND sets
  // fewer so that the grid's sequences run several rounds (scripts/gpu_check.sh).
  int scan_round;
  // Backward on Hopper at L = 64 with enough heads (dispatch.cu, plan_backward): the inter-chunk terms dH_c C^_c^T of
  // dq and V_c dC^_{c+1}^T of dk per token, fp32 [bh][token][dk], from hopper/inter_chunk_grads.cuh, which replaces
  // the recompute recurrence (dq_inter: cstates is not stored; the wgmma recurrences run only the reverse one) and the
  // reverse one (dk_inter: dcstates holds only part 0, for dv); null otherwise.
  float* dq_inter;
  float* dk_inter;
};

// The per-head scans over chunk boundaries (gates.cuh): threads per block, chunks staged in shared memory per round.
constexpr int kScanThreads = 256;
constexpr int kScanChunks = 1024;

__host__ __device__ inline int cdiv(int a, int b) { return (a + b - 1) / b; }

// Element offset of (b, h, t, d) of a (B,H,S,D) tensor / (b, h, t) of a (B,H,S) tensor / etc.
__device__ __forceinline__ int64_t off4(const tfla_tensor& t, int64_t a, int64_t b, int64_t c, int64_t d) {
  return a * t.stride[0] + b * t.stride[1] + c * t.stride[2] + d * t.stride[3];
}
__device__ __forceinline__ int64_t off3(const tfla_tensor& t, int64_t a, int64_t b, int64_t c) {
  return a * t.stride[0] + b * t.stride[1] + c * t.stride[2];
}
__device__ __forceinline__ int64_t off2(const tfla_tensor& t, int64_t a, int64_t b) {
  return a * t.stride[0] + b * t.stride[1];
}

// Whether a kernel reads slot `slot` of the states (REVERSE = false: cstates, true: dcstates): the forward's h
// and the backward's dq read C^_c for chunks c < NC, the backward's dk / dv dC^_{c+1} for c + 1 >= 1 (chunk_tiles.cuh,
// chunk_gradients.cuh; the final state and dc0 are written from registers). With the fused chunk backward and no c0,
// C^_0 = 0 is not read either (Args::skip_state0), and without dc_last dC^_NC = 0 neither (Args::skip_dstate_last).
// At S = 1,024 and L = 64 these are 4 of the 34 slots per head.
__device__ __forceinline__ bool state_slot_read(const Args& a, bool reverse, int slot) {
  if (reverse) return slot > 0 && !(slot == a.NC && a.skip_dstate_last);
  return slot < a.NC && !(slot == 0 && a.skip_state0);
}

// ---- gate arithmetic shared by the kernels ----

// e^{g_c - b_t + iota_t - m^_{c+1}}: the weight of token t of chunk c in the state after the chunk (g_c = b at
// the chunk end). exp: m^_{c+1} = g_c + max(m^_c, max_t (iota_t - b_t)) (prepare_gates, the same fp32
// operations), so ((iota_t - b_t) + g_c) - m^_{c+1} is exactly 0 for the token that set the stabilizer: the
// dominant term gets weight 1, as in a plain implementation (the other order put c_last at 5.7e-5 against a
// bound of 1e-5 with +-50 gates, bench/results/2026-11-26-h100-v2.1). sig: m = 0, and g_c - b_t is exact for
// nearby tokens (Sterbenz), which a run of phi ~ 0 after |b| ~ 1e5 needs. expf: __expf's error grows with |x|.
__device__ __forceinline__ float state_weight(int variant, float g, float b, float iota, float m_out) {
  return variant == TFLA_VARIANT_EXP ? expf(((iota - b) + g) - m_out) : expf((g - b) + iota);
}

// e^x for the L x L decay matrix: ex2.approx (__expf) for 16-bit operands, whose rounding dominates; the
// accurate expf for fp32 inputs, whose path is meant to be ~fp32 exact.
template <class T>
__device__ __forceinline__ float decay_exp(float x) {
  if constexpr (sizeof(T) == 4) return expf(x);
  else return __expf(x);
}

// The forward's denominator of one query row from n.q (the state's part plus the row sum of P) and the row's
// stabilizer m: max(|n.q|, e^{-m}) for exp (finite even where e^{-m} overflows), max(|n.q|, 1) for sig with
// normalize = 1, 1 otherwise; *inv = 1 / (den + eps), or 1 where nothing divides. Both forward walks use it (the
// same arithmetic, so their h agree).
__device__ __forceinline__ float output_denominator(const Args& a, float nq, float m, float* inv) {
  float den = 1.f;
  *inv = 1.f;
  if (a.variant == TFLA_VARIANT_EXP) {
    den = fminf(fmaxf(fabsf(nq), expf(-m)), FLT_MAX);
    *inv = 1.f / (den + a.eps);
  } else if (a.normalize) {
    den = fmaxf(fabsf(nq), 1.f);
    *inv = 1.f / (den + a.eps);
  }
  return den;
}

}  // namespace tfla::cuda
