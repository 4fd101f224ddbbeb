// SPDX-License-Identifier: Apache-2.0
#include "common/plain_lowp.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/dtype_util.hpp"

namespace tfla::test {
namespace {

float logsig(float x) { return std::min(x, 0.0f) - std::log1p(std::exp(-std::fabs(x))); }
float sigm(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}

// Per-head forward intermediates, all f32.
struct HeadF {
  int64_t S, K, V;
  bool exp_variant, normalize;
  float scale, eps, m0;
  std::vector<float> q, k, v, i, f, c0, n0;  // values of their dtypes (c0/n0 zeros when absent)
  std::vector<float> F, iota, m, E, e0, qk, P, den, fin;
  float m_last = 0.0f, fin0 = 0.0f;
  tfla_dtype x;
  float rx(float a) const { return round_float(a, x); }
};

void load_head(const ref::Problem& p, const ref::Inputs& in, int64_t bh, tfla_dtype xdt, HeadF& hd) {
  hd.S = p.S;
  hd.K = p.Dk;
  hd.V = p.Dv;
  hd.x = xdt;
  hd.exp_variant = p.variant == TFLA_VARIANT_EXP;
  hd.normalize = hd.exp_variant || p.normalize;
  hd.scale = static_cast<float>(p.scale != 0.0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(p.Dk)));
  hd.eps = static_cast<float>(p.eps);
  auto slice = [](const std::vector<double>& v, int64_t off, int64_t n) {
    std::vector<float> o(n, 0.0f);
    if (!v.empty())
      for (int64_t e = 0; e < n; ++e) o[e] = static_cast<float>(v[off + e]);
    return o;
  };
  const int64_t S = p.S, K = p.Dk, V = p.Dv;
  hd.q = slice(in.q, bh * S * K, S * K);
  hd.k = slice(in.k, bh * S * K, S * K);
  hd.v = slice(in.v, bh * S * V, S * V);
  hd.i = slice(in.i, bh * S, S);
  hd.f = slice(in.f, bh * S, S);
  hd.c0 = slice(in.c0, bh * K * V, K * V);
  hd.n0 = slice(in.n0, bh * K, K);
  hd.m0 = (hd.exp_variant && !in.m0.empty()) ? static_cast<float>(in.m0[bh]) : 0.0f;
}

void forward_head(HeadF& h, float* hout, float* c_last, float* n_last) {
  const int64_t S = h.S, K = h.K, V = h.V;
  h.F.assign(S, 0.0f);
  h.iota.assign(S, 0.0f);
  float acc = 0.0f;
  for (int64_t t = 0; t < S; ++t) {
    acc += logsig(h.f[t]);
    h.F[t] = acc;
    h.iota[t] = h.exp_variant ? h.i[t] : logsig(h.i[t]);
  }
  h.m.assign(S, 0.0f);
  h.E.assign(S * S, 0.0f);
  h.e0.assign(S, 0.0f);
  h.qk.assign(S * S, 0.0f);
  h.P.assign(S * S, 0.0f);
  h.den.assign(S, 0.0f);
  for (int64_t t = 0; t < S; ++t) {
    float m = 0.0f;
    if (h.exp_variant) {
      m = h.F[t] + h.m0;
      for (int64_t s = 0; s <= t; ++s) m = std::max(m, h.F[t] - h.F[s] + h.iota[s]);
    }
    h.m[t] = m;
    h.e0[t] = std::exp(h.F[t] + h.m0 - m);
    for (int64_t s = 0; s <= t; ++s) {
      h.E[t * S + s] = std::exp(h.F[t] - h.F[s] + h.iota[s] - m);
      float d = 0.0f;  // q, k are values of x already
      for (int64_t r = 0; r < K; ++r) d += h.q[t * K + r] * h.k[s * K + r];
      h.qk[t * S + s] = d * h.scale;
      h.P[t * S + s] = h.qk[t * S + s] * h.E[t * S + s];
    }
  }
  std::vector<float> inter(V);
  for (int64_t t = 0; t < S; ++t) {
    // Initial-state term: (q @ C0) with operands in x, then scale * e0 in f32.
    float nq = 0.0f;
    for (int64_t j = 0; j < V; ++j) inter[j] = 0.0f;
    float qn = 0.0f;
    for (int64_t r = 0; r < K; ++r) {
      const float qr = h.q[t * K + r];
      qn += qr * h.rx(h.n0[r]);
      for (int64_t j = 0; j < V; ++j) inter[j] += qr * h.rx(h.c0[r * V + j]);
    }
    const float w0 = h.scale * h.e0[t];
    nq = w0 * qn;
    for (int64_t s = 0; s <= t; ++s) nq += h.P[t * S + s];
    float den = h.exp_variant ? std::max(std::fabs(nq), std::exp(-h.m[t])) : std::max(std::fabs(nq), 1.0f);
    h.den[t] = den;
    const float div = h.normalize ? den + h.eps : 1.0f;
    for (int64_t j = 0; j < V; ++j) {
      float intra = 0.0f;
      for (int64_t s = 0; s <= t; ++s) intra += h.rx(h.P[t * S + s] / div) * h.v[s * V + j];
      hout[t * V + j] = h.rx(w0 * inter[j] / div + intra);
    }
  }
  h.m_last = h.m[S - 1];
  h.fin.assign(S, 0.0f);
  for (int64_t s = 0; s < S; ++s) h.fin[s] = std::exp(h.F[S - 1] - h.F[s] + h.iota[s] - h.m_last);
  h.fin0 = std::exp(h.F[S - 1] + h.m0 - h.m_last);
  // C_last = fin0 C0 + (fin * K)^T V, n_last = fin0 n0 + (fin * K)^T 1: operand (fin * K) rounded to x.
  for (int64_t r = 0; r < K; ++r) {
    float nacc = 0.0f;
    for (int64_t s = 0; s < S; ++s) nacc += h.rx(h.fin[s] * h.k[s * K + r]);
    n_last[r] = h.fin0 * h.n0[r] + nacc;
    for (int64_t j = 0; j < V; ++j) {
      float cacc = 0.0f;
      for (int64_t s = 0; s < S; ++s) cacc += h.rx(h.fin[s] * h.k[s * K + r]) * h.v[s * V + j];
      c_last[r * V + j] = h.fin0 * h.c0[r * V + j] + cacc;
    }
  }
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

}  // namespace

ref::Outputs plain_forward(const ref::Problem& p, const ref::Inputs& x, tfla_dtype xdt, tfla_dtype /*gdt*/) {
  const int64_t BH = p.B * p.H, S = p.S, K = p.Dk, V = p.Dv;
  std::vector<float> h(BH * S * V), cl(BH * K * V), nl(BH * K), ml(BH), mt(BH * S), dt(BH * S);
  for (int64_t bh = 0; bh < BH; ++bh) {
    HeadF hd;
    load_head(p, x, bh, xdt, hd);
    forward_head(hd, &h[bh * S * V], &cl[bh * K * V], &nl[bh * K]);
    ml[bh] = hd.m_last;
    std::copy(hd.m.begin(), hd.m.end(), mt.begin() + bh * S);
    std::copy(hd.den.begin(), hd.den.end(), dt.begin() + bh * S);
  }
  ref::Outputs o;
  o.h = to_double(h);
  o.c_last = to_double(cl);
  o.n_last = to_double(nl);
  o.m_last = to_double(ml);
  o.m_token = to_double(mt);
  o.den_token = to_double(dt);
  return o;
}

ref::InputGrads plain_backward(const ref::Problem& p, const ref::Inputs& x, const ref::OutputGrads& g,
                               tfla_dtype xdt, tfla_dtype gdt) {
  const int64_t BH = p.B * p.H, S = p.S, K = p.Dk, V = p.Dv;
  ref::InputGrads d;
  d.dq.assign(BH * S * K, 0.0);
  d.dk.assign(BH * S * K, 0.0);
  d.dv.assign(BH * S * V, 0.0);
  d.di.assign(BH * S, 0.0);
  d.df.assign(BH * S, 0.0);
  d.dc0.assign(BH * K * V, 0.0);
  d.dn0.assign(BH * K, 0.0);
  std::vector<float> hbuf(S * V), cl(K * V), nl(K);
  for (int64_t bh = 0; bh < BH; ++bh) {
    HeadF h;
    load_head(p, x, bh, xdt, h);
    forward_head(h, hbuf.data(), cl.data(), nl.data());
    std::vector<float> dC(K * V, 0.0f), dn(K, 0.0f), dCx(K * V);
    if (!g.dc_last.empty())
      for (int64_t e = 0; e < K * V; ++e) dC[e] = static_cast<float>(g.dc_last[bh * K * V + e]);
    if (!g.dn_last.empty())
      for (int64_t r = 0; r < K; ++r) dn[r] = static_cast<float>(g.dn_last[bh * K + r]);
    for (int64_t e = 0; e < K * V; ++e) dCx[e] = h.rx(dC[e]);
    // dh' = dh / (den + eps), rounded to x (it is a matmul operand).
    std::vector<float> dhp(S * V);
    for (int64_t t = 0; t < S; ++t) {
      const float div = h.normalize ? h.den[t] + h.eps : 1.0f;
      for (int64_t j = 0; j < V; ++j) dhp[t * V + j] = h.rx(static_cast<float>(g.dh[(bh * S + t) * V + j]) / div);
    }
    // dP = dh' V^T (f32 acc), dS = dP * E (f32) rounded to x for the products; A = dP * P.
    std::vector<float> dP(S * S, 0.0f), dSx(S * S, 0.0f), Px(S * S, 0.0f), A(S * S, 0.0f);
    for (int64_t t = 0; t < S; ++t)
      for (int64_t s = 0; s <= t; ++s) {
        float acc = 0.0f;
        for (int64_t j = 0; j < V; ++j) acc += dhp[t * V + j] * h.v[s * V + j];
        dP[t * S + s] = acc;
        dSx[t * S + s] = h.rx(acc * h.E[t * S + s]);
        Px[t * S + s] = h.rx(h.P[t * S + s]);
        A[t * S + s] = acc * h.P[t * S + s];
      }
    // C0 dh'_t (operands x), the initial-state part of dq^ and A0.
    std::vector<float> A0(S, 0.0f);
    for (int64_t t = 0; t < S; ++t) {
      float a0 = 0.0f;
      for (int64_t r = 0; r < K; ++r) {
        float c0dh = 0.0f;
        for (int64_t j = 0; j < V; ++j) c0dh += h.rx(h.c0[r * V + j]) * dhp[t * V + j];
        float intra = 0.0f;
        for (int64_t s = 0; s <= t; ++s) intra += dSx[t * S + s] * h.k[s * K + r];
        const float dqh = h.e0[t] * c0dh + intra;
        d.dq[(bh * S + t) * K + r] = round_float(h.scale * dqh, xdt);
        a0 += h.q[t * K + r] * c0dh;
      }
      A0[t] = h.scale * h.e0[t] * a0;
    }
    // dk, dv (intra + final-state paths), d iota, Z.
    std::vector<float> Z(S, 0.0f);
    for (int64_t s = 0; s < S; ++s) {
      float z = 0.0f;
      for (int64_t r = 0; r < K; ++r) {
        float intra = 0.0f;
        for (int64_t t = s; t < S; ++t) intra += dSx[t * S + s] * h.q[t * K + r];
        float cv = 0.0f;
        for (int64_t j = 0; j < V; ++j) cv += dCx[r * V + j] * h.v[s * V + j];
        d.dk[(bh * S + s) * K + r] = round_float(h.scale * intra + h.fin[s] * (cv + dn[r]), xdt);
        z += h.k[s * K + r] * (cv + dn[r]);
      }
      Z[s] = h.fin[s] * z;
      for (int64_t j = 0; j < V; ++j) {
        float intra = 0.0f;
        for (int64_t t = s; t < S; ++t) intra += Px[t * S + s] * dhp[t * V + j];
        float ck = 0.0f;
        for (int64_t r = 0; r < K; ++r) ck += dCx[r * V + j] * h.rx(h.fin[s] * h.k[s * K + r]);
        d.dv[(bh * S + s) * V + j] = round_float(intra + ck, xdt);
      }
      float dio = Z[s];
      for (int64_t t = s; t < S; ++t) dio += A[t * S + s];
      const float di = h.exp_variant ? dio : dio * sigm(-h.i[s]);
      d.di[bh * S + s] = round_float(di, gdt);
    }
    // dc0 = (scale e0 Q)^T dh' + fin0 dC ; dn0 = fin0 dn.
    for (int64_t r = 0; r < K; ++r) {
      d.dn0[bh * K + r] = h.fin0 * dn[r];
      for (int64_t j = 0; j < V; ++j) {
        float acc = 0.0f;
        for (int64_t t = 0; t < S; ++t) acc += h.rx(h.scale * h.e0[t] * h.q[t * K + r]) * dhp[t * V + j];
        d.dc0[(bh * K + r) * V + j] = acc + h.fin0 * dC[r * V + j];
      }
    }
    // Forget gates from the log-weights, reverse cumulative sum in f32.
    float z0 = 0.0f, zsum = 0.0f;
    for (int64_t r = 0; r < K; ++r) {
      z0 += dn[r] * h.n0[r];
      for (int64_t j = 0; j < V; ++j) z0 += dC[r * V + j] * h.c0[r * V + j];
    }
    z0 *= h.fin0;
    for (int64_t s = 0; s < S; ++s) zsum += Z[s];
    std::vector<float> dF(S);
    for (int64_t t = 0; t < S; ++t) {
      float v = A0[t] - Z[t];
      for (int64_t s = 0; s <= t; ++s) v += A[t * S + s];
      for (int64_t u = t; u < S; ++u) v -= A[u * S + t];
      if (t == S - 1) v += zsum + z0;
      dF[t] = v;
    }
    float acc = 0.0f;
    for (int64_t s = S - 1; s >= 0; --s) {
      acc += dF[s];
      d.df[bh * S + s] = round_float(acc * sigm(-h.f[s]), gdt);
    }
  }
  return d;
}

}  // namespace tfla::test
