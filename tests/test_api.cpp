// Bad input gets a clear error (status code and a message naming the argument via tfla_last_error()),
// never a crash. Each case mutates one field of an otherwise valid call.
// Note: the C ABI carries one set of sizes (the problem) and no per-tensor shapes, so "mismatched sizes"
// can only show up as a wrong problem size (zero/negative) or a wrong dtype/stride of one tensor; those
// are what is tested here.
// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "common/cases.hpp"
#include "common/harness.hpp"
#include "tfla/tfla.hpp"

namespace tfla::test {
namespace {

// `word` appears in `msg` as a whole token (so "q" does not match inside "required").
bool mentions(const std::string& msg, const std::string& word) {
  const std::regex re("(^|[^A-Za-z0-9_.])" + std::regex_replace(word, std::regex(R"([.])"), R"(\.)") +
                      "($|[^A-Za-z0-9_])");
  return std::regex_search(msg, re);
}

Case base_case() {
  Case c;
  c.B = 1;
  c.H = 2;
  c.S = 5;
  c.Dk = 4;
  c.Dv = 3;
  c.chunk = 2;
  c.init = true;
  c.final_state = true;
  c.seed = 11;
  return c;
}

struct BadFwd {
  std::string label;
  std::function<void(tfla_mlstm_fwd_params&)> mutate;
  tfla_status status;
  std::vector<std::string> words;  // each must appear in the message
};

struct BadBwd {
  std::string label;
  std::function<void(tfla_mlstm_bwd_params&)> mutate;
  tfla_status status;
  std::vector<std::string> words;
};

void PrintTo(const BadFwd& b, std::ostream* os) { *os << b.label; }
void PrintTo(const BadBwd& b, std::ostream* os) { *os << b.label; }

constexpr tfla_status kInvalid = TFLA_ERROR_INVALID_ARGUMENT;

// Problem-level mistakes, shared by the forward and the backward.
struct BadProblem {
  std::string label;
  std::function<void(tfla_mlstm_problem&)> mutate;
  std::vector<std::string> words;
};
const std::vector<BadProblem>& bad_problems() {
  static const std::vector<BadProblem> v = {
      {"batch_zero", [](tfla_mlstm_problem& p) { p.batch = 0; }, {"problem.batch"}},
      {"heads_negative", [](tfla_mlstm_problem& p) { p.heads = -1; }, {"problem.heads"}},
      {"seq_len_zero", [](tfla_mlstm_problem& p) { p.seq_len = 0; }, {"problem.seq_len"}},
      {"dim_qk_zero", [](tfla_mlstm_problem& p) { p.dim_qk = 0; }, {"problem.dim_qk"}},
      {"dim_v_negative", [](tfla_mlstm_problem& p) { p.dim_v = -3; }, {"problem.dim_v"}},
      {"variant_unknown", [](tfla_mlstm_problem& p) { p.variant = 7; }, {"problem.variant"}},
      {"normalize_two", [](tfla_mlstm_problem& p) { p.normalize = 2; }, {"problem.normalize"}},
      {"normalize_zero_with_exp", [](tfla_mlstm_problem& p) { p.normalize = 0; }, {"problem.normalize"}},
      {"eps_negative", [](tfla_mlstm_problem& p) { p.eps = -1e-6f; }, {"problem.eps"}},
      {"eps_nan", [](tfla_mlstm_problem& p) { p.eps = std::numeric_limits<float>::quiet_NaN(); }, {"problem.eps"}},
      {"scale_inf", [](tfla_mlstm_problem& p) { p.scale = std::numeric_limits<float>::infinity(); }, {"problem.scale"}},
      {"chunk_size_negative", [](tfla_mlstm_problem& p) { p.chunk_size = -1; }, {"problem.chunk_size"}},
      {"device_type_unknown", [](tfla_mlstm_problem& p) { p.device_type = 5; }, {"problem.device_type"}},
      {"device_index_negative", [](tfla_mlstm_problem& p) { p.device_index = -1; }, {"problem.device_index"}},
  };
  return v;
}

std::vector<BadFwd> bad_fwd_cases() {
  std::vector<BadFwd> v;
  for (const auto& bp : bad_problems())
    v.push_back({"problem_" + bp.label, [m = bp.mutate](tfla_mlstm_fwd_params& p) { m(p.problem); }, kInvalid, bp.words});
  auto add = [&](std::string label, std::function<void(tfla_mlstm_fwd_params&)> m, std::vector<std::string> w,
                 tfla_status s = kInvalid) { v.push_back({std::move(label), std::move(m), s, std::move(w)}); };
  add("q_null", [](auto& p) { p.q.data = nullptr; }, {"q", "NULL"});
  add("k_null", [](auto& p) { p.k.data = nullptr; }, {"k", "NULL"});
  add("v_null", [](auto& p) { p.v.data = nullptr; }, {"v", "NULL"});
  add("igate_null", [](auto& p) { p.igate.data = nullptr; }, {"igate", "NULL"});
  add("fgate_null", [](auto& p) { p.fgate.data = nullptr; }, {"fgate", "NULL"});
  add("h_null", [](auto& p) { p.h.data = nullptr; }, {"h", "NULL"});
  add("q_negative_stride", [](auto& p) { p.q.stride[2] = -4; }, {"q", "negative"});
  add("v_negative_stride", [](auto& p) { p.v.stride[3] = -1; }, {"v", "negative"});
  add("fgate_negative_stride", [](auto& p) { p.fgate.stride[0] = -10; }, {"fgate", "negative"});
  add("c0_negative_stride", [](auto& p) { p.c0.stride[1] = -12; }, {"c0", "negative"});
  add("h_zero_stride", [](auto& p) { p.h.stride[3] = 0; }, {"h", "overlap"});
  add("h_overlapping_strides", [](auto& p) { p.h.stride[2] = 1; }, {"h", "overlapping"});
  add("c_last_overlapping_strides", [](auto& p) { p.c_last.stride[2] = 2; }, {"c_last", "overlapping"});
  add("m_token_zero_stride", [](auto& p) { p.m_token.stride[2] = 0; }, {"m_token", "overlap"});
  add("den_token_overlapping", [](auto& p) { p.den_token.stride[1] = 1; }, {"den_token", "overlapping"});
  add("q_dtype_unknown", [](auto& p) { p.q.dtype = 7; }, {"q", "dtype"});
  add("igate_dtype_unknown", [](auto& p) { p.igate.dtype = -1; }, {"igate", "dtype"});
  add("k_dtype_mismatch", [](auto& p) { p.k.dtype = TFLA_DTYPE_BF16; }, {"k", "dtype"});
  add("v_dtype_mismatch", [](auto& p) { p.v.dtype = TFLA_DTYPE_F16; }, {"v", "dtype"});
  add("h_dtype_mismatch", [](auto& p) { p.h.dtype = TFLA_DTYPE_BF16; }, {"h", "dtype"});
  add("fgate_dtype_mismatch", [](auto& p) { p.fgate.dtype = TFLA_DTYPE_BF16; }, {"fgate", "dtype"});
  add("c0_not_f32", [](auto& p) { p.c0.dtype = TFLA_DTYPE_BF16; }, {"c0", "dtype"});
  add("n0_not_f32", [](auto& p) { p.n0.dtype = TFLA_DTYPE_F16; }, {"n0", "dtype"});
  add("m0_bad_dtype", [](auto& p) { p.m0.dtype = 3; }, {"m0", "dtype"});
  add("m_last_not_f32", [](auto& p) { p.m_last.dtype = TFLA_DTYPE_F16; }, {"m_last", "dtype"});
  add("den_token_not_f32", [](auto& p) { p.den_token.dtype = TFLA_DTYPE_BF16; }, {"den_token", "dtype"});
  return v;
}

std::vector<BadBwd> bad_bwd_cases() {
  std::vector<BadBwd> v;
  for (const auto& bp : bad_problems())
    v.push_back({"problem_" + bp.label, [m = bp.mutate](tfla_mlstm_bwd_params& p) { m(p.problem); }, kInvalid, bp.words});
  auto add = [&](std::string label, std::function<void(tfla_mlstm_bwd_params&)> m, std::vector<std::string> w) {
    v.push_back({std::move(label), std::move(m), kInvalid, std::move(w)});
  };
  add("q_null", [](auto& p) { p.q.data = nullptr; }, {"q", "NULL"});
  add("v_null", [](auto& p) { p.v.data = nullptr; }, {"v", "NULL"});
  add("fgate_null", [](auto& p) { p.fgate.data = nullptr; }, {"fgate", "NULL"});
  add("dh_null", [](auto& p) { p.dh.data = nullptr; }, {"dh", "NULL"});
  add("m_token_null_exp", [](auto& p) { p.m_token.data = nullptr; }, {"m_token", "NULL"});
  add("den_token_null_exp", [](auto& p) { p.den_token.data = nullptr; }, {"den_token", "NULL"});
  add("den_token_null_sig_normalize",
      [](auto& p) {
        p.problem.variant = TFLA_VARIANT_SIG;
        p.den_token.data = nullptr;
      },
      {"den_token", "NULL"});
  add("k_dtype_mismatch", [](auto& p) { p.k.dtype = TFLA_DTYPE_F16; }, {"k", "dtype"});
  add("dh_dtype_mismatch", [](auto& p) { p.dh.dtype = TFLA_DTYPE_BF16; }, {"dh", "dtype"});
  add("dq_dtype_mismatch", [](auto& p) { p.dq.dtype = TFLA_DTYPE_BF16; }, {"dq", "dtype"});
  add("digate_dtype_mismatch", [](auto& p) { p.digate.dtype = TFLA_DTYPE_F16; }, {"digate", "dtype"});
  add("dfgate_dtype_unknown", [](auto& p) { p.dfgate.dtype = 42; }, {"dfgate", "dtype"});
  add("dc_last_not_f32", [](auto& p) { p.dc_last.dtype = TFLA_DTYPE_BF16; }, {"dc_last", "dtype"});
  add("dn0_not_f32", [](auto& p) { p.dn0.dtype = TFLA_DTYPE_BF16; }, {"dn0", "dtype"});
  add("dk_negative_stride", [](auto& p) { p.dk.stride[3] = -1; }, {"dk", "negative"});
  add("dh_negative_stride", [](auto& p) { p.dh.stride[1] = -15; }, {"dh", "negative"});
  add("dv_overlapping_strides", [](auto& p) { p.dv.stride[2] = 2; }, {"dv", "overlapping"});
  add("dc0_zero_stride", [](auto& p) { p.dc0.stride[3] = 0; }, {"dc0", "overlap"});
  add("dfgate_overlapping", [](auto& p) { p.dfgate.stride[2] = 0; }, {"dfgate", "overlap"});
  return v;
}

// A valid call's buffers (kept alive by the fixture).
struct Valid {
  Case c = base_case();
  ref::Inputs x = random_inputs(c);
  ref::OutputGrads g = random_output_grads(c);
  FwdBuffers fb = make_fwd_buffers(c, x);
  BwdBuffers bb = make_bwd_buffers(c, g);
  tfla_mlstm_fwd_params fwd() { return make_fwd_params(lib_problem(c), fb); }
  tfla_mlstm_bwd_params bwd() { return make_bwd_params(lib_problem(c), fb, bb); }
};

::testing::AssertionResult error_is(tfla_status got, tfla_status want, const std::vector<std::string>& words) {
  const std::string msg = tfla_last_error();
  if (got != want)
    return ::testing::AssertionFailure() << "status " << got << " (" << tfla_status_string(got) << "), expected "
                                         << want << " (" << tfla_status_string(want) << "); message: \"" << msg << "\"";
  if (msg.empty()) return ::testing::AssertionFailure() << "tfla_last_error() is empty after a failed call";
  for (const auto& w : words)
    if (!mentions(msg, w))
      return ::testing::AssertionFailure() << "message \"" << msg << "\" does not name \"" << w << "\"";
  return ::testing::AssertionSuccess();
}

class ApiBadForward : public ::testing::TestWithParam<BadFwd> {};

TEST_P(ApiBadForward, ClearErrorNoCrash) {
  const BadFwd& bad = GetParam();
  Valid ok;
  {  // The unmutated call succeeds and clears the message.
    tfla_mlstm_fwd_params p = ok.fwd();
    ASSERT_EQ(run_fwd_cpu(p), TFLA_SUCCESS) << tfla_last_error();
    EXPECT_STREQ(tfla_last_error(), "");
  }
  tfla_mlstm_fwd_params p = ok.fwd();
  bad.mutate(p);
  size_t bytes = 12345;
  EXPECT_TRUE(error_is(tfla_mlstm_fwd_workspace_size(&p, &bytes), bad.status, bad.words)) << "workspace_size";
  std::vector<char> big(1 << 20);
  void* ws = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(big.data()) + 255) / 256 * 256);
  EXPECT_TRUE(error_is(tfla_mlstm_fwd(&p, ws, (1 << 20) - 256, nullptr), bad.status, bad.words)) << "fwd";
}

