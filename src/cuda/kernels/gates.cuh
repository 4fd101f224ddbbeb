// Gate kernels: the per-token and per-chunk gate quantities before the matrix kernels
// (prepare_gates), and the gate gradients after them (gate_grads). One warp per (batch, head): the
// gates are 4 bytes per token against ~1 KB of q/k/v per token, so these kernels are never the
// bottleneck; they scan the sequence chunk by chunk with warp shuffles.
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
__device__ __forceinline__ float warp_scan_add(float x) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  return x;
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
__device__ __forceinline__ float warp_suffix_add(float x) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float y = __shfl_down_sync(0xffffffffu, x, o);
    if (lane + o < 32) x += y;
  }
  return x;
}

// Per token: bcum (inclusive cumulative log forget gate inside the chunk), iota (log input gate), mtok
// (m_t = b_t + max(m^_c, prefix-max of (iota - b)), docs/algorithm.md; in the backward: read back from
// the forward's m_token), inv_den (backward only). Per chunk boundary: mhat.
// Grid: B*H blocks of 32 threads.
template <class G>
__global__ void __launch_bounds__(32) prepare_gates_kernel(Args a, int backward) {
  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, lane = threadIdx.x;
  const bool is_exp = a.variant == TFLA_VARIANT_EXP;
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  float mhat = (is_exp && a.m0.data) ? static_cast<const float*>(a.m0.data)[off2(a.m0, b, h)] : 0.f;
  for (int c = 0; c < a.NC; ++c) {
    if (lane == 0) a.mhat[static_cast<int64_t>(bh) * (a.NC + 1) + c] = mhat;
    const int cstart = c * a.L, cend = min(a.S, cstart + a.L);
    float carry_b = 0.f, carry_pm = -INFINITY;
    for (int t0 = cstart; t0 < cend; t0 += 32) {
      const int t = t0 + lane;
      const bool valid = t < cend;
      const float phi = valid ? log_sigmoid(load_gate<G>(a.fgate, b, h, t)) : 0.f;
      float io = -INFINITY;
      if (valid) {
        const float iraw = load_gate<G>(a.igate, b, h, t);
        io = is_exp ? iraw : log_sigmoid(iraw);
      }
      const float bc = warp_scan_add(phi) + carry_b;
      const float pm = fmaxf(warp_scan_max(valid ? io - bc : -INFINITY), carry_pm);
      if (valid) {
        a.bcum[tok0 + t] = bc;
        a.iota[tok0 + t] = io;
        float m = is_exp ? bc + fmaxf(mhat, pm) : 0.f;
        if (backward) {
          if (is_exp) m = static_cast<const float*>(a.m_token.data)[off3(a.m_token, b, h, t)];
          float inv = 1.f;
          if (is_exp || a.normalize)
            inv = 1.f / (static_cast<const float*>(a.den_token.data)[off3(a.den_token, b, h, t)] + a.eps);
          a.inv_den[tok0 + t] = inv;
        } else if (a.m_token.data) {
          static_cast<float*>(a.m_token.data)[off3(a.m_token, b, h, t)] = m;
        }
        a.mtok[tok0 + t] = m;
      }
      carry_b = __shfl_sync(0xffffffffu, bc, 31);  // invalid lanes add 0, so lane 31 holds the running sum
      carry_pm = __shfl_sync(0xffffffffu, pm, 31);
    }
    mhat = is_exp ? carry_b + fmaxf(mhat, carry_pm) : 0.f;  // m^_{c+1} = g_c + max(m^_c, max(iota - b))
  }
  if (lane == 0) {
    a.mhat[static_cast<int64_t>(bh) * (a.NC + 1) + a.NC] = mhat;
    if (!backward && a.m_last.data) static_cast<float*>(a.m_last.data)[off2(a.m_last, b, h)] = mhat;
  }
}

// d iota_t = k_t . dk_t; d phi_t = sum_{u >= t} (q_u . dq_u - k_u . dk_u) + <dc_last, C_last> + <dn_last, n_last>.
// The per-token dot products arrive as partials per 64-wide Dk tile (written by the dq / dk kernels) and
// are summed here in a fixed order, so the result is bit-reproducible. Grid: B*H blocks of 32 threads.
template <class G>
__global__ void __launch_bounds__(32) gate_grads_kernel(Args a, int n_dk_tiles, int n_state_partials) {
  const int bh = blockIdx.x, b = bh / a.H, h = bh % a.H, lane = threadIdx.x;
  const int64_t tok0 = static_cast<int64_t>(bh) * a.S;
  float statedot = 0.f;
  for (int p = 0; p < n_state_partials; ++p) statedot += a.statedot[static_cast<int64_t>(bh) * n_state_partials + p];
  float carry = statedot;
  for (int t0 = ((a.S - 1) / 32) * 32; t0 >= 0; t0 -= 32) {
    const int t = t0 + lane;
    const bool valid = t < a.S;
    float qdq = 0.f, kdk = 0.f;
    if (valid)
      for (int i = 0; i < n_dk_tiles; ++i) {
        qdq += a.qdq[(tok0 + t) * n_dk_tiles + i];
        kdk += a.kdk[(tok0 + t) * n_dk_tiles + i];
      }
    const float suffix = warp_suffix_add(valid ? qdq - kdk : 0.f);
    if (valid) {
      const float dphi = suffix + carry;
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
