// Low-precision inputs (bf16, f16 for q/k/v; gates f32 or in the input dtype) against the spec's accuracy
// rule: for every output and gradient,
//   err(backend - ref) <= 2 * err(plain - ref) + 1e-5,
// where ref is the fp64 reference on the same rounded inputs and plain is the input-dtype implementation
// with fp32 accumulation (common/plain_lowp.hpp). The rule must hold with err = max-abs AND with err = RMS
// (the same measure on both sides each time; common/metrics.hpp says why both).
// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "common/cases.hpp"
#include "common/harness.hpp"
#include "common/metrics.hpp"
#include "common/plain_lowp.hpp"
#include "reference/mlstm_reference.hpp"

namespace tfla::test {
namespace {

class LowPrecision : public ::testing::TestWithParam<Case> {};

TEST_P(LowPrecision, AccuracyRule) {
  const Case c = GetParam();
  const ref::Problem p = ref_problem(c);
  const ref::Inputs x = random_inputs(c);  // rounded to c.x / c.g
  const ref::OutputGrads g = random_output_grads(c);
  const ref::Outputs ro = ref::forward_recurrent(p, x);
  const ref::InputGrads rg = ref::backward_parallel(p, x, g);
  const ref::Outputs po = plain_forward(p, x, c.x, c.g);
  const ref::InputGrads pg = plain_backward(p, x, g, c.x, c.g);
  const LibResult lib = run_cpu(c, x, g);
  ASSERT_TRUE(lib.ok);

  // The plain implementation must itself be sane (a broken baseline would loosen every bound).
  EXPECT_TRUE(near_rel("plain h", po.h, ro.h, 5e-2));
  EXPECT_TRUE(near_rel("plain dq", pg.dq, rg.dq, 5e-2));
  EXPECT_TRUE(near_rel("plain dfgate", pg.df, rg.df, 1e-1));

  EXPECT_TRUE(accuracy_rule("h", lib.out.h, po.h, ro.h));
  EXPECT_TRUE(accuracy_rule("m_token", lib.out.m_token, po.m_token, ro.m_token));
  if (c.variant == TFLA_VARIANT_EXP || c.normalize) {
    EXPECT_TRUE(accuracy_rule("den_token", lib.out.den_token, po.den_token, ro.den_token));
  }
  if (c.final_state) {
    EXPECT_TRUE(accuracy_rule("c_last", lib.out.c_last, po.c_last, ro.c_last));
    EXPECT_TRUE(accuracy_rule("n_last", lib.out.n_last, po.n_last, ro.n_last));
    EXPECT_TRUE(accuracy_rule("m_last", lib.out.m_last, po.m_last, ro.m_last));
  }
  EXPECT_TRUE(accuracy_rule("dq", lib.grads.dq, pg.dq, rg.dq));
  EXPECT_TRUE(accuracy_rule("dk", lib.grads.dk, pg.dk, rg.dk));
  EXPECT_TRUE(accuracy_rule("dv", lib.grads.dv, pg.dv, rg.dv));
  EXPECT_TRUE(accuracy_rule("digate", lib.grads.di, pg.di, rg.di));
  EXPECT_TRUE(accuracy_rule("dfgate", lib.grads.df, pg.df, rg.df));
  if (c.init) {
    EXPECT_TRUE(accuracy_rule("dc0", lib.grads.dc0, pg.dc0, rg.dc0));
    EXPECT_TRUE(accuracy_rule("dn0", lib.grads.dn0, pg.dn0, rg.dn0));
  }
}

std::vector<Case> lowp_grid() {
  struct LowpShape {
    int64_t B, H, S, Dk, Dv, chunk;
    Layout layout;
    bool states;
  };
  const LowpShape shapes[] = {{1, 2, 64, 32, 48, 16, Layout::kDense, true},
                          {2, 1, 100, 7, 96, 0, Layout::kSeqMajor, true},
                          {1, 1, 45, 16, 16, 20, Layout::kDense, false}};

  std::vector<Case> out;
  uint64_t seed = 9000;
  for (tfla_dtype xd : {TFLA_DTYPE_BF16, TFLA_DTYPE_F16})
    for (bool gates_in_x : {false, true})
      for (const auto& v : kVariants)
        for (const auto& s : shapes) {
          Case c = make_case({s.B, s.H, s.S, s.Dk, s.Dv}, v, s.chunk, s.layout, s.states, s.states, 0);
          c.x = xd;
          c.g = gates_in_x ? xd : TFLA_DTYPE_F32;
          c.seed = ++seed;
          out.push_back(c);
        }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Dtypes, LowPrecision, ::testing::ValuesIn(lowp_grid()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name(); });

// The rule has teeth: an implementation that rounds its intermediates to bf16 fails it on f16 inputs.
TEST(LowPrecisionRule, RejectsBf16IntermediatesOnF16Inputs) {
  Case c;
  c.B = 1;
  c.H = 2;
  c.S = 48;
  c.Dk = 16;
  c.Dv = 16;
  c.init = c.final_state = true;
  c.x = c.g = TFLA_DTYPE_F16;
  c.seed = 9500;
  const ref::Problem p = ref_problem(c);
  const ref::Inputs x = random_inputs(c);
  const ref::OutputGrads g = random_output_grads(c);
  const ref::Outputs ro = ref::forward_recurrent(p, x);
  const ref::Outputs good = plain_forward(p, x, TFLA_DTYPE_F16, TFLA_DTYPE_F16);
  const ref::Outputs sloppy = plain_forward(p, x, TFLA_DTYPE_BF16, TFLA_DTYPE_F16);
  EXPECT_TRUE(accuracy_rule("h (f16 plain vs itself)", good.h, good.h, ro.h));
  EXPECT_FALSE(accuracy_rule("h (bf16 intermediates)", sloppy.h, good.h, ro.h));
  const ref::InputGrads rg = ref::backward_parallel(p, x, g);
  const ref::InputGrads pg = plain_backward(p, x, g, TFLA_DTYPE_F16, TFLA_DTYPE_F16);
  const ref::InputGrads sg = plain_backward(p, x, g, TFLA_DTYPE_BF16, TFLA_DTYPE_F16);
  EXPECT_FALSE(accuracy_rule("dq (bf16 intermediates)", sg.dq, pg.dq, rg.dq));
  EXPECT_FALSE(accuracy_rule("dk (bf16 intermediates)", sg.dk, pg.dk, rg.dk));
}

}  // namespace
}  // namespace tfla::test