INSTANTIATE_TEST_SUITE_P(Cases, ApiBadForward, ::testing::ValuesIn(bad_fwd_cases()),
                         [](const ::testing::TestParamInfo<BadFwd>& i) { return i.param.label; });

class ApiBadBackward : public ::testing::TestWithParam<BadBwd> {};

TEST_P(ApiBadBackward, ClearErrorNoCrash) {
  const BadBwd& bad = GetParam();
  Valid ok;
  ASSERT_EQ(run_fwd_cpu(ok.fwd()), TFLA_SUCCESS) << tfla_last_error();
  {
    tfla_mlstm_bwd_params p = ok.bwd();
    ASSERT_EQ(run_bwd_cpu(p), TFLA_SUCCESS) << tfla_last_error();
    EXPECT_STREQ(tfla_last_error(), "");
  }
  tfla_mlstm_bwd_params p = ok.bwd();
  bad.mutate(p);
  size_t bytes = 12345;
  EXPECT_TRUE(error_is(tfla_mlstm_bwd_workspace_size(&p, &bytes), bad.status, bad.words)) << "workspace_size";
  std::vector<char> big(1 << 20);
  void* ws = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(big.data()) + 255) / 256 * 256);
  EXPECT_TRUE(error_is(tfla_mlstm_bwd(&p, ws, (1 << 20) - 256, nullptr), bad.status, bad.words)) << "bwd";
}

