// Gate kernels: the per-token and per-chunk gate quantities before the matrix kernels (prepare_gates),
// and the gate gradients after them (gate_grads). The gates are 4 bytes per token against ~1 KB of q/k/v
// per token; these kernels are parallel over chunks (one warp each) with a short per-head scan over the
// chunk boundaries in between, so they stay small at any batch size and sequence length.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/args.cuh"
#include "cuda/tiles.cuh"

namespace tfla::cuda {

__device__ __forceinline__ float log_sigmoid(float x) { return fminf(x, 0.f) - log1pf(expf(-fabsf(x))); }
__device__ __forceinline__ float sigmoid_neg(float x) { return 1.f / (1.f + expf(x)); }  // sigmoid(-x), stable

template <class G>
__device__ __forceinline__ float load_gate(const tfla_tensor& t, int b, int h, int s) {
  return to_float<G>(static_cast<const G*>(t.data)[off3(t, b, h, s)]);
}

// Inclusive warp scans.
// carry + x_0 + ... + x_lane, summed left to right in fp64 and rounded once: lane l gets the correctly
// rounded running sum. The cumulative log forget gate b_t enters every decay weight through differences
// b_end - b_t and b_tau - b_sigma. A tree (Hillis-Steele) in fp32 rounds the same prefix differently for
// different lanes: after a strongly forgetting token (|b| ~ 1e5) a run of phi = 0 tokens got
// b_end - b_t ~ 1e-2 instead of 0 (c_last off by 1e-2 with +-1e4 gates); an in-order fp32 sum fixed that
// but let rounding build up along the chunk (h 1.9x its bound, exp, fp32 inputs; both
// bench/results/2026-11-26-h100-v2.1). In fp64 the sum of fp32 terms is exact to ~2^-29 relative, so every
// b_t is within half an fp32 ulp of the true sum, and a run of exact zeros leaves b_t unchanged.
// The chain is 32 dependent fp64 adds per 32 tokens; the shuffles do not depend on it.
__device__ __forceinline__ double warp_scan_add_in_order(float x, double carry, float* mine) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    carry += static_cast<double>(__shfl_sync(0xffffffffu, x, j));
    if (lane == j) *mine = static_cast<float>(carry);
  }
  return carry;  // the running sum after lane 31 (every lane has it)
}
__device__ __forceinline__ float warp_scan_max(float x) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x = fmaxf(x, y);
  }
  return x;
}
// Inclusive suffix sum (lane l gets the sum over lanes l..31).
__device__ __forceinline__ double warp_suffix_add(double x) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_down_sync(0xffffffffu, x, o);
    if (lane + o < 32) x += y;
  }
  return x;
}

// ---- prepare_gates: three launches, parallel over chunks except a short scan over chunk boundaries ----
// (v1 ran one warp per head over the whole sequence: 1.4 ms at S = 65,536, B*H = 16, ncu on the H100;
// these are chunk-parallel, so the cost follows the token count, not the longest sequence.)

