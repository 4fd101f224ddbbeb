// The shared test helpers themselves: dtype rounding, layouts, poisoning, metrics, the accuracy rule.
// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/dtype_util.hpp"
#include "common/host_tensor.hpp"
#include "common/metrics.hpp"
#include "tfla/tfla.hpp"

namespace tfla::test {
namespace {

TEST(DtypeUtil, Bf16KnownValues) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80u);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xc000u);
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f), 0x3f80u);          // tie -> even (down)
  EXPECT_EQ(float_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82u);      // tie -> even (up)
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81u);  // above the tie
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  EXPECT_EQ(bf16_to_float(0x3fc0u), 1.5f);
}

TEST(DtypeUtil, F16KnownValues) {
  EXPECT_EQ(float_to_f16(1.0f), 0x3c00u);
  EXPECT_EQ(float_to_f16(-2.0f), 0xc000u);
  EXPECT_EQ(float_to_f16(65504.0f), 0x7bffu);
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00u);   // rounds to inf
  EXPECT_EQ(float_to_f16(0x1p-24f), 0x0001u);   // smallest subnormal
  EXPECT_EQ(float_to_f16(0x1p-14f), 0x0400u);   // smallest normal
  EXPECT_EQ(float_to_f16(0.1f), 0x2e66u);
  EXPECT_EQ(float_to_f16(1.0f + 0x1p-11f), 0x3c00u);      // tie -> even
  EXPECT_EQ(float_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02u);  // tie -> even (up)
  EXPECT_EQ(f16_to_float(0x3555u), 0.333251953125f);
  EXPECT_EQ(f16_to_float(0x0001u), 0x1p-24f);
  // Round trip of every finite f16.
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    if (((b >> 10) & 0x1f) == 0x1f) continue;
    ASSERT_EQ(float_to_f16(f16_to_float(static_cast<uint16_t>(b))), b == 0x8000u ? 0x8000u : b) << b;
  }
}

TEST(DtypeUtil, RoundToIsIdempotent) {
  for (int dt : {TFLA_DTYPE_F32, TFLA_DTYPE_BF16, TFLA_DTYPE_F16}) {
    const double v = round_to(0.123456789, dt);
    EXPECT_EQ(round_to(v, dt), v);
    EXPECT_NEAR(v, 0.123456789, 1e-2);
  }
  EXPECT_NE(round_to(0.123456789, TFLA_DTYPE_BF16), round_to(0.123456789, TFLA_DTYPE_F16));
}

TEST(HostTensor, SeqMajorStridesMatchTflaHelpers) {
  const int64_t B = 2, H = 3, S = 5, D = 7;
  HostTensor q(TFLA_DTYPE_BF16, {B, H, S, D}, Layout::kSeqMajor);
  const tfla_tensor a = q.view(), b = tfla::bshd(q.data(), TFLA_DTYPE_BF16, B, H, S, D);
  for (int d = 0; d < 4; ++d) EXPECT_EQ(a.stride[d], b.stride[d]) << d;
  HostTensor g(TFLA_DTYPE_F32, {B, H, S}, Layout::kSeqMajor);
  const tfla_tensor c = g.view(), e = tfla::bsh(g.data(), TFLA_DTYPE_F32, B, H, S);
  for (int d = 0; d < 3; ++d) EXPECT_EQ(c.stride[d], e.stride[d]) << d;
  HostTensor s(TFLA_DTYPE_F32, {B, H, S, D});
  const tfla_tensor f = s.view(), h = tfla::contiguous(s.data(), TFLA_DTYPE_F32, {B, H, S, D});
  for (int d = 0; d < 4; ++d) EXPECT_EQ(f.stride[d], h.stride[d]) << d;
}

TEST(HostTensor, SetGetRoundTripAndMemoryOrder) {
  const int64_t B = 1, H = 2, S = 3, D = 2;
  HostTensor t(TFLA_DTYPE_F32, {B, H, S, D}, Layout::kSeqMajor);
  std::vector<double> v(t.numel());
  for (size_t e = 0; e < v.size(); ++e) v[e] = static_cast<double>(e);
  t.set(v);
  EXPECT_EQ(t.get(), v);
  // Logical (b=0, h=1, s=0, d=1) = index 7 lives at memory (s=0, h=1, d=1) = 3.
  EXPECT_EQ(static_cast<const float*>(t.data())[3], 7.0f);
  HostTensor none;
  EXPECT_FALSE(none.present());
  EXPECT_EQ(none.view().data, nullptr);
}

TEST(HostTensor, PoisonGivesNaNInEveryDtype) {
  for (tfla_dtype dt : {TFLA_DTYPE_F32, TFLA_DTYPE_BF16, TFLA_DTYPE_F16}) {
    HostTensor t(dt, {2, 3, 4});
    t.set(std::vector<double>(24, 1.0));
    t.poison();
    for (double x : t.get()) EXPECT_TRUE(std::isnan(x));
    EXPECT_FALSE(all_finite("t", t.get()));
  }
}

TEST(Metrics, ErrorsAndChecks) {
  const std::vector<double> ref{3.0, 4.0}, got{3.0, 4.5};
  EXPECT_DOUBLE_EQ(max_abs_err(got, ref), 0.5);
  EXPECT_DOUBLE_EQ(rel_l2_err(got, ref), 0.1);
  EXPECT_TRUE(near_rel("x", got, ref, 0.11));
  EXPECT_FALSE(near_rel("x", got, ref, 0.09));
  EXPECT_FALSE(near_rel("x", {3.0, std::nan("")}, ref, 1.0));
  // Accuracy rule: kernel error 0.5 vs plain error 0.3: 0.5 <= 0.6 + 1e-5 passes, 0.2 would not.
  EXPECT_TRUE(accuracy_rule("x", got, {3.3, 4.0}, ref));
  EXPECT_FALSE(accuracy_rule("x", got, {3.2, 4.0}, ref));
  // Max-abs alike (0.5 vs 0.3) but the plain error is in one element, the kernel's in four: RMS fails.
  const std::vector<double> r4{1, 1, 1, 1}, k4{1.5, 1.5, 1.5, 1.5}, p4{1.3, 1, 1, 1};
  EXPECT_TRUE(accuracy_rule("x", k4, p4, r4, ErrorMeasure::kMaxAbs));
  EXPECT_FALSE(accuracy_rule("x", k4, p4, r4, ErrorMeasure::kRms));
  EXPECT_FALSE(accuracy_rule("x", k4, p4, r4));
  EXPECT_DOUBLE_EQ(rms_err(k4, r4), 0.5);
  EXPECT_FALSE(accuracy_rule("x", {3.0, std::nan("")}, {3.0, std::nan("")}, ref));
  EXPECT_TRUE(accuracy_rule("x", {3.0, 4.0 + 5e-6}, ref, ref));  // exact plain: 1e-5 absolute slack
}

}  // namespace
}  // namespace tfla::test