INSTANTIATE_TEST_SUITE_P(Cases, ApiBadBackward, ::testing::ValuesIn(bad_bwd_cases()),
                         [](const ::testing::TestParamInfo<BadBwd>& i) { return i.param.label; });

// ---------------------------------------------------------------------------------------------------------

TEST(Api, NullParamsAndNullOutArguments) {
  EXPECT_TRUE(error_is(tfla_mlstm_fwd(nullptr, nullptr, 0, nullptr), kInvalid, {"params"}));
  EXPECT_TRUE(error_is(tfla_mlstm_bwd(nullptr, nullptr, 0, nullptr), kInvalid, {"params"}));
  size_t bytes = 0;
  EXPECT_TRUE(error_is(tfla_mlstm_fwd_workspace_size(nullptr, &bytes), kInvalid, {"params"}));
  EXPECT_TRUE(error_is(tfla_mlstm_bwd_workspace_size(nullptr, &bytes), kInvalid, {"params"}));
  Valid ok;
  tfla_mlstm_fwd_params f = ok.fwd();
  tfla_mlstm_bwd_params b = ok.bwd();
  EXPECT_TRUE(error_is(tfla_mlstm_fwd_workspace_size(&f, nullptr), kInvalid, {"bytes"}));
  EXPECT_TRUE(error_is(tfla_mlstm_bwd_workspace_size(&b, nullptr), kInvalid, {"bytes"}));
  int64_t L = 0;
  EXPECT_EQ(tfla_mlstm_default_chunk_size(nullptr, &L), kInvalid);
  EXPECT_EQ(tfla_mlstm_default_chunk_size(&f.problem, nullptr), kInvalid);
  tfla_mlstm_problem bad = f.problem;
  bad.dim_qk = 0;
  EXPECT_TRUE(error_is(tfla_mlstm_default_chunk_size(&bad, &L), kInvalid, {"problem.dim_qk"}));
  tfla_mlstm_problem_init(nullptr);  // documented as a no-op, must not crash
}