// 1) Per chunk (one warp): bcum (inclusive cumulative log forget gate inside the chunk), iota (log input
//    gate), and the chunk-local prefix max pm_t of (iota - b) (kept in mtok until step 3 replaces it by m_t);
//    per chunk g_c = b at the chunk end and the chunk's max of (iota - b). Backward: inv_den, and m_t read
//    back from the forward's m_token. Grid: (NC, B*H), 32 threads.
template <class G>
__global__ void __launch_bounds__(32) chunk_gate_scan_kernel(Args a, int backward) {
  const int c = blockIdx.x, bh = blockIdx.y, b = bh / a.H, h = bh % a.H, lane = threadIdx.x;
  const bool is_exp = a.variant == TFLA_VARIANT_EXP;
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  const int cstart = c * a.L, cend = min(a.S, cstart + a.L);
  double carry_b = 0.0;
  float carry_pm = -INFINITY;
  for (int t0 = cstart; t0 < cend; t0 += 32) {
    const int t = t0 + lane;
    const bool valid = t < cend;
    const float phi = valid ? log_sigmoid(load_gate<G>(a.fgate, b, h, t)) : 0.f;
    float io = -INFINITY;
    if (valid) {
      const float iraw = load_gate<G>(a.igate, b, h, t);
      io = is_exp ? iraw : log_sigmoid(iraw);
    }
    float bc;
    const double run = warp_scan_add_in_order(phi, carry_b, &bc);
    const float pm = fmaxf(warp_scan_max(valid ? io - bc : -INFINITY), carry_pm);
    if (valid) {
      a.bcum[tok0 + t] = bc;
      a.iota[tok0 + t] = io;
      if (backward) {
        a.mtok[tok0 + t] = is_exp ? static_cast<const float*>(a.m_token.data)[off3(a.m_token, b, h, t)] : 0.f;
        float inv = 1.f;
        if (is_exp || a.normalize)
          inv = 1.f / (static_cast<const float*>(a.den_token.data)[off3(a.den_token, b, h, t)] + a.eps);
        a.inv_den[tok0 + t] = inv;
      } else {
        a.mtok[tok0 + t] = pm;  // step 3 turns it into m_t
      }
    }
    carry_b = run;  // invalid lanes add 0
    carry_pm = __shfl_sync(0xffffffffu, pm, 31);
  }
  if (lane == 0) {
    a.chunk_a[static_cast<int64_t>(bh) * a.NC + c] = static_cast<float>(carry_b);  // g_c = b at the chunk end
    a.chunk_b[static_cast<int64_t>(bh) * a.NC + c] = carry_pm;  // max over the chunk of (iota - b)
  }
}

// The two per-head scans over chunk boundaries (the stabilizers m^ below, the gate-gradient carries in gate_grads)
// are serial recurrences whose terms are known in advance. One warp that passed each term through a shuffle and
// stored it from its lane took ~140 cycles per chunk: 0.084 ms per launch at S = 65,536 (1,024 chunks, B*H = 16;
// ncu, H100, bench/results/2026-11-26-h100-v7), twice per forward + backward. Here the block stages up to
// kScanChunks terms in shared memory, one thread runs only the dependent chain (an fmax and an add per chunk) and
// every thread writes the results; the arithmetic and its order are the warp version's, so the results are
// bit-identical to it.
// (kScanThreads, kScanChunks: args.cuh; Args::scan_round may set fewer chunks per round, for tests.)

// 2) Per head: the boundary stabilizers m^_{c+1} = g_c + max(m^_c, max(iota - b)) (sig: 0) and the chunks' state
//    decays e^{g_c + m^_c - m^_{c+1}}. Grid: B*H, kScanThreads threads.
template <class G>  // G unused: a template so that only the gate TUs compile it
__global__ void __launch_bounds__(kScanThreads) chunk_stabilizers_kernel(Args a, int backward) {
  __shared__ float sG[kScanChunks], sP[kScanChunks], sM[kScanChunks + 1];
  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, tid = threadIdx.x, round = a.scan_round;
  const bool is_exp = a.variant == TFLA_VARIANT_EXP;
  const int64_t base = static_cast<int64_t>(bh) * a.NC;
  float* mhat = a.mhat + static_cast<int64_t>(bh) * (a.NC + 1);
  float m = (is_exp && a.m0.data) ? static_cast<const float*>(a.m0.data)[off2(a.m0, b, h)] : 0.f;
  for (int c0 = 0; c0 < a.NC; c0 += round) {
    const int n = min(round, a.NC - c0);
    for (int i = tid; i < n; i += kScanThreads) {
      sG[i] = a.chunk_a[base + c0 + i];
      sP[i] = a.chunk_b[base + c0 + i];
    }
    __syncthreads();
    if (tid == 0) {
      sM[0] = m;
#pragma unroll 8
      for (int i = 0; i < n; ++i) {
        m = is_exp ? sG[i] + fmaxf(m, sP[i]) : 0.f;
        sM[i + 1] = m;
      }
    }
    __syncthreads();
    for (int i = tid; i < n; i += kScanThreads) {
      mhat[c0 + i] = sM[i];
      // the chunk's state decay, read by the forward walk and chunk_states (g_c is b at the chunk end)
      a.chunk_decay[base + c0 + i] = expf(sG[i] + sM[i] - sM[i + 1]);
    }
    m = sM[n];  // every thread carries the last m^ into the next round
    __syncthreads();  // the next round overwrites sG, sP, sM
  }
  if (tid == 0) {
    mhat[a.NC] = m;
    if (!backward && a.m_last.data) static_cast<float*>(a.m_last.data)[off2(a.m_last, b, h)] = m;
  }
}

