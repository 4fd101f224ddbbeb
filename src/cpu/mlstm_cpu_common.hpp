// Shared pieces of the CPU backend: strided per-head views, the workspace arena, stable gate functions,
// the gate prefix scan (every stabilizer of the chunkwise form), small fp64 kernels, and the inter-chunk
// state step. The forward (mlstm_cpu_fwd.cpp) and the backward (mlstm_cpu_bwd.cpp) are built from these.
//
// Notation follows docs/algorithm.md. Per (batch, head) and per chunk c (tokens t = cL + tau):
//   b_tau  = sum_{s<=tau} phi_s          (inclusive, local to the chunk)
//   x_tau  = iota_tau - b_tau
//   M_tau  = max(m^_c, max_{sigma<=tau} x_sigma)   (exp)        M_tau = -b_tau   (sig, so that m == 0)
// Then m_t = b_tau + M_tau, and every exponent the algorithm needs is a difference of these numbers that is
// <= 0 *as computed in floating point* (the stabilizer bounds every exponent by 0):
//   intra-chunk weight  e^{D_{tau,sigma} - m_t}     = e^{x_sigma - M_tau}                (sigma <= tau)
//   inter-chunk weight  w_t = e^{b_tau + m^_c - m_t} = e^{m^_c - M_tau}
//   state weight        e^{a_sigma - m^_{c+1}}       = e^{x_sigma - M_last}   (M_last = M of the chunk's last token)
//   state decay         e^{g_c + m^_c - m^_{c+1}}    = e^{m^_c - M_last}
//   next stabilizer     m^_{c+1} = g_c + M_last      (= m of the chunk's last token, bit for bit)
// For sig, m^_c = 0 and M = -b turn these into e^{b_tau - b_sigma + iota_sigma}, e^{b_tau}, e^{g - b + iota}, e^{g}.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "core/dtype.hpp"
#include "core/status.hpp"
#include "tfla/tfla.h"

namespace tfla::cpu::detail {

// Tokens per query tile and per key tile of the intra-chunk part (the GPU kernels' thread-block tile).
constexpr int64_t kTile = 16;

// ---------------------------------------------------------------------------------------------------------
// Problem sizes and options, resolved once per call.
struct Dims {
  int64_t B, H, S, K, V;  // K = Dk, V = Dv
  int64_t L;              // chunk length, clipped to S (a chunk longer than the sequence is the whole sequence)
  int64_t NC;             // number of chunks; the last one has S - (NC-1)*L tokens
  bool exp;               // variant EXP (else SIG)
  bool normalize;         // divide by (den + eps); always true for EXP
  double scale, eps;

  static Dims of(const tfla_mlstm_problem& p) {
    Dims d;
    d.B = p.batch;
    d.H = p.heads;
    d.S = p.seq_len;
    d.K = p.dim_qk;
    d.V = p.dim_v;
    d.L = std::min<int64_t>(p.chunk_size, p.seq_len);
    d.NC = (d.S + d.L - 1) / d.L;
    d.exp = p.variant == TFLA_VARIANT_EXP;
    d.normalize = d.exp || p.normalize != 0;
    d.scale = static_cast<double>(p.scale);
    d.eps = static_cast<double>(p.eps);
    return d;
  }
  int64_t chunk_begin(int64_t c) const { return c * L; }
  int64_t chunk_len(int64_t c) const { return std::min(L, S - c * L); }
};

// ---------------------------------------------------------------------------------------------------------
// A tensor of the C ABI bound to one (batch, head): element (i, j) of the remaining (at most two) dimensions.
// Rank 4 (B,H,S,D) / (B,H,Dk,Dv): (i, j); rank 3 (B,H,S) / (B,H,Dk): (i); rank 2 (B,H): (). Strides past the
// rank are ignored (they may hold anything), stride 0 on an input broadcasts.
struct HeadView {
  void* data = nullptr;
  int32_t dtype = TFLA_DTYPE_F32;
  int64_t base = 0, s_i = 0, s_j = 0;

  HeadView(const tfla_tensor& t, int rank, int64_t b, int64_t h)
      : data(t.data), dtype(t.dtype), base(b * t.stride[0] + h * t.stride[1]),
        s_i(rank >= 3 ? t.stride[2] : 0), s_j(rank >= 4 ? t.stride[3] : 0) {}

  bool present() const { return data != nullptr; }
  double get(int64_t i = 0, int64_t j = 0) const { return load_as_double(data, dtype, base + i * s_i + j * s_j); }
  void set(int64_t i, int64_t j, double value) const { store_from_double(data, dtype, base + i * s_i + j * s_j, value); }
};

// Copy rows t0 .. t0+n-1 (each of D elements) of a per-head (S, D) view into a dense fp64 n x D buffer,
// multiplied by `mul`. Every later loop then runs over contiguous fp64 rows.
inline void load_rows(const HeadView& src, int64_t t0, int64_t n, int64_t D, double mul, double* dst) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t e = 0; e < D; ++e) dst[r * D + e] = mul * src.get(t0 + r, e);
}