TEST(Api, WorkspaceTooSmallMisalignedOrNull) {
  Valid ok;
  tfla_mlstm_fwd_params f = ok.fwd();
  ASSERT_EQ(run_fwd_cpu(f), TFLA_SUCCESS);
  tfla_mlstm_bwd_params b = ok.bwd();
  size_t fneed = 0, bneed = 0;
  ASSERT_EQ(tfla_mlstm_fwd_workspace_size(&f, &fneed), TFLA_SUCCESS);
  ASSERT_EQ(tfla_mlstm_bwd_workspace_size(&b, &bneed), TFLA_SUCCESS);
  if (fneed == 0 && bneed == 0) GTEST_SKIP() << "this backend needs no workspace for the shape";
  std::vector<char> big(fneed + bneed + 1024);
  char* ws = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(big.data()) + 255) / 256 * 256);
  if (fneed > 0) {
    EXPECT_TRUE(error_is(tfla_mlstm_fwd(&f, ws, fneed - 1, nullptr), TFLA_ERROR_WORKSPACE_TOO_SMALL, {"workspace_bytes"}));
    EXPECT_TRUE(error_is(tfla_mlstm_fwd(&f, nullptr, fneed, nullptr), kInvalid, {"workspace"}));
    EXPECT_TRUE(error_is(tfla_mlstm_fwd(&f, ws + 8, fneed, nullptr), kInvalid, {"workspace", "aligned"}));
    EXPECT_EQ(tfla_mlstm_fwd(&f, ws, fneed, nullptr), TFLA_SUCCESS) << tfla_last_error();
  }
  if (bneed > 0) {
    EXPECT_TRUE(error_is(tfla_mlstm_bwd(&b, ws, bneed - 1, nullptr), TFLA_ERROR_WORKSPACE_TOO_SMALL, {"workspace_bytes"}));
    EXPECT_TRUE(error_is(tfla_mlstm_bwd(&b, ws, 0, nullptr), TFLA_ERROR_WORKSPACE_TOO_SMALL, {"workspace_bytes"}));
    EXPECT_TRUE(error_is(tfla_mlstm_bwd(&b, nullptr, bneed, nullptr), kInvalid, {"workspace"}));
    EXPECT_TRUE(error_is(tfla_mlstm_bwd(&b, ws + 8, bneed, nullptr), kInvalid, {"workspace", "aligned"}));
    EXPECT_EQ(tfla_mlstm_bwd(&b, ws, bneed, nullptr), TFLA_SUCCESS) << tfla_last_error();
  }
}

