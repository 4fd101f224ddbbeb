// CPU backward of the chunkwise (TFLA) mLSTM, per (batch, head), in fp64 (docs/algorithm.md "Backward").
// Gradients of h (and of c_last, n_last) with den and every stabilizer m held constant.
//
// With dh'_t = dh_t / (den_t + eps) (sig, normalize=0: dh'_t = dh_t) and E_{tau,sigma} = e^{x_sigma - M_tau}:
//   dq^_t    = w_t C^_c dh'_t + sum_{sigma<=tau} E (dh'_tau . v_sigma) k_sigma            needs C^_c   (forward order)
//   dk_sigma = sum_{tau>=sigma} E (dh'_tau . v_sigma) q^_tau + e^{x_sigma - M_last} (dC^_{c+1} v_sigma + dn^_{c+1})
//   dv_sigma = sum_{tau>=sigma} E (q^_tau . k_sigma) dh'_tau + e^{x_sigma - M_last} dC^_{c+1}^T k_sigma
//                                                                                    need dC^_{c+1} (reverse order)
//   dC^_c = e^{m^_c - M_last} dC^_{c+1} + sum_tau w_tau q^_tau dh'_tau^T,   dn^_c = e^{m^_c - M_last} dn^_{c+1}
// The GPU materializes the boundary states C^_c and the adjoints dC^_c and then runs every chunk in parallel.
// One CPU thread owns a head, so it needs neither: pass A walks the chunks forward with the running C^_c and
// produces dq (and q . dq per token, and C_last / n_last); pass B walks them in reverse with the running
// dC^_{c+1} and produces dk, dv, the gate gradients and finally dc0 = dC^_0, dn0 = dn^_0. Each pass tiles its
// chunk like the GPU kernels: pass A over query tiles (looping over key tiles at or left of the diagonal),
// pass B over key tiles (looping over query tiles at or right of it). Both recompute the decay tiles from the
// gate prefixes, which cost one scan over the gates.
// SPDX-License-Identifier: Apache-2.0
#include "cpu/mlstm_cpu_common.hpp"

namespace tfla::cpu::detail {
namespace {

// The tensors of one (batch, head).
struct BwdViews {
  HeadView q, k, v, igate, fgate, c0, n0, m0, den_token, dh, dc_last, dn_last, dq, dk, dv, digate, dfgate, dc0, dn0;
  BwdViews(const tfla_mlstm_bwd_params& p, int64_t b, int64_t h)
      : q(p.q, 4, b, h), k(p.k, 4, b, h), v(p.v, 4, b, h), igate(p.igate, 3, b, h), fgate(p.fgate, 3, b, h),
        c0(p.c0, 4, b, h), n0(p.n0, 3, b, h), m0(p.m0, 2, b, h), den_token(p.den_token, 3, b, h), dh(p.dh, 4, b, h),
        dc_last(p.dc_last, 4, b, h), dn_last(p.dn_last, 3, b, h), dq(p.dq, 4, b, h), dk(p.dk, 4, b, h),
        dv(p.dv, 4, b, h), digate(p.digate, 3, b, h), dfgate(p.dfgate, 3, b, h), dc0(p.dc0, 4, b, h),
        dn0(p.dn0, 3, b, h) {}
};

// One thread slot of the backward. carve() is the single definition of the layout (size query and run).
struct BwdScratch {
  double* C;    // Dk x Dv: running boundary state C^_c (pass A)
  double* n;    // Dk:      running n^_c (pass A; for the <dn_last, n_last> term of d phi)
  double* dC;   // Dk x Dv: running adjoint dC^_{c+1} (pass B)
  double* dn;   // Dk:      running adjoint dn^_{c+1} (pass B)
  GatePrefix g;  // per-token b, x, M and per-boundary m^ of the head
  double* qdq;  // S: q_t . dq_t (= q^_t . dq^_t), from pass A to the d phi cumsum of pass B
  double* Q;    // L x Dk: the chunk's q^ = scale * q
  double* Kc;   // L x Dk: the chunk's k
  double* Vc;   // L x Dv: the chunk's v
  double* dH;   // L x Dv: the chunk's dh' = dh / (den + eps)
  double* kdk;  // L:      k . dk of the chunk's tokens
  double* dQt;  // kTile x Dk: dq^ of one query tile (pass A)
  double* dKt;  // kTile x Dk: dk of one key tile (pass B)
  double* dVt;  // kTile x Dv: dv of one key tile (pass B)
  double* S;    // kTile x kTile: q^ . k of one (query tile, key tile) pair
  double* G;    // kTile x kTile: dh' . v of that pair
  double* E;    // kTile x kTile: causal decay weights of that pair