// Write a dense fp64 row of D elements as row t of a per-head (S, D) view, times `mul`.
inline void store_row(const HeadView& dst, int64_t t, int64_t D, double mul, const double* row) {
  for (int64_t e = 0; e < D; ++e) dst.set(t, e, mul * row[e]);
}

// ---------------------------------------------------------------------------------------------------------
// The caller's workspace, carved into 64-byte-aligned fp64 arrays. With a null base it only counts bytes, so
// the *_workspace_size functions and the runs share one layout function and can never disagree.
class Arena {
 public:
  explicit Arena(void* base) : base_(static_cast<char*>(base)) {}
  double* doubles(int64_t n) {
    const size_t off = used_;
    used_ += round_up(static_cast<size_t>(n) * sizeof(double), 64);
    return base_ != nullptr ? reinterpret_cast<double*>(base_ + off) : nullptr;
  }
  // Bytes taken, rounded so that consecutive slots stay 256-byte aligned like the workspace itself.
  size_t bytes() const { return round_up(used_, 256); }

 private:
  static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }
  char* base_;
  size_t used_ = 0;
};

// OpenMP slots: each thread slot owns `slot_bytes` of the workspace and works through (batch, head) pairs
// taken dynamically, so memory scales with the thread count, not with B*H.
inline int64_t slots_wanted(const Dims& d) {
  return std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), d.B * d.H));
}

// Run head_fn(b, h, slot_base) for every (b, h) pair, on at most as many slots as fit `workspace_bytes`.
template <class HeadFn>
tfla_status for_each_head(const char* fn, const Dims& d, void* workspace, size_t workspace_bytes, size_t slot_bytes,
                          HeadFn&& head_fn) {
  const int64_t fit = static_cast<int64_t>(workspace_bytes / slot_bytes);
  if (fit < 1)
    return fail(TFLA_ERROR_WORKSPACE_TOO_SMALL, "%s (cpu): workspace_bytes is %zu; one thread slot needs %zu", fn,
                workspace_bytes, slot_bytes);
  const int64_t slots = std::min(slots_wanted(d), fit);
  const int64_t pairs = d.B * d.H;
  char* const ws = static_cast<char*>(workspace);
#pragma omp parallel num_threads(static_cast<int>(slots))
  {
    char* const mine = ws + static_cast<size_t>(omp_get_thread_num()) * slot_bytes;
#pragma omp for schedule(dynamic, 1)
    for (int64_t pair = 0; pair < pairs; ++pair) head_fn(pair / d.H, pair % d.H, mine);
  }
  return TFLA_SUCCESS;
}

// ---------------------------------------------------------------------------------------------------------
// Stable gate functions: finite for any finite x (the pre-activations may be +-1e4).
inline double logsigmoid(double x) { return std::min(x, 0.0) - std::log1p(std::exp(-std::fabs(x))); }
// sigma(-x) = 1 - sigma(x), the derivative of logsigmoid(x).
inline double sigmoid_neg(double x) {
  if (x >= 0) {
    const double e = std::exp(-x);
    return e / (1.0 + e);
  }
  return 1.0 / (1.0 + std::exp(x));
}

// Per-head gate prefixes: the only quantities the stabilizers need (no pass over q or k).
struct GatePrefix {
  double* b;     // S: b_tau, the inclusive log-forget cumsum local to each chunk
  double* x;     // S: x_tau = iota_tau - b_tau
  double* M;     // S: M_tau (see the top of this file); m_t = b_tau + M_tau
  double* mhat;  // NC + 1: m^_c, the stabilizer of the boundary state before chunk c (m^_0 = m0; sig: 0)

  static GatePrefix carve(const Dims& d, Arena& a) {
    GatePrefix g;
    g.b = a.doubles(d.S);
    g.x = a.doubles(d.S);
    g.M = a.doubles(d.S);
    g.mhat = a.doubles(d.NC + 1);
    return g;
  }
  // M of the last token of chunk c (the chunk's M_last).
  double M_last(const Dims& d, int64_t c) const { return M[d.chunk_begin(c) + d.chunk_len(c) - 1]; }
  // m_t as the recurrent form defines it (0 for sig).
  double m(const Dims& d, int64_t t) const { return d.exp ? b[t] + M[t] : 0.0; }
};