TEST(Api, CudaDeviceOnCpuOnlyBuildIsNotSupported) {
  if (tfla_has_cuda()) GTEST_SKIP() << "this build has the CUDA backend";
  Valid ok;
  tfla_mlstm_fwd_params f = ok.fwd();
  tfla_mlstm_bwd_params b = ok.bwd();
  f.problem.device_type = TFLA_DEVICE_CUDA;
  b.problem.device_type = TFLA_DEVICE_CUDA;
  size_t bytes = 0;
  const tfla_status ns = TFLA_ERROR_NOT_SUPPORTED;
  EXPECT_TRUE(error_is(tfla_mlstm_fwd_workspace_size(&f, &bytes), ns, {"problem.device_type", "CUDA"}));
  EXPECT_TRUE(error_is(tfla_mlstm_bwd_workspace_size(&b, &bytes), ns, {"problem.device_type", "CUDA"}));
  EXPECT_TRUE(error_is(tfla_mlstm_fwd(&f, nullptr, 0, nullptr), ns, {"problem.device_type"}));
  EXPECT_TRUE(error_is(tfla_mlstm_bwd(&b, nullptr, 0, nullptr), ns, {"problem.device_type"}));
  int64_t L = 0;
  EXPECT_TRUE(error_is(tfla_mlstm_default_chunk_size(&f.problem, &L), ns, {"problem.device_type"}));
}

TEST(Api, SigWithoutNormalizeNeedsNoStatistics) {
  Case c = base_case();
  c.variant = TFLA_VARIANT_SIG;
  c.normalize = false;
  const ref::Inputs x = random_inputs(c);
  const ref::OutputGrads g = random_output_grads(c);
  FwdBuffers fb = make_fwd_buffers(c, x);
  fb.m_token = fb.den_token = HostTensor();
  ASSERT_EQ(run_fwd_cpu(make_fwd_params(lib_problem(c), fb)), TFLA_SUCCESS) << tfla_last_error();
  BwdBuffers bb = make_bwd_buffers(c, g);
  EXPECT_EQ(run_bwd_cpu(make_bwd_params(lib_problem(c), fb, bb)), TFLA_SUCCESS) << tfla_last_error();
  EXPECT_TRUE(outputs_written(bb.outputs()));
}

TEST(Api, StatusStringsAndVersion) {
  for (int s = 0; s <= 5; ++s) EXPECT_STRNE(tfla_status_string(static_cast<tfla_status>(s)), "unknown status");
  EXPECT_STREQ(tfla_status_string(static_cast<tfla_status>(99)), "unknown status");
  EXPECT_STREQ(tfla_version_string(), "0.1.0");
  tfla_mlstm_problem p;
  tfla_mlstm_problem_init(&p);
  EXPECT_EQ(p.variant, TFLA_VARIANT_EXP);
  EXPECT_EQ(p.normalize, 1);
  EXPECT_FLOAT_EQ(p.eps, 1e-6f);
  EXPECT_EQ(p.chunk_size, 0);
  EXPECT_EQ(p.device_type, TFLA_DEVICE_CPU);
  // The C++ layer turns a failure into tfla::Error with the status and the message.
  try {
    tfla::check(tfla_mlstm_fwd(nullptr, nullptr, 0, nullptr));
    ADD_FAILURE() << "tfla::check did not throw";
  } catch (const tfla::Error& e) {
    EXPECT_EQ(e.status(), TFLA_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("params"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tfla::test