  static BwdScratch carve(const Dims& d, Arena& a) {
    BwdScratch w;
    w.C = a.doubles(d.K * d.V);
    w.n = a.doubles(d.K);
    w.dC = a.doubles(d.K * d.V);
    w.dn = a.doubles(d.K);
    w.g = GatePrefix::carve(d, a);
    w.qdq = a.doubles(d.S);
    w.Q = a.doubles(d.L * d.K);
    w.Kc = a.doubles(d.L * d.K);
    w.Vc = a.doubles(d.L * d.V);
    w.dH = a.doubles(d.L * d.V);
    w.kdk = a.doubles(d.L);
    w.dQt = a.doubles(kTile * d.K);
    w.dKt = a.doubles(kTile * d.K);
    w.dVt = a.doubles(kTile * d.V);
    w.S = a.doubles(kTile * kTile);
    w.G = a.doubles(kTile * kTile);
    w.E = a.doubles(kTile * kTile);
    return w;
  }
};

// Copy chunk c's q^, k, v and dh' into the slot. dh' = dh / (den_t + eps) with den_t from the forward
// (den_token); sig with normalize=0 has no normalizer: dh' = dh.
void load_chunk(const Dims& d, const BwdViews& io, const BwdScratch& w, int64_t c) {
  const int64_t t0 = d.chunk_begin(c), Lc = d.chunk_len(c);
  load_rows(io.q, t0, Lc, d.K, d.scale, w.Q);
  load_rows(io.k, t0, Lc, d.K, 1.0, w.Kc);
  load_rows(io.v, t0, Lc, d.V, 1.0, w.Vc);
  for (int64_t r = 0; r < Lc; ++r) {
    const double mul = d.normalize ? 1.0 / std::max(io.den_token.get(t0 + r) + d.eps, DBL_MIN) : 1.0;
    for (int64_t e = 0; e < d.V; ++e) w.dH[r * d.V + e] = mul * io.dh.get(t0 + r, e);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Pass A, one query tile [i0, i0+ni) of chunk c: dq^ (inter part through C^_c, then the intra-chunk key tiles),
// q . dq per token, and dq = scale * dq^ written out.
void chunk_dq_tile(const Dims& d, const BwdViews& io, const BwdScratch& w, int64_t c, int64_t i0, int64_t ni) {
  const int64_t t0 = d.chunk_begin(c), Lc = d.chunk_len(c);
  const double* x = w.g.x + t0;
  const double* M = w.g.M + t0;
  // Inter-chunk: dq^_t = w_t C^_c dh'_t, w_t = e^{m^_c - M_t}.
  for (int64_t a = 0; a < ni; ++a) {
    const int64_t tau = i0 + a;
    double* dq = w.dQt + a * d.K;
    const double wt = std::exp(w.g.mhat[c] - M[tau]);
    for (int64_t e = 0; e < d.K; ++e) dq[e] = wt == 0.0 ? 0.0 : wt * dot(w.C + e * d.V, w.dH + tau * d.V, d.V);
  }
  // Intra-chunk: dq^_tau += sum_{sigma<=tau} E (dh'_tau . v_sigma) k_sigma, key tiles at or left of the diagonal.
  for (int64_t j0 = 0; j0 <= i0; j0 += kTile) {
    const int64_t nj = std::min(kTile, Lc - j0);
    score_tile(w.dH, i0, ni, w.Vc, j0, nj, d.V, w.G);
    causal_decay_tile(x, M, i0, ni, j0, nj, w.E);
    for (int64_t a = 0; a < ni; ++a)
      for (int64_t j = 0; j < nj; ++j) {
        const double e = w.E[a * kTile + j];
        if (e != 0.0) axpy(d.K, e * w.G[a * kTile + j], w.Kc + (j0 + j) * d.K, w.dQt + a * d.K);
      }
  }
  for (int64_t a = 0; a < ni; ++a) {
    const int64_t tau = i0 + a;
    w.qdq[t0 + tau] = dot(w.Q + tau * d.K, w.dQt + a * d.K, d.K);
    if (io.dq.present()) store_row(io.dq, t0 + tau, d.K, d.scale, w.dQt + a * d.K);
  }
}

// Pass A: chunks in forward order with the running state (C^_c, n^_c); leaves (C_last, n_last) in w.C, w.n
// when `need_last`.
void pass_dq(const Dims& d, const BwdViews& io, const BwdScratch& w, bool need_last) {
  for (int64_t e = 0; e < d.K; ++e) {
    for (int64_t f = 0; f < d.V; ++f) w.C[e * d.V + f] = io.c0.present() ? io.c0.get(e, f) : 0.0;
    w.n[e] = io.n0.present() ? io.n0.get(e) : 0.0;
  }
  for (int64_t c = 0; c < d.NC; ++c) {
    const int64_t t0 = d.chunk_begin(c), Lc = d.chunk_len(c);
    load_chunk(d, io, w, c);
    for (int64_t i0 = 0; i0 < Lc; i0 += kTile) chunk_dq_tile(d, io, w, c, i0, std::min(kTile, Lc - i0));
    if (c + 1 < d.NC || need_last)
      advance_state(d, Lc, w.Kc, w.Vc, w.g.x + t0, w.g.mhat[c], w.g.M_last(d, c), w.C, w.n);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Pass B, one key tile [j0, j0+nj) of chunk c: dk and dv (inter part through dC^_{c+1}, dn^_{c+1}, then the
// intra-chunk query tiles at or right of the diagonal), k . dk per token, dk and dv written out.
void chunk_dkdv_tile(const Dims& d, const BwdViews& io, const BwdScratch& w, int64_t c, int64_t j0, int64_t nj) {
  const int64_t t0 = d.chunk_begin(c), Lc = d.chunk_len(c);
  const double* x = w.g.x + t0;
  const double* M = w.g.M + t0;
  const double M_last = w.g.M_last(d, c);
  // Inter-chunk (the state path): dk_sigma = e^{x - M_last} (dC v_sigma + dn), dv_sigma = e^{x - M_last} dC^T k_sigma.
  for (int64_t j = 0; j < nj; ++j) {
    const int64_t sigma = j0 + j;
    const double ea = std::exp(x[sigma] - M_last);
    const double* k = w.Kc + sigma * d.K;
    const double* v = w.Vc + sigma * d.V;
    double* dk = w.dKt + j * d.K;
    double* dv = w.dVt + j * d.V;
    fill_zero(d.V, dv);
    if (ea == 0.0) {
      fill_zero(d.K, dk);
      continue;
    }
    for (int64_t e = 0; e < d.K; ++e) {
      dk[e] = ea * (dot(w.dC + e * d.V, v, d.V) + w.dn[e]);
      axpy(d.V, ea * k[e], w.dC + e * d.V, dv);
    }
  }
  // Intra-chunk: dk_sigma += sum_tau E (dh'_tau . v_sigma) q^_tau, dv_sigma += sum_tau E (q^_tau . k_sigma) dh'_tau.
  for (int64_t i0 = j0; i0 < Lc; i0 += kTile) {
    const int64_t ni = std::min(kTile, Lc - i0);
    score_tile(w.Q, i0, ni, w.Kc, j0, nj, d.K, w.S);
    score_tile(w.dH, i0, ni, w.Vc, j0, nj, d.V, w.G);
    causal_decay_tile(x, M, i0, ni, j0, nj, w.E);
    for (int64_t j = 0; j < nj; ++j)
      for (int64_t a = 0; a < ni; ++a) {
        const double e = w.E[a * kTile + j];
        if (e == 0.0) continue;
        axpy(d.K, e * w.G[a * kTile + j], w.Q + (i0 + a) * d.K, w.dKt + j * d.K);
        axpy(d.V, e * w.S[a * kTile + j], w.dH + (i0 + a) * d.V, w.dVt + j * d.V);
      }
  }
  for (int64_t j = 0; j < nj; ++j) {
    const int64_t sigma = j0 + j;
    w.kdk[sigma] = dot(w.Kc + sigma * d.K, w.dKt + j * d.K, d.K);
    if (io.dk.present()) store_row(io.dk, t0 + sigma, d.K, 1.0, w.dKt + j * d.K);
    if (io.dv.present()) store_row(io.dv, t0 + sigma, d.V, 1.0, w.dVt + j * d.V);
  }
}

// Gate gradients of chunk c, tokens in reverse: d iota_t = k_t . dk_t; d phi_t = carry + sum_{u>=t} (q.dq - k.dk)_u
// where the carry holds the later chunks' sum plus <dc_last, C_last> + <dn_last, n_last>.
// di = d iota (exp) | d iota sigma(-i) (sig);  df = d phi sigma(-f).
void chunk_gate_grads(const Dims& d, const BwdViews& io, const BwdScratch& w, int64_t c, double* dphi_carry) {
  const int64_t t0 = d.chunk_begin(c), Lc = d.chunk_len(c);
  for (int64_t tau = Lc - 1; tau >= 0; --tau) {
    const int64_t t = t0 + tau;
    const double diota = w.kdk[tau];
    if (io.digate.present()) io.digate.set(t, 0, d.exp ? diota : diota * sigmoid_neg(io.igate.get(t)));
    if (io.dfgate.present()) {
      *dphi_carry += w.qdq[t] - diota;
      io.dfgate.set(t, 0, *dphi_carry * sigmoid_neg(io.fgate.get(t)));
    }
  }
}

// dC^_c = e^{m^_c - M_last} dC^_{c+1} + sum_tau w_tau q^_tau dh'_tau^T,  dn^_c = e^{m^_c - M_last} dn^_{c+1}.
// (h reaches n only through den, which is held constant: n gets no h term.)
void retreat_adjoint(const Dims& d, const BwdScratch& w, int64_t c) {
  const int64_t t0 = d.chunk_begin(c), Lc = d.chunk_len(c);
  const double* M = w.g.M + t0;
  const double decay = std::exp(w.g.mhat[c] - w.g.M_last(d, c));
  scale_inplace(d.K * d.V, decay, w.dC);
  scale_inplace(d.K, decay, w.dn);
  for (int64_t tau = 0; tau < Lc; ++tau) {
    const double wt = std::exp(w.g.mhat[c] - M[tau]);
    if (wt == 0.0) continue;
    const double* q = w.Q + tau * d.K;
    for (int64_t e = 0; e < d.K; ++e) axpy(d.V, wt * q[e], w.dH + tau * d.V, w.dC + e * d.V);
  }
}

// Pass B: chunks in reverse with the running adjoint, starting from (dc_last, dn_last) (zeros when absent).
void pass_dkdv(const Dims& d, const BwdViews& io, const BwdScratch& w, double dphi_last) {
  for (int64_t e = 0; e < d.K; ++e) {
    for (int64_t f = 0; f < d.V; ++f) w.dC[e * d.V + f] = io.dc_last.present() ? io.dc_last.get(e, f) : 0.0;
    w.dn[e] = io.dn_last.present() ? io.dn_last.get(e) : 0.0;
  }
  double dphi_carry = dphi_last;
  for (int64_t c = d.NC - 1; c >= 0; --c) {
    const int64_t Lc = d.chunk_len(c);
    load_chunk(d, io, w, c);
    for (int64_t j0 = 0; j0 < Lc; j0 += kTile) chunk_dkdv_tile(d, io, w, c, j0, std::min(kTile, Lc - j0));
    chunk_gate_grads(d, io, w, c, &dphi_carry);
    retreat_adjoint(d, w, c);
  }
  // The adjoint of the initial state: exact even when c0 / n0 were absent (zeros).
  for (int64_t e = 0; e < d.K; ++e) {
    if (io.dc0.present())
      for (int64_t f = 0; f < d.V; ++f) io.dc0.set(e, f, w.dC[e * d.V + f]);
    if (io.dn0.present()) io.dn0.set(e, 0, w.dn[e]);
  }
}

}  // namespace

size_t bwd_slot_bytes(const Dims& d) {
  Arena a(nullptr);
  BwdScratch::carve(d, a);
  return a.bytes();
}

void backward_head(const tfla_mlstm_bwd_params& p, const Dims& d, int64_t b, int64_t h, void* slot) {
  Arena arena(slot);
  const BwdScratch w = BwdScratch::carve(d, arena);
  const BwdViews io(p, b, h);

  // The stabilizers are recomputed in fp64 from the gates (one scan, bit-identical to the forward's):
  // m_token holds the same m_t rounded to fp32, which would cost up to |m| 2^-24 relative (5e-4 at |m| = 1e4).
  const double m0 = io.m0.present() ? io.m0.get() : 0.0;
  gate_prefixes(d, io.igate, io.fgate, m0, w.g);

  const bool want_dphi = io.dfgate.present();
  const bool want_last_terms = want_dphi && (io.dc_last.present() || io.dn_last.present());
  const bool run_a = io.dq.present() || want_dphi;
  const bool run_b = io.dk.present() || io.dv.present() || io.digate.present() || want_dphi || io.dc0.present() ||
                     io.dn0.present();

  if (run_a) pass_dq(d, io, w, want_last_terms);

  // d phi's final-state term <dc_last, C_last> + <dn_last, n_last> (C_last, n_last from pass A).
  double dphi_last = 0.0;
  if (want_last_terms)
    for (int64_t e = 0; e < d.K; ++e) {
      if (io.dc_last.present())
        for (int64_t f = 0; f < d.V; ++f) dphi_last += io.dc_last.get(e, f) * w.C[e * d.V + f];
      if (io.dn_last.present()) dphi_last += io.dn_last.get(e) * w.n[e];
    }

  if (run_b) pass_dkdv(d, io, w, dphi_last);
}

}  // namespace tfla::cpu::detail