// The weight of token t (index i) of head bh in the state after its chunk, e^{a_t - m^_{c+1}} (state_weight), read by
// the forward walk and chunk_states.
__device__ __forceinline__ float token_state_weight(const Args& a, int bh, int t, int64_t i) {
  const int c = t / a.L;
  const float g = a.bcum[static_cast<int64_t>(bh) * a.S + min(a.S, (c + 1) * a.L) - 1];
  return state_weight(a.variant, g, a.bcum[i], a.iota[i], a.mhat[static_cast<int64_t>(bh) * (a.NC + 1) + c + 1]);
}

// 3) Forward, per token: m_t = b_t + max(m^_c, pm_t) (sig: 0), also into the caller's m_token; and the token's
//    state weight. Grid: (ceil(S / 128), B*H), 128 threads.
template <class G>  // G unused: a template so that only the gate TUs compile it
__global__ void __launch_bounds__(128) token_stabilizers_kernel(Args a) {
  const int t = blockIdx.x * 128 + threadIdx.x, bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
  if (t >= a.S) return;
  const int64_t i = static_cast<int64_t>(bh) * a.S + t;
  const float mh = a.mhat[static_cast<int64_t>(bh) * (a.NC + 1) + t / a.L];
  const float m = a.variant == TFLA_VARIANT_EXP ? a.bcum[i] + fmaxf(mh, a.mtok[i]) : 0.f;
  a.mtok[i] = m;
  a.wstate[i] = token_state_weight(a, bh, t, i);
  if (a.m_token.data) static_cast<float*>(a.m_token.data)[off3(a.m_token, b, h, t)] = m;
}

// 3') Backward, per token: the weights of the two state recurrences that chunk_states reads per tile: the state
//     weight (as in the forward) and the adjoint's weight scale e^{b + m^_c - m_t} / (den + eps).
//     Grid: (ceil(S / 128), B*H), 128 threads.
template <class G>  // G unused: a template so that only the gate TUs compile it
__global__ void __launch_bounds__(128) backward_token_weights_kernel(Args a) {
  const int t = blockIdx.x * 128 + threadIdx.x, bh = blockIdx.y;
  if (t >= a.S) return;
  const int64_t i = static_cast<int64_t>(bh) * a.S + t;
  a.wstate[i] = token_state_weight(a, bh, t, i);
  a.wrev[i] = a.scale * expf(a.bcum[i] + a.mhat[static_cast<int64_t>(bh) * (a.NC + 1) + t / a.L] - a.mtok[i]) * a.inv_den[i];
}

// ---- gate_grads: d iota_t = k_t . dk_t; d phi_t = sum_{u >= t} (q_u . dq_u - k_u . dk_u) + <dc_last, C_last> +
// <dn_last, n_last>. The per-token dots arrive as partials per 64-wide Dk tile (dq / dk kernels). The
// reverse cumulative sum runs in three chunk-parallel steps with a fixed summation order (bit-reproducible),
// in fp64: q.dq and k.dk are large and nearly cancel, and their difference is summed over the whole sequence,
// so fp32 adds a rounding per token that fp64 does not. (The one d f case over its bound, 1.03x with fp32 inputs
// in bench/results/2026-11-25-h100-v2, had another cause: fp64 here left it unchanged, the accurate exp of the
// decay matrix fixed it, v2.1 / v2.2.) These kernels move 4-8 bytes per token: fp64 costs nothing measurable.

__device__ __forceinline__ double token_gate_term(const Args& a, int64_t i, int n_dk_tiles, float* kdk_out) {
  double qdq = 0.0, kdk = 0.0;
  for (int p = 0; p < n_dk_tiles; ++p) {
    qdq += a.qdq[i * n_dk_tiles + p];
    kdk += a.kdk[i * n_dk_tiles + p];
  }
  *kdk_out = static_cast<float>(kdk);
  return qdq - kdk;
}

