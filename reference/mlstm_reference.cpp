// fp64 references of the mLSTM cell (docs/spec-mlstm.md): recurrent and parallel forms, forward and
// backward. Written from the spec only; nothing here is shared with src/ (the backends these check).
//
// Conventions (the spec's, restated where the header leaves them open):
//  - phi_t = logsigmoid(f_t) computed as min(x,0) - log1p(exp(-|x|)); iota_t = i_t (exp) or logsigmoid(i_t) (sig).
//  - q^ = scale * q, scale = Dk^-1/2 when Problem::scale == 0.
//  - m_token[t] = m_t (0 for sig), m_last = m_{S-1} (0 for sig).
//  - den_token[t] = max(|n_t . q^_t|, e^{-m_t}) (exp) or max(|n_t . q^_t|, 1) (sig). For sig with
//    normalize = false the output does not use it; den_token still holds max(|n_t . q^_t|, 1), the value it
//    would have with normalize = true (tfla.h leaves it undefined there; tests must not compare it).
//  - Backward: gradients with den_t and every m held constant (stop-gradient), including the
//    <dC_last, C_last> + <dn_last, n_last> terms of d phi; dn0 gets only the dn_last path; m0 has no gradient.
//  - The backward recomputes the forward internally (it does not take the forward's m/den).
// SPDX-License-Identifier: Apache-2.0
#include "reference/mlstm_reference.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tfla::ref {
namespace {

double logsigmoid(double x) { return std::min(x, 0.0) - std::log1p(std::exp(-std::fabs(x))); }

double sigmoid(double x) {
  if (x >= 0.0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

bool is_exp(const Problem& p) { return p.variant == TFLA_VARIANT_EXP; }
bool normalizes(const Problem& p) { return is_exp(p) || p.normalize; }
double scale_of(const Problem& p) { return p.scale != 0.0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(p.Dk)); }

void check_size(const char* fn, const char* name, const std::vector<double>& v, int64_t n, bool optional) {
  if (optional && v.empty()) return;
  if (static_cast<int64_t>(v.size()) != n)
    throw std::invalid_argument(std::string("tfla::ref::") + fn + ": " + name + " has " + std::to_string(v.size()) +
                                " elements; expected " + std::to_string(n));
}

void check_problem(const char* fn, const Problem& p, const Inputs& x) {
  if (p.B < 1 || p.H < 1 || p.S < 1 || p.Dk < 1 || p.Dv < 1)
    throw std::invalid_argument(std::string("tfla::ref::") + fn + ": every size must be >= 1");
  if (p.variant != TFLA_VARIANT_EXP && p.variant != TFLA_VARIANT_SIG)
    throw std::invalid_argument(std::string("tfla::ref::") + fn + ": unknown variant");
  if (is_exp(p) && !p.normalize)
    throw std::invalid_argument(std::string("tfla::ref::") + fn + ": normalize = false is defined only for sig");
  const int64_t BH = p.B * p.H, BHS = BH * p.S;
  check_size(fn, "q", x.q, BHS * p.Dk, false);
  check_size(fn, "k", x.k, BHS * p.Dk, false);
  check_size(fn, "v", x.v, BHS * p.Dv, false);
  check_size(fn, "i", x.i, BHS, false);
  check_size(fn, "f", x.f, BHS, false);
  check_size(fn, "c0", x.c0, BH * p.Dk * p.Dv, true);
  check_size(fn, "n0", x.n0, BH * p.Dk, true);
  check_size(fn, "m0", x.m0, BH, true);
}

void check_grads(const char* fn, const Problem& p, const OutputGrads& g) {
  const int64_t BH = p.B * p.H;
  check_size(fn, "dh", g.dh, BH * p.S * p.Dv, false);
  check_size(fn, "dc_last", g.dc_last, BH * p.Dk * p.Dv, true);
  check_size(fn, "dn_last", g.dn_last, BH * p.Dk, true);
}

// Read-only views of one (batch, head).
struct Head {
  int64_t S, K, V;
  const double *q, *k, *v, *i, *f;
  const double *c0, *n0;  // nullptr = zeros
  double m0;              // 0 for sig or when absent
};

Head head_of(const Problem& p, const Inputs& x, int64_t bh) {
  Head hd;
  hd.S = p.S;
  hd.K = p.Dk;
  hd.V = p.Dv;
  hd.q = x.q.data() + bh * p.S * p.Dk;
  hd.k = x.k.data() + bh * p.S * p.Dk;
  hd.v = x.v.data() + bh * p.S * p.Dv;
  hd.i = x.i.data() + bh * p.S;
  hd.f = x.f.data() + bh * p.S;
  hd.c0 = x.c0.empty() ? nullptr : x.c0.data() + bh * p.Dk * p.Dv;
  hd.n0 = x.n0.empty() ? nullptr : x.n0.data() + bh * p.Dk;
  hd.m0 = (is_exp(p) && !x.m0.empty()) ? x.m0[bh] : 0.0;
  return hd;
}

double c0_at(const Head& hd, int64_t r, int64_t j) { return hd.c0 ? hd.c0[r * hd.V + j] : 0.0; }
double n0_at(const Head& hd, int64_t r) { return hd.n0 ? hd.n0[r] : 0.0; }

void alloc_outputs(const Problem& p, Outputs& o) {
  const int64_t BH = p.B * p.H;
  o.h.assign(BH * p.S * p.Dv, 0.0);
  o.c_last.assign(BH * p.Dk * p.Dv, 0.0);
  o.n_last.assign(BH * p.Dk, 0.0);
  o.m_last.assign(BH, 0.0);
  o.m_token.assign(BH * p.S, 0.0);
  o.den_token.assign(BH * p.S, 0.0);
}

void alloc_grads(const Problem& p, InputGrads& d) {
  const int64_t BH = p.B * p.H;
  d.dq.assign(BH * p.S * p.Dk, 0.0);
  d.dk.assign(BH * p.S * p.Dk, 0.0);
  d.dv.assign(BH * p.S * p.Dv, 0.0);
  d.di.assign(BH * p.S, 0.0);
  d.df.assign(BH * p.S, 0.0);
  d.dc0.assign(BH * p.Dk * p.Dv, 0.0);
  d.dn0.assign(BH * p.Dk, 0.0);
}

double den_of(const Problem& p, double nq, double m) {
  return is_exp(p) ? std::max(std::fabs(nq), std::exp(-m)) : std::max(std::fabs(nq), 1.0);
}

// ------------------------------------------------------------------------------------------------------
// Recurrent form. Per head: run the step equations and (for the backward) keep every state.
struct RecurrentTrace {
  std::vector<double> C;    // (S+1) x K x V: C[0] = initial state, C[t+1] = state after token t
  std::vector<double> n;    // (S+1) x K
  std::vector<double> a, b;  // per token: state decay e^{phi+m_prev-m}, input weight e^{iota-m}
  std::vector<double> m, den;
};

void recurrent_head(const Problem& p, const Head& hd, bool keep_states, RecurrentTrace& tr, double* h) {
  const int64_t S = hd.S, K = hd.K, V = hd.V;
  const double scale = scale_of(p);
  const int64_t nstates = keep_states ? S + 1 : 2;
  tr.C.assign(nstates * K * V, 0.0);
  tr.n.assign(nstates * K, 0.0);
  tr.a.assign(S, 0.0);
  tr.b.assign(S, 0.0);
  tr.m.assign(S, 0.0);
  tr.den.assign(S, 0.0);
  for (int64_t r = 0; r < K; ++r) {
    tr.n[r] = n0_at(hd, r);
    for (int64_t j = 0; j < V; ++j) tr.C[r * V + j] = c0_at(hd, r, j);
  }
  double m_prev = hd.m0;
  std::vector<double> qh(K);
  for (int64_t t = 0; t < S; ++t) {
    const double phi = logsigmoid(hd.f[t]);
    const double iota = is_exp(p) ? hd.i[t] : logsigmoid(hd.i[t]);
    double m, a, b;
    if (is_exp(p)) {
      m = std::max(phi + m_prev, iota);
      a = std::exp(phi + m_prev - m);
      b = std::exp(iota - m);
    } else {
      m = 0.0;
      a = std::exp(phi);
      b = std::exp(iota);
    }
    const int64_t src = keep_states ? t : (t % 2), dst = keep_states ? t + 1 : ((t + 1) % 2);
    const double* Cp = &tr.C[src * K * V];
    double* Cn = &tr.C[dst * K * V];
    const double* np = &tr.n[src * K];
    double* nn = &tr.n[dst * K];
    const double* kt = hd.k + t * K;
    const double* vt = hd.v + t * V;
    for (int64_t r = 0; r < K; ++r) {
      nn[r] = a * np[r] + b * kt[r];
      for (int64_t j = 0; j < V; ++j) Cn[r * V + j] = a * Cp[r * V + j] + b * kt[r] * vt[j];
    }
    for (int64_t r = 0; r < K; ++r) qh[r] = scale * hd.q[t * K + r];
    double nq = 0.0;
    for (int64_t r = 0; r < K; ++r) nq += nn[r] * qh[r];
    const double den = den_of(p, nq, m);
    const double div = normalizes(p) ? den + p.eps : 1.0;
    for (int64_t j = 0; j < V; ++j) {
      double num = 0.0;
      for (int64_t r = 0; r < K; ++r) num += Cn[r * V + j] * qh[r];
      h[t * V + j] = num / div;
    }
    tr.a[t] = a;
    tr.b[t] = b;
    tr.m[t] = m;
    tr.den[t] = den;
    m_prev = m;
  }
}

// ------------------------------------------------------------------------------------------------------
// Parallel form. Per head: cumulative log forget F, log-weights D_ts = F_t - F_s + iota_s (s <= t), the
// initial-state weight F_t + m0, and m_t = the row maximum (exp) or 0 (sig).
struct ParallelHead {
  std::vector<double> F, iota;
  std::vector<double> m;   // per row
  std::vector<double> E;   // S x S, e^{D_ts - m_t} for s <= t, 0 above the diagonal
  std::vector<double> e0;  // e^{F_t + m0 - m_t}
  std::vector<double> qk;  // S x S, q^_t . k_s (s <= t)
  std::vector<double> den;
  double m_last = 0.0;
  std::vector<double> fin;  // e^{F_{S-1} - F_s + iota_s - m_last}: token s's weight in the final state
  double fin0 = 0.0;        // e^{F_{S-1} + m0 - m_last}: the initial state's weight in the final state
};

void parallel_weights(const Problem& p, const Head& hd, ParallelHead& ph) {
  const int64_t S = hd.S, K = hd.K;
  const double scale = scale_of(p);
  ph.F.assign(S, 0.0);
  ph.iota.assign(S, 0.0);
  double acc = 0.0;
  for (int64_t t = 0; t < S; ++t) {
    acc += logsigmoid(hd.f[t]);
    ph.F[t] = acc;
    ph.iota[t] = is_exp(p) ? hd.i[t] : logsigmoid(hd.i[t]);
  }
  ph.m.assign(S, 0.0);
  ph.E.assign(S * S, 0.0);
  ph.e0.assign(S, 0.0);
  ph.qk.assign(S * S, 0.0);
  for (int64_t t = 0; t < S; ++t) {
    const double w0 = ph.F[t] + hd.m0;
    double m = 0.0;
    if (is_exp(p)) {
      m = w0;
      for (int64_t s = 0; s <= t; ++s) m = std::max(m, ph.F[t] - ph.F[s] + ph.iota[s]);
    }
    ph.m[t] = m;
    ph.e0[t] = std::exp(w0 - m);
    for (int64_t s = 0; s <= t; ++s) {
      ph.E[t * S + s] = std::exp(ph.F[t] - ph.F[s] + ph.iota[s] - m);
      double d = 0.0;
      for (int64_t r = 0; r < K; ++r) d += hd.q[t * K + r] * hd.k[s * K + r];
      ph.qk[t * S + s] = scale * d;
    }
  }
  ph.m_last = ph.m[S - 1];
  ph.fin.assign(S, 0.0);
  for (int64_t s = 0; s < S; ++s) ph.fin[s] = std::exp(ph.F[S - 1] - ph.F[s] + ph.iota[s] - ph.m_last);
  ph.fin0 = std::exp(ph.F[S - 1] + hd.m0 - ph.m_last);
}

// h, den (and the final state) of one head from the weights.
void parallel_forward_head(const Problem& p, const Head& hd, ParallelHead& ph, double* h, double* c_last,
                           double* n_last) {
  const int64_t S = hd.S, K = hd.K, V = hd.V;
  const double scale = scale_of(p);
  ph.den.assign(S, 0.0);
  std::vector<double> num(V);
  for (int64_t t = 0; t < S; ++t) {
    const double e0 = ph.e0[t];
    double nq = 0.0;
    for (int64_t j = 0; j < V; ++j) num[j] = 0.0;
    for (int64_t r = 0; r < K; ++r) {
      const double qr = scale * hd.q[t * K + r];
      nq += e0 * n0_at(hd, r) * qr;
      for (int64_t j = 0; j < V; ++j) num[j] += e0 * c0_at(hd, r, j) * qr;
    }
    for (int64_t s = 0; s <= t; ++s) {
      const double w = ph.E[t * S + s] * ph.qk[t * S + s];
      nq += w;
      for (int64_t j = 0; j < V; ++j) num[j] += w * hd.v[s * V + j];
    }
    const double den = den_of(p, nq, ph.m[t]);
    ph.den[t] = den;
    const double div = normalizes(p) ? den + p.eps : 1.0;
    for (int64_t j = 0; j < V; ++j) h[t * V + j] = num[j] / div;
  }
  for (int64_t r = 0; r < K; ++r) {
    n_last[r] = ph.fin0 * n0_at(hd, r);
    for (int64_t j = 0; j < V; ++j) c_last[r * V + j] = ph.fin0 * c0_at(hd, r, j);
  }
  for (int64_t s = 0; s < S; ++s) {
    const double w = ph.fin[s];
    for (int64_t r = 0; r < K; ++r) {
      const double wk = w * hd.k[s * K + r];
      n_last[r] += wk;
      for (int64_t j = 0; j < V; ++j) c_last[r * V + j] += wk * hd.v[s * V + j];
    }
  }
}

}  // namespace

// ======================================================================================================

Outputs forward_recurrent(const Problem& p, const Inputs& x) {
  check_problem("forward_recurrent", p, x);
  Outputs o;
  alloc_outputs(p, o);
  const int64_t K = p.Dk, V = p.Dv, S = p.S;
  RecurrentTrace tr;
  for (int64_t bh = 0; bh < p.B * p.H; ++bh) {
    const Head hd = head_of(p, x, bh);
    recurrent_head(p, hd, false, tr, o.h.data() + bh * S * V);
    const int64_t last = S % 2;  // slot of the state after token S-1
    std::copy_n(&tr.C[last * K * V], K * V, o.c_last.data() + bh * K * V);
    std::copy_n(&tr.n[last * K], K, o.n_last.data() + bh * K);
    o.m_last[bh] = tr.m[S - 1];
    std::copy_n(tr.m.data(), S, o.m_token.data() + bh * S);
    std::copy_n(tr.den.data(), S, o.den_token.data() + bh * S);
  }
  return o;
}

Outputs forward_parallel(const Problem& p, const Inputs& x) {
  check_problem("forward_parallel", p, x);
  Outputs o;
  alloc_outputs(p, o);
  const int64_t K = p.Dk, V = p.Dv, S = p.S;
  for (int64_t bh = 0; bh < p.B * p.H; ++bh) {
    const Head hd = head_of(p, x, bh);
    ParallelHead ph;
    parallel_weights(p, hd, ph);
    parallel_forward_head(p, hd, ph, o.h.data() + bh * S * V, o.c_last.data() + bh * K * V, o.n_last.data() + bh * K);
    o.m_last[bh] = ph.m_last;
    std::copy_n(ph.m.data(), S, o.m_token.data() + bh * S);
    std::copy_n(ph.den.data(), S, o.den_token.data() + bh * S);
  }
  return o;
}

// Backprop through the step equations, token by token in reverse, with m_t and den_t constants:
//   C_t = a_t C_{t-1} + b_t k_t v_t^T,  n_t = a_t n_{t-1} + b_t k_t,  h_t = C_t^T q^_t / (den_t + eps)
// so with dC, dn the adjoints of C_t, n_t (h_t's term added first):
//   dq^_t = C_t dh'_t, dk_t = b_t (dC v_t + dn), dv_t = b_t dC^T k_t,
//   d iota_t = b_t (k_t^T dC v_t + dn . k_t), d phi_t = a_t (<dC, C_{t-1}> + <dn, n_{t-1}>),
//   then dC <- a_t dC, dn <- a_t dn.
InputGrads backward_recurrent(const Problem& p, const Inputs& x, const OutputGrads& g) {
  check_problem("backward_recurrent", p, x);
  check_grads("backward_recurrent", p, g);
  InputGrads d;
  alloc_grads(p, d);
  const int64_t K = p.Dk, V = p.Dv, S = p.S;
  const double scale = scale_of(p);
  RecurrentTrace tr;
  std::vector<double> h(S * V), dC(K * V), dn(K), dhp(V), qh(K);
  for (int64_t bh = 0; bh < p.B * p.H; ++bh) {
    const Head hd = head_of(p, x, bh);
    recurrent_head(p, hd, true, tr, h.data());
    for (int64_t e = 0; e < K * V; ++e) dC[e] = g.dc_last.empty() ? 0.0 : g.dc_last[bh * K * V + e];
    for (int64_t r = 0; r < K; ++r) dn[r] = g.dn_last.empty() ? 0.0 : g.dn_last[bh * K + r];
    const double* dh = g.dh.data() + bh * S * V;
    double* dq = d.dq.data() + bh * S * K;
    double* dk = d.dk.data() + bh * S * K;
    double* dv = d.dv.data() + bh * S * V;
    double* di = d.di.data() + bh * S;
    double* df = d.df.data() + bh * S;
    for (int64_t t = S - 1; t >= 0; --t) {
      const double div = normalizes(p) ? tr.den[t] + p.eps : 1.0;
      for (int64_t j = 0; j < V; ++j) dhp[j] = dh[t * V + j] / div;
      for (int64_t r = 0; r < K; ++r) qh[r] = scale * hd.q[t * K + r];
      for (int64_t r = 0; r < K; ++r)
        for (int64_t j = 0; j < V; ++j) dC[r * V + j] += qh[r] * dhp[j];
      const double* Ct = &tr.C[(t + 1) * K * V];
      const double* Cp = &tr.C[t * K * V];
      const double* np = &tr.n[t * K];
      const double* kt = hd.k + t * K;
      const double* vt = hd.v + t * V;
      const double a = tr.a[t], b = tr.b[t];
      for (int64_t r = 0; r < K; ++r) {
        double s = 0.0;
        for (int64_t j = 0; j < V; ++j) s += Ct[r * V + j] * dhp[j];
        dq[t * K + r] = scale * s;
      }
      double diota = 0.0;
      for (int64_t r = 0; r < K; ++r) {
        double s = 0.0;
        for (int64_t j = 0; j < V; ++j) s += dC[r * V + j] * vt[j];
        dk[t * K + r] = b * (s + dn[r]);
        diota += kt[r] * (s + dn[r]);
      }
      diota *= b;
      for (int64_t j = 0; j < V; ++j) {
        double s = 0.0;
        for (int64_t r = 0; r < K; ++r) s += dC[r * V + j] * kt[r];
        dv[t * V + j] = b * s;
      }
      double dphi = 0.0;
      for (int64_t r = 0; r < K; ++r) {
        dphi += dn[r] * np[r];
        for (int64_t j = 0; j < V; ++j) dphi += dC[r * V + j] * Cp[r * V + j];
      }
      dphi *= a;
      for (int64_t e = 0; e < K * V; ++e) dC[e] *= a;
      for (int64_t r = 0; r < K; ++r) dn[r] *= a;
      di[t] = is_exp(p) ? diota : diota * sigmoid(-hd.i[t]);
      df[t] = dphi * sigmoid(-hd.f[t]);
    }
    std::copy_n(dC.data(), K * V, d.dc0.data() + bh * K * V);
    std::copy_n(dn.data(), K, d.dn0.data() + bh * K);
  }
  return d;
}

// Explicit gradients of the quadratic form with E_ts = e^{D_ts - m_t}, e0_t, fin_s, fin0 (see ParallelHead)
// and dh'_t = dh_t / (den_t + eps):
//   h_t     = e0_t C0^T q^_t / . + sum_{s<=t} E_ts (q^_t . k_s) v_s / .
//   C_last  = fin0 C0 + sum_s fin_s k_s v_s^T,     n_last = fin0 n0 + sum_s fin_s k_s
// The gate gradients come from the log-weights directly: with A_ts = E_ts (q^_t.k_s)(dh'_t.v_s),
// A0_t = e0_t q^_t^T C0 dh'_t, Z_s = fin_s (k_s^T dC v_s + dn.k_s), Z0 = fin0 (<dC,C0> + <dn,n0>):
//   d iota_s = sum_{t>=s} A_ts + Z_s
//   dF_t     = sum_{s<=t} A_ts + A0_t - sum_{u>=t} A_ut - Z_t + [t = S-1] (sum_s Z_s + Z0)
//   d phi_s  = sum_{t>=s} dF_t
InputGrads backward_parallel(const Problem& p, const Inputs& x, const OutputGrads& g) {
  check_problem("backward_parallel", p, x);
  check_grads("backward_parallel", p, g);
  InputGrads d;
  alloc_grads(p, d);
  const int64_t K = p.Dk, V = p.Dv, S = p.S;
  const double scale = scale_of(p);
  std::vector<double> h(S * V), cl(K * V), nl(K), dhp(S * V), A(S * S), A0(S), Z(S), dF(S), C0dh(K), dC(K * V), dn(K);
  for (int64_t bh = 0; bh < p.B * p.H; ++bh) {
    const Head hd = head_of(p, x, bh);
    ParallelHead ph;
    parallel_weights(p, hd, ph);
    parallel_forward_head(p, hd, ph, h.data(), cl.data(), nl.data());
    for (int64_t e = 0; e < K * V; ++e) dC[e] = g.dc_last.empty() ? 0.0 : g.dc_last[bh * K * V + e];
    for (int64_t r = 0; r < K; ++r) dn[r] = g.dn_last.empty() ? 0.0 : g.dn_last[bh * K + r];
    const double* dh = g.dh.data() + bh * S * V;
    double* dq = d.dq.data() + bh * S * K;
    double* dk = d.dk.data() + bh * S * K;
    double* dv = d.dv.data() + bh * S * V;
    double* di = d.di.data() + bh * S;
    double* df = d.df.data() + bh * S;
    double* dc0 = d.dc0.data() + bh * K * V;
    double* dn0 = d.dn0.data() + bh * K;
    for (int64_t t = 0; t < S; ++t) {
      const double div = normalizes(p) ? ph.den[t] + p.eps : 1.0;
      for (int64_t j = 0; j < V; ++j) dhp[t * V + j] = dh[t * V + j] / div;
    }
    std::fill(A.begin(), A.end(), 0.0);
    // dq^ (intra + initial-state terms), A, A0.
    for (int64_t t = 0; t < S; ++t) {
      const double* dht = &dhp[t * V];
      std::vector<double> dqh(K, 0.0);
      for (int64_t r = 0; r < K; ++r) {
        double s = 0.0;
        for (int64_t j = 0; j < V; ++j) s += c0_at(hd, r, j) * dht[j];
        C0dh[r] = s;
        dqh[r] = ph.e0[t] * s;
      }
      double a0 = 0.0;
      for (int64_t r = 0; r < K; ++r) a0 += scale * hd.q[t * K + r] * dqh[r];
      A0[t] = a0;
      for (int64_t s = 0; s <= t; ++s) {
        double dP = 0.0;
        for (int64_t j = 0; j < V; ++j) dP += dht[j] * hd.v[s * V + j];
        const double w = ph.E[t * S + s] * dP;
        A[t * S + s] = w * ph.qk[t * S + s];
        for (int64_t r = 0; r < K; ++r) dqh[r] += w * hd.k[s * K + r];
      }
      for (int64_t r = 0; r < K; ++r) dq[t * K + r] = scale * dqh[r];
    }
    // dk, dv, d iota, Z.
    for (int64_t s = 0; s < S; ++s) {
      const double* ks = hd.k + s * K;
      const double* vs = hd.v + s * V;
      std::vector<double> dks(K, 0.0), dvs(V, 0.0);
      double dio = 0.0;
      for (int64_t t = s; t < S; ++t) {
        double dP = 0.0;
        for (int64_t j = 0; j < V; ++j) dP += dhp[t * V + j] * vs[j];
        const double w = ph.E[t * S + s] * dP;
        for (int64_t r = 0; r < K; ++r) dks[r] += w * scale * hd.q[t * K + r];
        const double pw = ph.E[t * S + s] * ph.qk[t * S + s];
        for (int64_t j = 0; j < V; ++j) dvs[j] += pw * dhp[t * V + j];
        dio += A[t * S + s];
      }
      // Final-state paths.
      double z = 0.0;
      for (int64_t r = 0; r < K; ++r) {
        double cv = 0.0;
        for (int64_t j = 0; j < V; ++j) cv += dC[r * V + j] * vs[j];
        dks[r] += ph.fin[s] * (cv + dn[r]);
        z += ks[r] * (cv + dn[r]);
      }
      z *= ph.fin[s];
      for (int64_t j = 0; j < V; ++j) {
        double ck = 0.0;
        for (int64_t r = 0; r < K; ++r) ck += dC[r * V + j] * ks[r];
        dvs[j] += ph.fin[s] * ck;
      }
      Z[s] = z;
      dio += z;
      for (int64_t r = 0; r < K; ++r) dk[s * K + r] = dks[r];
      for (int64_t j = 0; j < V; ++j) dv[s * V + j] = dvs[j];
      di[s] = is_exp(p) ? dio : dio * sigmoid(-hd.i[s]);
    }
    // dc0, dn0.
    for (int64_t r = 0; r < K; ++r) {
      dn0[r] = ph.fin0 * dn[r];
      for (int64_t j = 0; j < V; ++j) {
        double s = ph.fin0 * dC[r * V + j];
        for (int64_t t = 0; t < S; ++t) s += ph.e0[t] * scale * hd.q[t * K + r] * dhp[t * V + j];
        dc0[r * V + j] = s;
      }
    }
    // Forget gates.
    double z0 = 0.0, zsum = 0.0;
    for (int64_t r = 0; r < K; ++r) {
      z0 += dn[r] * n0_at(hd, r);
      for (int64_t j = 0; j < V; ++j) z0 += dC[r * V + j] * c0_at(hd, r, j);
    }
    z0 *= ph.fin0;
    for (int64_t s = 0; s < S; ++s) zsum += Z[s];
    for (int64_t t = 0; t < S; ++t) {
      double v = A0[t] - Z[t];
      for (int64_t s = 0; s <= t; ++s) v += A[t * S + s];
      for (int64_t u = t; u < S; ++u) v -= A[u * S + t];
      if (t == S - 1) v += zsum + z0;
      dF[t] = v;
    }
    double acc = 0.0;
    for (int64_t s = S - 1; s >= 0; --s) {
      acc += dF[s];
      df[s] = acc * sigmoid(-hd.f[s]);
    }
  }
  return d;
}

}  // namespace tfla::ref
