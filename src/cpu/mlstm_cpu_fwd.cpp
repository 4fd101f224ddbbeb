// CPU forward of the chunkwise (TFLA) mLSTM, per (batch, head), in fp64 (docs/algorithm.md "Forward").
//
// The GPU computes all boundary states first (one kernel) and then every chunk's output in parallel
// (another kernel, several thread blocks per chunk over query tiles). On the CPU one thread owns a whole
// head, so it walks the chunks in order and keeps the running boundary state (C^_c, n^_c, m^_c) in its
// slot: for each chunk it first computes the outputs from the state *before* the chunk plus the tiled
// intra-chunk part, then advances the state over the chunk. The quantities are exactly the GPU's; only
// the boundary states are not materialized (memory independent of S/L).
// SPDX-License-Identifier: Apache-2.0
#include "cpu/mlstm_cpu_common.hpp"

namespace tfla::cpu::detail {
namespace {

// The tensors of one (batch, head).
struct FwdViews {
  HeadView q, k, v, igate, fgate, c0, n0, m0, h, c_last, n_last, m_last, m_token, den_token;
  FwdViews(const tfla_mlstm_fwd_params& p, int64_t b, int64_t hd)
      : q(p.q, 4, b, hd), k(p.k, 4, b, hd), v(p.v, 4, b, hd), igate(p.igate, 3, b, hd), fgate(p.fgate, 3, b, hd),
        c0(p.c0, 4, b, hd), n0(p.n0, 3, b, hd), m0(p.m0, 2, b, hd), h(p.h, 4, b, hd), c_last(p.c_last, 4, b, hd),
        n_last(p.n_last, 3, b, hd), m_last(p.m_last, 2, b, hd), m_token(p.m_token, 3, b, hd),
        den_token(p.den_token, 3, b, hd) {}
};

// One thread slot of the forward. carve() is the single definition of the layout (size query and run).
struct FwdScratch {
  double* C;      // Dk x Dv: running boundary state C^_c (row e = key dim, contiguous over Dv)
  double* n;      // Dk:      running n^_c
  GatePrefix g;   // per-token b, x, M and per-boundary m^ of the head
  double* Q;      // L x Dk:  the chunk's q^ = scale * q
  double* Kc;     // L x Dk:  the chunk's k
  double* Vc;     // L x Dv:  the chunk's v
  double* num;    // kTile x Dv: numerators of one query tile
  double* nq;     // kTile:      n . q^ of one query tile (before the abs/max)
  double* S;      // kTile x kTile: raw scores q^ . k of one (query tile, key tile) pair
  double* E;      // kTile x kTile: causal decay weights of that pair

