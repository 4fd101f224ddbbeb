// The fp64 references against each other, against hand-computed values and against central finite
// differences. These run without the library's backends.
// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <stdexcept>
#include <vector>

#include "common/cases.hpp"
#include "common/losses.hpp"
#include "common/metrics.hpp"
#include "reference/mlstm_reference.hpp"

namespace tfla::test {
namespace {

constexpr double kFp64Tol = 1e-10;
// Absolute floor for tensors that are zero up to rounding (e.g. df of sig/normalize=0 at S = 1 without an
// initial state: h and the state do not depend on f at all).
constexpr double kFp64Floor = 1e-14;

// Where both are +-Inf (den_token = e^{-m_t} beyond the double range for extreme gates), compare as equal.
void mask_common_inf(std::vector<double>& a, std::vector<double>& b) {
  for (size_t e = 0; e < a.size() && e < b.size(); ++e)
    if (std::isinf(a[e]) && std::isinf(b[e]) && (a[e] > 0) == (b[e] > 0)) a[e] = b[e] = 0.0;
}

void expect_outputs_agree(const ref::Outputs& a, const ref::Outputs& b, double tol) {
  EXPECT_TRUE(near_rel("h", a.h, b.h, tol, kFp64Floor));
  EXPECT_TRUE(near_rel("c_last", a.c_last, b.c_last, tol, kFp64Floor));
  EXPECT_TRUE(near_rel("n_last", a.n_last, b.n_last, tol, kFp64Floor));
  EXPECT_TRUE(near_rel("m_last", a.m_last, b.m_last, tol, kFp64Floor));
  EXPECT_TRUE(near_rel("m_token", a.m_token, b.m_token, tol, kFp64Floor));
  std::vector<double> da = a.den_token, db = b.den_token;
  mask_common_inf(da, db);
  EXPECT_TRUE(near_rel("den_token", da, db, tol, kFp64Floor));
}

void expect_grads_agree(const ref::InputGrads& a, const ref::InputGrads& b, double tol) {
  EXPECT_TRUE(near_rel("dq", a.dq, b.dq, tol, kFp64Floor));
  EXPECT_TRUE(near_rel("dk", a.dk, b.dk, tol, kFp64Floor));
  EXPECT_TRUE(near_rel("dv", a.dv, b.dv, tol, kFp64Floor));
  EXPECT_TRUE(near_rel("di", a.di, b.di, tol, kFp64Floor));
  EXPECT_TRUE(near_rel("df", a.df, b.df, tol, kFp64Floor));
  EXPECT_TRUE(near_rel("dc0", a.dc0, b.dc0, tol, kFp64Floor));
  EXPECT_TRUE(near_rel("dn0", a.dn0, b.dn0, tol, kFp64Floor));
}

void expect_all_finite(const ref::Outputs& o, const ref::InputGrads& d) {
  EXPECT_TRUE(all_finite("h", o.h));
  EXPECT_TRUE(all_finite("c_last", o.c_last));
  EXPECT_TRUE(all_finite("n_last", o.n_last));
  EXPECT_TRUE(all_finite("m_last", o.m_last));
  EXPECT_TRUE(all_finite("m_token", o.m_token));
  for (double x : o.den_token) EXPECT_TRUE(x > 0.0) << "den_token must be positive (or +Inf), got " << x;
  EXPECT_TRUE(all_finite("dq", d.dq));
  EXPECT_TRUE(all_finite("dk", d.dk));
  EXPECT_TRUE(all_finite("dv", d.dv));
  EXPECT_TRUE(all_finite("di", d.di));
  EXPECT_TRUE(all_finite("df", d.df));
  EXPECT_TRUE(all_finite("dc0", d.dc0));
  EXPECT_TRUE(all_finite("dn0", d.dn0));
}



std::string case_name(const ::testing::TestParamInfo<Case>& info) { return info.param.name(); }

// ---------------------------------------------------------------------------------------------------------
// Recurrent vs parallel, fp64, <= 1e-10 norm-wise relative on every output and gradient.

std::vector<Case> agreement_grid() {
  const Shape shapes[] = {{1, 1, 1, 3, 2},  {2, 3, 7, 5, 4},   {1, 2, 33, 7, 9},
                          {1, 1, 64, 16, 8}, {1, 1, 20, 96, 7}, {1, 1, 12, 192, 32}};
  const bool states[][2] = {{false, false}, {true, true}, {true, false}, {false, true}};
  std::vector<Case> out;
  uint64_t seed = 1000;
  for (const auto& s : shapes)
    for (const auto& v : kVariants)
      for (const auto& st : states) out.push_back(make_case(s, v, 0, Layout::kDense, st[0], st[1], ++seed));
  return out;
}

class ReferenceAgreement : public ::testing::TestWithParam<Case> {};

TEST_P(ReferenceAgreement, RecurrentEqualsParallel) {
  const Case c = GetParam();
  const ref::Problem p = ref_problem(c);
  const ref::Inputs x = random_inputs(c);
  const ref::OutputGrads g = random_output_grads(c);
  const ref::Outputs a = ref::forward_recurrent(p, x), b = ref::forward_parallel(p, x);
  ASSERT_EQ(a.h.size(), static_cast<size_t>(c.B * c.H * c.S * c.Dv));
  ASSERT_EQ(a.c_last.size(), static_cast<size_t>(c.B * c.H * c.Dk * c.Dv));
  ASSERT_EQ(a.den_token.size(), static_cast<size_t>(c.B * c.H * c.S));
  const ref::InputGrads da = ref::backward_recurrent(p, x, g), db = ref::backward_parallel(p, x, g);
  expect_all_finite(a, da);
  expect_all_finite(b, db);
  expect_outputs_agree(a, b, kFp64Tol);
  expect_grads_agree(da, db, kFp64Tol);
  if (c.variant == TFLA_VARIANT_SIG) {
    for (double m : a.m_token) EXPECT_EQ(m, 0.0);
    for (double m : a.m_last) EXPECT_EQ(m, 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Grid, ReferenceAgreement, ::testing::ValuesIn(agreement_grid()), case_name);

// ---------------------------------------------------------------------------------------------------------
// Backward vs central finite differences of the recurrent forward, for every element of q, k, v, i, f, c0,
// n0. The loss is per-row scale-invariant in h (common/losses.hpp explains why the stop-gradient backward
// equals the true gradient then). State terms: for exp the loss is invariant to one positive scale of
// (c_last, n_last) per (b, h) jointly, because m_last rescales both and the backward holds m_last constant;
// for sig there is no stabilizer and a plain (not scale-invariant) quadratic loss checks the state
// gradients in absolute terms.

class ReferenceGradient : public ::testing::TestWithParam<Case> {};

TEST_P(ReferenceGradient, MatchesCentralFiniteDifferences) {
  const Case c = GetParam();
  const ref::Problem p = ref_problem(c);
  ref::Inputs x = random_inputs(c);
  const int64_t BH = c.B * c.H, KV = c.Dk * c.Dv, row = KV + c.Dk;
  const RowRmsLoss hloss(BH * c.S, c.Dv, c.seed + 1);
  const RowRmsLoss exp_state_loss(BH, row, c.seed + 2);
  const QuadLoss sig_state_loss(BH * row, c.seed + 3);
  auto concat = [&](const ref::Outputs& o) {
    std::vector<double> z(BH * row);
    for (int64_t bh = 0; bh < BH; ++bh) {
      for (int64_t e = 0; e < KV; ++e) z[bh * row + e] = o.c_last[bh * KV + e];
      for (int64_t r = 0; r < c.Dk; ++r) z[bh * row + KV + r] = o.n_last[bh * c.Dk + r];
    }
    return z;
  };
  auto loss = [&](const ref::Inputs& xi) {
    const ref::Outputs o = ref::forward_recurrent(p, xi);
    double L = hloss.value(o.h);
    if (c.final_state)
      L += c.variant == TFLA_VARIANT_EXP ? exp_state_loss.value(concat(o)) : sig_state_loss.value(concat(o));
    return L;
  };

  const ref::Outputs o = ref::forward_recurrent(p, x);
  ref::OutputGrads g;
  g.dh = hloss.grad(o.h);
  if (c.final_state) {
    const std::vector<double> z = concat(o);
    const std::vector<double> gz = c.variant == TFLA_VARIANT_EXP ? exp_state_loss.grad(z) : sig_state_loss.grad(z);
    g.dc_last.resize(BH * KV);
    g.dn_last.resize(BH * c.Dk);
    for (int64_t bh = 0; bh < BH; ++bh) {
      for (int64_t e = 0; e < KV; ++e) g.dc_last[bh * KV + e] = gz[bh * row + e];
      for (int64_t r = 0; r < c.Dk; ++r) g.dn_last[bh * c.Dk + r] = gz[bh * row + KV + r];
    }
  }
  const ref::InputGrads ga = ref::backward_recurrent(p, x, g), gb = ref::backward_parallel(p, x, g);

  // Absent c0/n0 behave as zeros: perturb explicit zeros for their finite differences.
  if (x.c0.empty()) x.c0.assign(BH * KV, 0.0);
  if (x.n0.empty()) x.n0.assign(BH * c.Dk, 0.0);
  // Central differences with step 1e-5 on O(1) inputs: truncation ~1e-10, rounding ~1e-16 * |L| / step.
  const double step = 1e-5, tol = 1e-6, kFdFloor = 1e-8;
  struct Field {
    const char* name;
    std::vector<double> ref::Inputs::*in;
    std::vector<double> ref::InputGrads::*grad;
  };
  const Field fields[] = {{"q", &ref::Inputs::q, &ref::InputGrads::dq},   {"k", &ref::Inputs::k, &ref::InputGrads::dk},
                          {"v", &ref::Inputs::v, &ref::InputGrads::dv},   {"i", &ref::Inputs::i, &ref::InputGrads::di},
                          {"f", &ref::Inputs::f, &ref::InputGrads::df},   {"c0", &ref::Inputs::c0, &ref::InputGrads::dc0},
                          {"n0", &ref::Inputs::n0, &ref::InputGrads::dn0}};
  for (const auto& fld : fields) {
    std::vector<double> fd((x.*fld.in).size());
    ref::Inputs xp = x;
    for (size_t e = 0; e < fd.size(); ++e) {
      const double x0 = (x.*fld.in)[e];
      (xp.*fld.in)[e] = x0 + step;
      const double lp = loss(xp);
      (xp.*fld.in)[e] = x0 - step;
      const double lm = loss(xp);
      (xp.*fld.in)[e] = x0;
      fd[e] = (lp - lm) / (2.0 * step);
    }
    // n0 reaches h only through den (held constant, and the loss is blind to it): without a final-state
    // loss its true gradient is exactly 0 and the finite differences are rounding noise (~1e-10).
    const bool zero_expected = fld.in == &ref::Inputs::n0 && !c.final_state;
    if (!zero_expected) {
      EXPECT_GT(l2_norm(fd), 1e-3) << fld.name << ": the loss must depend on it for the check to mean anything";
    }
    EXPECT_TRUE(near_rel(std::string("recurrent d") + fld.name, ga.*fld.grad, fd, tol, kFdFloor));
    EXPECT_TRUE(near_rel(std::string("parallel d") + fld.name, gb.*fld.grad, fd, tol, kFdFloor));
  }
}

std::vector<Case> fd_grid() {
  struct S {
    Shape s;
    bool init, fin;
  };
  const S shapes[] = {{{1, 1, 1, 3, 2}, true, true},
                      {{2, 1, 6, 3, 4}, true, true},
                      {{1, 2, 9, 4, 3}, false, true},
                      {{1, 1, 7, 5, 2}, true, false}};
  std::vector<Case> out;
  uint64_t seed = 2000;
  for (const auto& s : shapes)
    for (const auto& v : kVariants) out.push_back(make_case(s.s, v, 0, Layout::kDense, s.init, s.fin, ++seed));
  return out;
}

INSTANTIATE_TEST_SUITE_P(Small, ReferenceGradient, ::testing::ValuesIn(fd_grid()), case_name);

// ---------------------------------------------------------------------------------------------------------
// Gate pre-activations of +-50 and +-1e4: finite outputs and gradients, and the two forms still agree.

class ReferenceExtremeGates : public ::testing::TestWithParam<Case> {};

TEST_P(ReferenceExtremeGates, FiniteAndAgreeing) {
  const Case c = GetParam();
  const ref::Problem p = ref_problem(c);
  const ref::Inputs x = random_inputs(c);
  const ref::OutputGrads g = random_output_grads(c);
  const ref::Outputs a = ref::forward_recurrent(p, x), b = ref::forward_parallel(p, x);
  const ref::InputGrads da = ref::backward_recurrent(p, x, g), db = ref::backward_parallel(p, x, g);
  expect_all_finite(a, da);
  expect_all_finite(b, db);
  // F_t - F_s of cumulative sums of +-1e4 loses ~1e-16 * 1e4 * S absolute in the exponents.
  const double tol = c.gates == Gates::kExtreme1e4 ? 1e-8 : 1e-10;
  expect_outputs_agree(a, b, tol);
  expect_grads_agree(da, db, tol);
}

std::vector<Case> extreme_grid() {
  std::vector<Case> out;
  uint64_t seed = 3000;
  for (Gates gk : {Gates::kExtreme50, Gates::kExtreme1e4})
    for (const auto& v : kVariants)
      for (bool st : {false, true}) {
        Case c = make_case({1, 2, 40, 8, 6}, v, 0, Layout::kDense, st, st, ++seed);
        c.gates = gk;
        out.push_back(c);
      }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Gates, ReferenceExtremeGates, ::testing::ValuesIn(extreme_grid()), case_name);

// ---------------------------------------------------------------------------------------------------------
// Hand-computed values straight from the spec's step equations (S = 2, Dk = Dv = 1).

TEST(ReferenceByHand, TwoStepsScalar) {
  const double q0 = 0.7, q1 = -1.3, k0 = 1.1, k1 = 0.4, v0 = -0.5, v1 = 2.0, i0 = 0.3, i1 = 1.7, f0 = 2.0, f1 = -0.4;
  const double c0 = 0.25, n0 = -0.6, m0 = 0.2, eps = 1e-6, scale = 0.9;
  auto ls = [](double x) { return -std::log1p(std::exp(-x)); };
  for (int variant = 0; variant < 2; ++variant) {
    const bool ex = variant == 0;
    ref::Problem p;
    p.S = 2;
    p.variant = ex ? TFLA_VARIANT_EXP : TFLA_VARIANT_SIG;
    p.scale = scale;
    p.eps = eps;
    ref::Inputs x;
    x.q = {q0, q1};
    x.k = {k0, k1};
    x.v = {v0, v1};
    x.i = {i0, i1};
    x.f = {f0, f1};
    x.c0 = {c0};
    x.n0 = {n0};
    x.m0 = {m0};
    double C = c0, n = n0, m = ex ? m0 : 0.0;
    double h[2], den[2], mt[2];
    const double q[2] = {q0, q1}, k[2] = {k0, k1}, v[2] = {v0, v1}, ig[2] = {i0, i1}, fg[2] = {f0, f1};
    for (int t = 0; t < 2; ++t) {
      const double phi = ls(fg[t]), iota = ex ? ig[t] : ls(ig[t]);
      const double mn = ex ? std::max(phi + m, iota) : 0.0;
      C = std::exp(phi + m - mn) * C + std::exp(iota - mn) * k[t] * v[t];
      n = std::exp(phi + m - mn) * n + std::exp(iota - mn) * k[t];
      const double qh = scale * q[t];
      den[t] = ex ? std::max(std::fabs(n * qh), std::exp(-mn)) : std::max(std::fabs(n * qh), 1.0);
      h[t] = C * qh / (den[t] + eps);
      mt[t] = mn;
      m = mn;
    }
    for (auto fn : {&ref::forward_recurrent, &ref::forward_parallel}) {
      const ref::Outputs o = fn(p, x);
      for (int t = 0; t < 2; ++t) {
        EXPECT_NEAR(o.h[t], h[t], 1e-14) << "variant " << variant << " t " << t;
        EXPECT_NEAR(o.den_token[t], den[t], 1e-14);
        EXPECT_NEAR(o.m_token[t], mt[t], 1e-14);
      }
      EXPECT_NEAR(o.c_last[0], C, 1e-14);
      EXPECT_NEAR(o.n_last[0], n, 1e-14);
      EXPECT_NEAR(o.m_last[0], m, 1e-14);
    }
  }
}

// Stable log-sigmoid: huge negative pre-activations give exact, finite logs (no log(0)).
TEST(ReferenceByHand, StableLogSigmoidAtExtremes) {
  ref::Problem p;
  p.S = 1;
  p.variant = TFLA_VARIANT_SIG;
  ref::Inputs x;
  x.q = {1.0};
  x.k = {1.0};
  x.v = {1.0};
  x.i = {-1e4};  // iota = -1e4: the input contributes e^{-1e4} = 0
  x.f = {0.0};
  x.c0 = {3.0};
  x.n0 = {0.0};
  const ref::Outputs o = ref::forward_recurrent(p, x);
  EXPECT_DOUBLE_EQ(o.c_last[0], 1.5);  // sigmoid(0) * 3
  EXPECT_TRUE(std::isfinite(o.h[0]));
}

TEST(ReferenceApi, RejectsWrongSizes) {
  ref::Problem p;
  p.S = 3;
  p.Dk = 2;
  p.Dv = 2;
  ref::Inputs x;
  x.q.assign(6, 0.1);
  x.k.assign(6, 0.1);
  x.v.assign(6, 0.1);
  x.i.assign(3, 0.0);
  x.f.assign(3, 0.0);
  EXPECT_NO_THROW(ref::forward_recurrent(p, x));
  ref::Inputs bad = x;
  bad.v.assign(5, 0.0);
  EXPECT_THROW(ref::forward_recurrent(p, bad), std::invalid_argument);
  EXPECT_THROW(ref::forward_parallel(p, bad), std::invalid_argument);
  bad = x;
  bad.c0.assign(3, 0.0);
  EXPECT_THROW(ref::forward_parallel(p, bad), std::invalid_argument);
  ref::OutputGrads g;
  g.dh.assign(5, 0.0);
  EXPECT_THROW(ref::backward_recurrent(p, x, g), std::invalid_argument);
  EXPECT_THROW(ref::backward_parallel(p, x, g), std::invalid_argument);
  ref::Problem q = p;
  q.normalize = false;  // exp must normalize
  EXPECT_THROW(ref::forward_recurrent(q, x), std::invalid_argument);
}

}  // namespace
}  // namespace tfla::test
