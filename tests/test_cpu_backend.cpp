// The library's CPU backend (tfla_mlstm_fwd / tfla_mlstm_bwd with TFLA_DEVICE_CPU) against the fp64
// references.
//
// Tolerance: the references agree with each other to ~1e-14 in fp64 (test_reference.cpp), but the backend
// reads and writes f32 tensors, so fp64 agreement is impossible. The backend therefore gets f32 inputs and is
// compared with the references run on the SAME f32-rounded values (common/cases.hpp rounds every input to
// its dtype before anything runs). What remains is the f32 rounding of the outputs (relative 2^-24 per
// element) plus f32 rounding of the m_token/den_token the backward reads, i.e. ~1e-7 norm-wise; we allow
// kF32Tol = 1e-6 norm-wise relative per tensor (kF32Floor absolute for tensors that are zero up to rounding).
// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/cases.hpp"
#include "common/harness.hpp"
#include "common/metrics.hpp"
#include "reference/mlstm_reference.hpp"

namespace tfla::test {
namespace {

constexpr double kF32Tol = 1e-6;
constexpr double kF32Floor = 1e-9;

std::string case_name(const ::testing::TestParamInfo<Case>& info) { return info.param.name(); }

bool normalizes(const Case& c) { return c.variant == TFLA_VARIANT_EXP || c.normalize; }

// Compare every output the backend wrote with the reference's.
void expect_fwd_matches(const Case& c, const ref::Outputs& lib, const ref::Outputs& ref, double tol, double floor,
                        const char* which) {
  SCOPED_TRACE(which);
  EXPECT_TRUE(near_rel("h", lib.h, ref.h, tol, floor));
  EXPECT_TRUE(near_rel("m_token", lib.m_token, ref.m_token, tol, floor));
  if (normalizes(c)) {
    EXPECT_TRUE(den_token_matches(lib.den_token, ref.den_token, tol, floor));
  }
  if (c.final_state) {
    EXPECT_TRUE(near_rel("c_last", lib.c_last, ref.c_last, tol, floor));
    EXPECT_TRUE(near_rel("n_last", lib.n_last, ref.n_last, tol, floor));
    EXPECT_TRUE(near_rel("m_last", lib.m_last, ref.m_last, tol, floor));
  }
}

void expect_bwd_matches(const Case& c, const ref::InputGrads& lib, const ref::InputGrads& ref, double tol,
                        double floor, const char* which) {
  SCOPED_TRACE(which);
  EXPECT_TRUE(near_rel("dq", lib.dq, ref.dq, tol, floor));
  EXPECT_TRUE(near_rel("dk", lib.dk, ref.dk, tol, floor));
  EXPECT_TRUE(near_rel("dv", lib.dv, ref.dv, tol, floor));
  EXPECT_TRUE(near_rel("digate", lib.di, ref.di, tol, floor));
  EXPECT_TRUE(near_rel("dfgate", lib.df, ref.df, tol, floor));
  if (c.init) {
    EXPECT_TRUE(near_rel("dc0", lib.dc0, ref.dc0, tol, floor));
    EXPECT_TRUE(near_rel("dn0", lib.dn0, ref.dn0, tol, floor));
  }
}

// ---------------------------------------------------------------------------------------------------------
// The grid: S = 1, chunk sizes 1 .. S and beyond, non-dividing ones, the default (0), Dk != Dv, odd head
// dims, both layouts, with and without initial/final states, all three variants.

std::vector<Case> backend_grid() {
  struct SC {
    Shape s;
    std::vector<int64_t> chunks;
  };
  const SC shapes[] = {
      {{1, 1, 1, 4, 4}, {0, 1, 2}},
      {{2, 2, 7, 5, 3}, {1, 2, 3, 7, 9}},
      {{1, 2, 33, 7, 9}, {0, 1, 4, 16, 32, 33}},
      {{1, 1, 64, 96, 32}, {16, 24, 64}},
      {{1, 1, 20, 192, 7}, {8, 20}},
      {{1, 1, 17, 8, 96}, {5}},
  };
  std::vector<Case> out;
  uint64_t seed = 5000;
  for (const auto& sc : shapes)
    for (int64_t L : sc.chunks)
      for (const auto& v : kVariants)
        for (Layout lay : {Layout::kDense, Layout::kSeqMajor})
          for (bool st : {false, true}) out.push_back(make_case(sc.s, v, L, lay, st, st, ++seed));
  // Only an initial state / only a final state; a non-default scale and eps.
  for (const auto& v : kVariants) {
    out.push_back(make_case({2, 1, 11, 6, 5}, v, 4, Layout::kSeqMajor, true, false, ++seed));
    out.push_back(make_case({1, 3, 11, 6, 5}, v, 3, Layout::kDense, false, true, ++seed));
    Case c = make_case({1, 2, 10, 6, 5}, v, 3, Layout::kDense, true, true, ++seed);
    c.scale = 0.3f;
    c.eps = 0.01f;
    out.push_back(c);
  }
  return out;
}

class CpuBackend : public ::testing::TestWithParam<Case> {};

TEST_P(CpuBackend, MatchesReferencesOnF32Inputs) {
  const Case c = GetParam();
  const ref::Problem p = ref_problem(c);
  const ref::Inputs x = random_inputs(c);
  const ref::OutputGrads g = random_output_grads(c);
  const LibResult lib = run_cpu(c, x, g);
  ASSERT_TRUE(lib.ok);
  expect_fwd_matches(c, lib.out, ref::forward_recurrent(p, x), kF32Tol, kF32Floor, "vs recurrent reference");
  expect_fwd_matches(c, lib.out, ref::forward_parallel(p, x), kF32Tol, kF32Floor, "vs parallel reference");
  expect_bwd_matches(c, lib.grads, ref::backward_recurrent(p, x, g), kF32Tol, kF32Floor, "vs recurrent reference");
  expect_bwd_matches(c, lib.grads, ref::backward_parallel(p, x, g), kF32Tol, kF32Floor, "vs parallel reference");
}

INSTANTIATE_TEST_SUITE_P(Grid, CpuBackend, ::testing::ValuesIn(backend_grid()), case_name);

// ---------------------------------------------------------------------------------------------------------
// Gate pre-activations of +-50 and +-1e4: every output and gradient finite (den_token included: where
// e^{-m_t} exceeds the f32 range, exp with m_t < -88, it must be saturated, see harness.hpp), and still the
// reference's.

class CpuBackendExtremeGates : public ::testing::TestWithParam<Case> {};

TEST_P(CpuBackendExtremeGates, FiniteAndMatching) {
  const Case c = GetParam();
  const ref::Problem p = ref_problem(c);
  const ref::Inputs x = random_inputs(c);
  const ref::OutputGrads g = random_output_grads(c);
  const LibResult lib = run_cpu(c, x, g);  // fails on any non-finite output
  ASSERT_TRUE(lib.ok);
  expect_fwd_matches(c, lib.out, ref::forward_recurrent(p, x), kF32Tol, kF32Floor, "vs recurrent reference");
  expect_bwd_matches(c, lib.grads, ref::backward_parallel(p, x, g), kF32Tol, kF32Floor, "vs parallel reference");
}

std::vector<Case> extreme_grid() {
  std::vector<Case> out;
  uint64_t seed = 6000;
  for (Gates gk : {Gates::kExtreme50, Gates::kExtreme1e4})
    for (const auto& v : kVariants)
      for (int64_t L : {1, 7, 0})
        for (bool st : {false, true}) {
          Case c = make_case({1, 2, 40, 8, 6}, v, L, st ? Layout::kSeqMajor : Layout::kDense, st, st, ++seed);
          c.gates = gk;
          out.push_back(c);
        }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Gates, CpuBackendExtremeGates, ::testing::ValuesIn(extreme_grid()), case_name);

// ---------------------------------------------------------------------------------------------------------
// State passing: a sequence split into several calls that hand (c, n, m) on equals one call (h and the
// final state); and the backward chained the other way (dc0, dn0 of a segment become dc_last, dn_last of
// the one before) equals the one-call backward.

std::vector<double> slice_seq(const std::vector<double>& v, const Case& c, int64_t D, int64_t s0, int64_t len) {
  std::vector<double> out(c.B * c.H * len * D);
  for (int64_t bh = 0; bh < c.B * c.H; ++bh)
    for (int64_t t = 0; t < len; ++t)
      for (int64_t d = 0; d < D; ++d) out[(bh * len + t) * D + d] = v[(bh * c.S + s0 + t) * D + d];
  return out;
}

void put_seq(std::vector<double>& v, const std::vector<double>& part, const Case& c, int64_t D, int64_t s0,
             int64_t len) {
  for (int64_t bh = 0; bh < c.B * c.H; ++bh)
    for (int64_t t = 0; t < len; ++t)
      for (int64_t d = 0; d < D; ++d) v[(bh * c.S + s0 + t) * D + d] = part[(bh * len + t) * D + d];
}

struct SplitCase {
  Case c;
  std::vector<int64_t> segments;
};

void PrintTo(const SplitCase& s, std::ostream* os) {
  *os << s.c.name() << " split";
  for (int64_t n : s.segments) *os << " " << n;
}

class CpuBackendStatePassing : public ::testing::TestWithParam<SplitCase> {};

TEST_P(CpuBackendStatePassing, SplitCallsEqualOneCall) {
  const Case c = GetParam().c;
  const std::vector<int64_t>& segs = GetParam().segments;
  const ref::Inputs x = random_inputs(c);
  const ref::OutputGrads g = random_output_grads(c);
  const LibResult whole = run_cpu(c, x, g);
  ASSERT_TRUE(whole.ok);

  std::vector<Case> seg_cases;
  std::vector<FwdBuffers> fwd;
  std::vector<double> h(x.q.size() / c.Dk * c.Dv);
  ref::Inputs xs;
  int64_t s0 = 0;
  for (size_t k = 0; k < segs.size(); ++k) {
    Case sc = c;
    sc.S = segs[k];
    sc.init = k > 0 || c.init;
    sc.final_state = true;
    ref::Inputs xk;
    xk.q = slice_seq(x.q, c, c.Dk, s0, sc.S);
    xk.k = slice_seq(x.k, c, c.Dk, s0, sc.S);
    xk.v = slice_seq(x.v, c, c.Dv, s0, sc.S);
    xk.i = slice_seq(x.i, c, 1, s0, sc.S);
    xk.f = slice_seq(x.f, c, 1, s0, sc.S);
    if (k == 0) {
      xk.c0 = x.c0;
      xk.n0 = x.n0;
      xk.m0 = x.m0;
    } else {  // hand the previous call's final state on, exactly as it came back (f32)
      xk.c0 = fwd.back().c_last.get();
      xk.n0 = fwd.back().n_last.get();
      xk.m0 = fwd.back().m_last.get();
    }
    FwdBuffers fb = make_fwd_buffers(sc, xk);
    ASSERT_EQ(run_fwd_cpu(make_fwd_params(lib_problem(sc), fb)), TFLA_SUCCESS) << tfla_last_error();
    ASSERT_TRUE(outputs_written(fb.outputs()));
    put_seq(h, fb.h.get(), c, c.Dv, s0, sc.S);
    seg_cases.push_back(sc);
    fwd.push_back(std::move(fb));
    s0 += sc.S;
  }
  ASSERT_EQ(s0, c.S);
  const double tol = 5e-6;  // states handed on in f32 at every split
  EXPECT_TRUE(near_rel("h", h, whole.out.h, tol, kF32Floor));
  EXPECT_TRUE(near_rel("c_last", fwd.back().c_last.get(), whole.out.c_last, tol, kF32Floor));
  EXPECT_TRUE(near_rel("n_last", fwd.back().n_last.get(), whole.out.n_last, tol, kF32Floor));
  EXPECT_TRUE(near_rel("m_last", fwd.back().m_last.get(), whole.out.m_last, tol, kF32Floor));

  // Backward, last segment first.
  ref::InputGrads d;
  d.dq.assign(x.q.size(), 0.0);
  d.dk.assign(x.k.size(), 0.0);
  d.dv.assign(x.v.size(), 0.0);
  d.di.assign(x.i.size(), 0.0);
  d.df.assign(x.f.size(), 0.0);
  std::vector<double> dc_next = g.dc_last, dn_next = g.dn_last;
  s0 = c.S;
  for (size_t k = segs.size(); k-- > 0;) {
    const Case& sc = seg_cases[k];
    s0 -= sc.S;
    ref::OutputGrads gk;
    gk.dh = slice_seq(g.dh, c, c.Dv, s0, sc.S);
    gk.dc_last = dc_next;
    gk.dn_last = dn_next;
    BwdBuffers bb = make_bwd_buffers(sc, gk, /*with_dstate0=*/true);
    ASSERT_EQ(run_bwd_cpu(make_bwd_params(lib_problem(sc), fwd[k], bb)), TFLA_SUCCESS) << tfla_last_error();
    ASSERT_TRUE(outputs_written(bb.outputs()));
    put_seq(d.dq, bb.dq.get(), c, c.Dk, s0, sc.S);
    put_seq(d.dk, bb.dk.get(), c, c.Dk, s0, sc.S);
    put_seq(d.dv, bb.dv.get(), c, c.Dv, s0, sc.S);
    put_seq(d.di, bb.di.get(), c, 1, s0, sc.S);
    put_seq(d.df, bb.df.get(), c, 1, s0, sc.S);
    dc_next = bb.dc0.get();
    dn_next = bb.dn0.get();
  }
  EXPECT_TRUE(near_rel("dq", d.dq, whole.grads.dq, tol, kF32Floor));
  EXPECT_TRUE(near_rel("dk", d.dk, whole.grads.dk, tol, kF32Floor));
  EXPECT_TRUE(near_rel("dv", d.dv, whole.grads.dv, tol, kF32Floor));
  EXPECT_TRUE(near_rel("digate", d.di, whole.grads.di, tol, kF32Floor));
  EXPECT_TRUE(near_rel("dfgate", d.df, whole.grads.df, tol, kF32Floor));
  if (c.init) {
    EXPECT_TRUE(near_rel("dc0", dc_next, whole.grads.dc0, tol, kF32Floor));
    EXPECT_TRUE(near_rel("dn0", dn_next, whole.grads.dn0, tol, kF32Floor));
  }
}

std::vector<SplitCase> split_grid() {
  std::vector<SplitCase> out;
  uint64_t seed = 7000;
  for (const auto& v : kVariants)
    for (Layout lay : {Layout::kDense, Layout::kSeqMajor})
      for (bool init : {false, true}) {
        SplitCase s;
        s.c = make_case({2, 2, 37, 6, 5}, v, 4, lay, init, true, ++seed);
        s.segments = {5, 1, 17, 14};
        out.push_back(s);
      }
  SplitCase one;  // token by token (the decoding step)
  one.c = make_case({1, 2, 6, 4, 3}, kVariants[0], 0, Layout::kDense, true, true, ++seed);
  one.segments = {1, 1, 1, 1, 1, 1};
  out.push_back(one);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Split, CpuBackendStatePassing, ::testing::ValuesIn(split_grid()),
                         [](const ::testing::TestParamInfo<SplitCase>& info) {
                           return info.param.c.name() + "_segs" + std::to_string(info.param.segments.size());
                         });

// ---------------------------------------------------------------------------------------------------------
// Optional outputs.

TEST(CpuBackendOptional, HOnlyForwardAndSingleGradientBackward) {
  for (const auto& v : kVariants) {
    Case c = make_case({1, 2, 13, 5, 4}, v, 4, Layout::kDense, true, true, 8001 + static_cast<int>(v.normalize));
    SCOPED_TRACE(c.name());
    const ref::Problem p = ref_problem(c);
    const ref::Inputs x = random_inputs(c);
    const ref::OutputGrads g = random_output_grads(c);
    const ref::Outputs ro = ref::forward_recurrent(p, x);
    const ref::InputGrads rg = ref::backward_recurrent(p, x, g);
    FwdBuffers fb = make_fwd_buffers(c, x);
    // Forward with h only.
    FwdBuffers honly = make_fwd_buffers(c, x);
    honly.c_last = honly.n_last = honly.m_last = honly.m_token = honly.den_token = HostTensor();
    ASSERT_EQ(run_fwd_cpu(make_fwd_params(lib_problem(c), honly)), TFLA_SUCCESS) << tfla_last_error();
    ASSERT_TRUE(all_finite("h", honly.h.get()));
    EXPECT_TRUE(near_rel("h (h only)", honly.h.get(), ro.h, kF32Tol, kF32Floor));
    // Full forward for the statistics, then backward computing one gradient at a time.
    ASSERT_EQ(run_fwd_cpu(make_fwd_params(lib_problem(c), fb)), TFLA_SUCCESS) << tfla_last_error();
    const char* names[] = {"dq", "dk", "dv", "digate", "dfgate", "dc0", "dn0"};
    for (int which = 0; which < 7; ++which) {
      BwdBuffers bb = make_bwd_buffers(c, g);
      HostTensor* outs[] = {&bb.dq, &bb.dk, &bb.dv, &bb.di, &bb.df, &bb.dc0, &bb.dn0};
      for (int o = 0; o < 7; ++o)
        if (o != which) *outs[o] = HostTensor();
      ASSERT_EQ(run_bwd_cpu(make_bwd_params(lib_problem(c), fb, bb)), TFLA_SUCCESS) << tfla_last_error();
      const std::vector<double>* want[] = {&rg.dq, &rg.dk, &rg.dv, &rg.di, &rg.df, &rg.dc0, &rg.dn0};
      EXPECT_TRUE(near_rel(std::string(names[which]) + " alone", outs[which]->get(), *want[which], kF32Tol, kF32Floor));
    }
  }
}

// tfla.h: "dc0, dn0 ... optional (zero when c0/n0 was absent)".
TEST(CpuBackendOptional, AbsentInitialStateGivesGradientAtZeroState) {
  // tfla.h: dc0/dn0 are the gradient with respect to the initial state also when c0/n0 is absent (then at
  // the zero state), which is what a caller chaining calls (state passing) needs.
  for (const auto& v : kVariants) {
    Case c = make_case({1, 2, 9, 4, 3}, v, 4, Layout::kDense, false, true, 8100 + static_cast<int>(v.normalize));
    SCOPED_TRACE(c.name());
    const ref::Inputs x = random_inputs(c);
    const ref::OutputGrads g = random_output_grads(c);
    FwdBuffers fb = make_fwd_buffers(c, x);
    ASSERT_EQ(run_fwd_cpu(make_fwd_params(lib_problem(c), fb)), TFLA_SUCCESS) << tfla_last_error();
    BwdBuffers bb = make_bwd_buffers(c, g, /*with_dstate0=*/true);
    ASSERT_EQ(run_bwd_cpu(make_bwd_params(lib_problem(c), fb, bb)), TFLA_SUCCESS) << tfla_last_error();
    ASSERT_TRUE(outputs_written(bb.outputs()));
    const ref::InputGrads want = ref::backward_recurrent(ref_problem(c), x, g);
    ASSERT_GT(l2_norm(want.dc0), 0.0);  // the case exercises a non-trivial gradient
    EXPECT_TRUE(near_rel("dc0", bb.dc0.get(), want.dc0, 1e-6));
    EXPECT_TRUE(near_rel("dn0", bb.dn0.get(), want.dn0, 1e-6, 1e-7));
  }
}

// The default chunk size is reported and is what chunk_size = 0 runs with.
TEST(CpuBackendOptional, DefaultChunkSizeIsUsedForZero) {
  Case c = make_case({1, 1, 50, 6, 5}, kVariants[0], 0, Layout::kDense, true, true, 8200);
  int64_t L = -1;
  const tfla_mlstm_problem p = lib_problem(c);
  ASSERT_EQ(tfla_mlstm_default_chunk_size(&p, &L), TFLA_SUCCESS) << tfla_last_error();
  EXPECT_GE(L, 1);
  const ref::Inputs x = random_inputs(c);
  const ref::OutputGrads g = random_output_grads(c);
  const LibResult a = run_cpu(c, x, g);
  c.chunk = L;
  const LibResult b = run_cpu(c, x, g);
  ASSERT_TRUE(a.ok && b.ok);
  EXPECT_EQ(a.out.h, b.out.h);
  EXPECT_EQ(a.grads.df, b.grads.df);
}

}  // namespace
}  // namespace tfla::test