// 1) per chunk: the sum of (q.dq - k.dk) over its tokens. Grid: (NC, B*H), 32 threads.
template <class G>  // G unused: a template so that only the gate TUs compile it
__global__ void __launch_bounds__(32) chunk_gate_totals_kernel(Args a, int n_dk_tiles) {
  const int c = blockIdx.x, bh = blockIdx.y, lane = threadIdx.x;
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  const int cstart = c * a.L, cend = min(a.S, cstart + a.L);
  double s = 0.0;
  for (int t = cstart + lane; t < cend; t += 32) {
    float kdk;
    s += token_gate_term(a, tok0 + t, n_dk_tiles, &kdk);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) a.grad_chunk_total[static_cast<int64_t>(bh) * a.NC + c] = s;
}

// 2) per head: carry_c = (state term) + sum of the totals of the chunks after c, added from the last chunk down
//    (kScanChunks per round, one thread on the chain; see chunk_stabilizers_kernel). Grid: B*H, kScanThreads threads.
template <class G>  // G unused: a template so that only the gate TUs compile it
__global__ void __launch_bounds__(kScanThreads) chunk_gate_carries_kernel(Args a, int n_state_partials) {
  __shared__ double sTot[kScanChunks];
  const int bh = blockIdx.x, tid = threadIdx.x, round = a.scan_round;
  const int64_t base = static_cast<int64_t>(bh) * a.NC;
  double carry = 0.0;
  for (int p = 0; p < n_state_partials; ++p) carry += a.statedot[static_cast<int64_t>(bh) * n_state_partials + p];
  for (int c_hi = a.NC; c_hi > 0; c_hi -= round) {  // chunks c_lo .. c_hi - 1, from the top
    const int c_lo = max(0, c_hi - round), n = c_hi - c_lo;
    for (int i = tid; i < n; i += kScanThreads) sTot[i] = a.grad_chunk_total[base + c_lo + i];
    __syncthreads();
    if (tid == 0) {
#pragma unroll 8
      for (int i = n - 1; i >= 0; --i) {
        const double t = sTot[i];
        sTot[i] = carry;  // the carry into chunk c_lo + i: the chunks after it
        carry += t;
      }
    }
    __syncthreads();
    for (int i = tid; i < n; i += kScanThreads) a.grad_chunk_carry[base + c_lo + i] = sTot[i];
    __syncthreads();  // the next round overwrites sTot (only thread 0 carries the sum)
  }
}

// 3) per chunk: reverse inclusive scan inside the chunk plus its carry; write d igate and d fgate.
//    Grid: (NC, B*H), 32 threads.
template <class G>
__global__ void __launch_bounds__(32) gate_grads_kernel(Args a, int n_dk_tiles) {
  const int c = blockIdx.x, bh = blockIdx.y, b = bh / a.H, h = bh % a.H, lane = threadIdx.x;
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  const int cstart = c * a.L, cend = min(a.S, cstart + a.L);
  double carry = a.grad_chunk_carry[static_cast<int64_t>(bh) * a.NC + c];
  for (int t0 = cstart + ((cend - 1 - cstart) / 32) * 32; t0 >= cstart; t0 -= 32) {
    const int t = t0 + lane;
    const bool valid = t < cend;
    float kdk = 0.f;
    const double term = valid ? token_gate_term(a, tok0 + t, n_dk_tiles, &kdk) : 0.0;
    const double suffix = warp_suffix_add(term);
    if (valid) {
      const float dphi = static_cast<float>(suffix + carry);
      if (a.dfgate.data)
        static_cast<G*>(a.dfgate.data)[off3(a.dfgate, b, h, t)] =
            from_float<G>(dphi * sigmoid_neg(load_gate<G>(a.fgate, b, h, t)));
      if (a.digate.data) {
        const float di = a.variant == TFLA_VARIANT_EXP ? kdk : kdk * sigmoid_neg(load_gate<G>(a.igate, b, h, t));
        static_cast<G*>(a.digate.data)[off3(a.digate, b, h, t)] = from_float<G>(di);
      }
    }
    carry += __shfl_sync(0xffffffffu, suffix, 0);
  }
}

}  // namespace tfla::cuda