  static FwdScratch carve(const Dims& d, Arena& a) {
    FwdScratch w;
    w.C = a.doubles(d.K * d.V);
    w.n = a.doubles(d.K);
    w.g = GatePrefix::carve(d, a);
    w.Q = a.doubles(d.L * d.K);
    w.Kc = a.doubles(d.L * d.K);
    w.Vc = a.doubles(d.L * d.V);
    w.num = a.doubles(kTile * d.V);
    w.nq = a.doubles(kTile);
    w.S = a.doubles(kTile * kTile);
    w.E = a.doubles(kTile * kTile);
    return w;
  }
};

// Inter-chunk part of one query tile [i0, i0+ni) of chunk c: the contribution of every token before the
// chunk, through the boundary state: num_t = w_t C^_c^T q^_t, nq_t = w_t n^_c . q^_t, w_t = e^{m^_c - M_t}.
void inter_chunk_output(const Dims& d, const FwdScratch& w, const double* M, double mhat_c, int64_t i0, int64_t ni) {
  for (int64_t a = 0; a < ni; ++a) {
    const int64_t tau = i0 + a;
    const double* q = w.Q + tau * d.K;
    double* num = w.num + a * d.V;
    fill_zero(d.V, num);
    const double wt = std::exp(mhat_c - M[tau]);
    w.nq[a] = 0.0;
    if (wt == 0.0) continue;  // the past is forgotten entirely (underflow): skip the Dk x Dv product
    for (int64_t e = 0; e < d.K; ++e) axpy(d.V, wt * q[e], w.C + e * d.V, num);
    w.nq[a] = wt * dot(w.n, q, d.K);
  }
}

// Intra-chunk part of one query tile: loop over the key tiles at or left of the diagonal (tiles right of
// it are fully masked and skipped), P = E o (q^ k^T), num += P v, nq += rowsum(P).
void intra_chunk_output(const Dims& d, const FwdScratch& w, const double* x, const double* M, int64_t Lc, int64_t i0,
                        int64_t ni) {
  for (int64_t j0 = 0; j0 <= i0; j0 += kTile) {
    const int64_t nj = std::min(kTile, Lc - j0);
    score_tile(w.Q, i0, ni, w.Kc, j0, nj, d.K, w.S);
    causal_decay_tile(x, M, i0, ni, j0, nj, w.E);
    for (int64_t a = 0; a < ni; ++a) {
      double* num = w.num + a * d.V;
      for (int64_t j = 0; j < nj; ++j) {
        const double e = w.E[a * kTile + j];
        if (e == 0.0) continue;  // masked (sigma > tau) or underflowed
        const double p = e * w.S[a * kTile + j];
        w.nq[a] += p;
        axpy(d.V, p, w.Vc + (j0 + j) * d.V, num);
      }
    }
  }
}

// h, m_token and den_token of the tokens of one query tile of chunk c (t0 = first token of the chunk):
//   den_t = max(|nq_t|, e^{-m_t}) (exp) | max(|nq_t|, 1) (sig, normalize);  h_t = num_t / (den_t + eps)
//   sig, normalize=0: h_t = num_t and den_t is reported as 1.
void finalize_tile(const Dims& d, const FwdViews& io, const FwdScratch& w, int64_t t0, int64_t i0, int64_t ni) {
  for (int64_t a = 0; a < ni; ++a) {
    const int64_t t = t0 + i0 + a;
    const double m = w.g.m(d, t);
    double den = 1.0, mul = 1.0;
    if (d.normalize) {
      den = std::max(std::fabs(w.nq[a]), d.exp ? std::exp(-m) : 1.0);  // e^{-m} = inf for m < -709: h -> 0
      mul = 1.0 / std::max(den + d.eps, DBL_MIN);                       // (guard: eps = 0 and den underflowed)
    }
    store_row(io.h, t, d.V, mul, w.num + a * d.V);
    if (io.m_token.present()) io.m_token.set(t, 0, m);
    // den_token is fp32: clamp so that it stays finite (dh / FLT_MAX is 0 to every precision that matters).
    if (io.den_token.present()) io.den_token.set(t, 0, std::min(den, static_cast<double>(FLT_MAX)));
  }
}

// The outputs of chunk c from the boundary state before it (w.C, w.n, m^_c), query tile by query tile.
void chunk_output(const Dims& d, const FwdViews& io, const FwdScratch& w, int64_t c) {
  const int64_t t0 = d.chunk_begin(c), Lc = d.chunk_len(c);
  const double* x = w.g.x + t0;
  const double* M = w.g.M + t0;
  for (int64_t i0 = 0; i0 < Lc; i0 += kTile) {
    const int64_t ni = std::min(kTile, Lc - i0);
    inter_chunk_output(d, w, M, w.g.mhat[c], i0, ni);
    intra_chunk_output(d, w, x, M, Lc, i0, ni);
    finalize_tile(d, io, w, t0, i0, ni);
  }
}

}  // namespace

size_t fwd_slot_bytes(const Dims& d) {
  Arena a(nullptr);
  FwdScratch::carve(d, a);
  return a.bytes();
}

void forward_head(const tfla_mlstm_fwd_params& p, const Dims& d, int64_t b, int64_t h, void* slot) {
  Arena arena(slot);
  const FwdScratch w = FwdScratch::carve(d, arena);
  const FwdViews io(p, b, h);

  // Initial state (C^_0, n^_0, m^_0) = (c0, n0, m0), zeros when absent; m0 is ignored for sig.
  for (int64_t e = 0; e < d.K; ++e) {
    for (int64_t f = 0; f < d.V; ++f) w.C[e * d.V + f] = io.c0.present() ? io.c0.get(e, f) : 0.0;
    w.n[e] = io.n0.present() ? io.n0.get(e) : 0.0;
  }
  const double m0 = io.m0.present() ? io.m0.get() : 0.0;
  gate_prefixes(d, io.igate, io.fgate, m0, w.g);

  const bool want_state = io.c_last.present() || io.n_last.present();
  for (int64_t c = 0; c < d.NC; ++c) {
    const int64_t t0 = d.chunk_begin(c), Lc = d.chunk_len(c);
    load_rows(io.q, t0, Lc, d.K, d.scale, w.Q);
    load_rows(io.k, t0, Lc, d.K, 1.0, w.Kc);
    load_rows(io.v, t0, Lc, d.V, 1.0, w.Vc);
    chunk_output(d, io, w, c);
    if (c + 1 < d.NC || want_state)
      advance_state(d, Lc, w.Kc, w.Vc, w.g.x + t0, w.g.mhat[c], w.g.M_last(d, c), w.C, w.n);
  }

  // Final state (C^_NC, n^_NC, m^_NC); m^_NC = m_{S-1} (0 for sig).
  for (int64_t e = 0; e < d.K; ++e) {
    if (io.c_last.present())
      for (int64_t f = 0; f < d.V; ++f) io.c_last.set(e, f, w.C[e * d.V + f]);
    if (io.n_last.present()) io.n_last.set(e, 0, w.n[e]);
  }
  if (io.m_last.present()) io.m_last.set(0, 0, w.g.mhat[d.NC]);
}

}  // namespace tfla::cpu::detail