// One scan over the gates of head (b, h): phi = logsigmoid(f), iota = i (exp) or logsigmoid(i) (sig), the
// chunk-local cumsum b, x = iota - b, the running max M (seeded with m^_c at each chunk start), and m^_{c+1}.
inline void gate_prefixes(const Dims& d, const HeadView& igate, const HeadView& fgate, double m0, const GatePrefix& g) {
  g.mhat[0] = d.exp ? m0 : 0.0;
  for (int64_t c = 0; c < d.NC; ++c) {
    const int64_t t0 = d.chunk_begin(c), Lc = d.chunk_len(c);
    double b = 0.0, run = g.mhat[c];
    for (int64_t tau = 0; tau < Lc; ++tau) {
      const int64_t t = t0 + tau;
      const double phi = logsigmoid(fgate.get(t));
      const double iota = d.exp ? igate.get(t) : logsigmoid(igate.get(t));
      b += phi;
      g.b[t] = b;
      g.x[t] = iota - b;
      run = std::max(run, g.x[t]);
      g.M[t] = d.exp ? run : -b;
    }
    // m^_{c+1} = g_c + M_last: the recurrent m of the chunk's last token (0 for sig).
    g.mhat[c + 1] = d.exp ? b + g.M[t0 + Lc - 1] : 0.0;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Small fp64 kernels over contiguous rows (omp simd lets the compiler vectorize the reduction too).
inline double dot(const double* __restrict a, const double* __restrict b, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t e = 0; e < n; ++e) s += a[e] * b[e];
  return s;
}

// y += alpha * x
inline void axpy(int64_t n, double alpha, const double* __restrict x, double* __restrict y) {
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) y[e] += alpha * x[e];
}

inline void scale_inplace(int64_t n, double alpha, double* y) {
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) y[e] *= alpha;
}

inline void fill_zero(int64_t n, double* y) { std::fill(y, y + n, 0.0); }

// Raw score tile: out[a][j] = A_row(i0+a) . B_row(j0+j) for a < ni, j < nj (rows of length D; row stride kTile).
// Used for q^ k^T (D = Dk) and for dh' v^T (D = Dv).
inline void score_tile(const double* A, int64_t i0, int64_t ni, const double* Bm, int64_t j0, int64_t nj, int64_t D,
                       double* out) {
  for (int64_t a = 0; a < ni; ++a)
    for (int64_t j = 0; j < nj; ++j) out[a * kTile + j] = dot(A + (i0 + a) * D, Bm + (j0 + j) * D, D);
}

// Causal decay tile of the query tile [i0, i0+ni) against the key tile [j0, j0+nj) of one chunk:
// E[a][j] = e^{D_{tau,sigma} - m_tau} = e^{x_sigma - M_tau} for sigma = j0+j <= tau = i0+a, else 0 (masked).
// x and M point at the chunk's first token.
inline void causal_decay_tile(const double* x, const double* M, int64_t i0, int64_t ni, int64_t j0, int64_t nj,
                              double* E) {
  for (int64_t a = 0; a < ni; ++a) {
    const int64_t tau = i0 + a;
    for (int64_t j = 0; j < nj; ++j) {
      const int64_t sigma = j0 + j;
      E[a * kTile + j] = sigma <= tau ? std::exp(x[sigma] - M[tau]) : 0.0;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// The inter-chunk recurrence, one chunk boundary (docs/algorithm.md "Forward"):
//   C^_{c+1} = e^{m^_c - M_last} C^_c + sum_sigma e^{x_sigma - M_last} k_sigma v_sigma^T      (Dk x Dv)
//   n^_{c+1} = e^{m^_c - M_last} n^_c + sum_sigma e^{x_sigma - M_last} k_sigma                (Dk)
// Kc (Lc x Dk) and Vc (Lc x Dv) hold the chunk's k and v; x points at the chunk's first token.
inline void advance_state(const Dims& d, int64_t Lc, const double* Kc, const double* Vc, const double* x,
                          double mhat_c, double M_last, double* C, double* n) {
  const double decay = std::exp(mhat_c - M_last);
  scale_inplace(d.K * d.V, decay, C);
  scale_inplace(d.K, decay, n);
  for (int64_t sigma = 0; sigma < Lc; ++sigma) {
    const double a = std::exp(x[sigma] - M_last);
    if (a == 0.0) continue;  // underflowed weight (e.g. gates of -1e4): no contribution
    const double* k = Kc + sigma * d.K;
    const double* v = Vc + sigma * d.V;
    for (int64_t e = 0; e < d.K; ++e) {
      axpy(d.V, a * k[e], v, C + e * d.V);
      n[e] += a * k[e];
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// The per-head drivers (mlstm_cpu_fwd.cpp, mlstm_cpu_bwd.cpp) and the bytes of one thread slot of each.
size_t fwd_slot_bytes(const Dims& d);
size_t bwd_slot_bytes(const Dims& d);
void forward_head(const tfla_mlstm_fwd_params& p, const Dims& d, int64_t b, int64_t h, void* slot);
void backward_head(const tfla_mlstm_bwd_params& p, const Dims& d, int64_t b, int64_t h, void* slot);

}  // namespace tfla::cpu::detail
