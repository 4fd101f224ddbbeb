// SPDX-License-Identifier: Apache-2.0
#include "core/validate.hpp"

#include <cmath>
#include <cstdio>

#include "core/dtype.hpp"
#include "core/status.hpp"

namespace tfla {
namespace {

constexpr int kAnyDtype = -1;

struct TensorSpec {
  const char* name;
  const tfla_tensor* t;
  int rank;
  int64_t size[4];
  bool required;
  bool output;
  int32_t dtype;  // required dtype, or kAnyDtype (then only validity is checked)
};

tfla_status check_tensor(const char* fn, const TensorSpec& s) {
  if (s.t->data == nullptr) {
    if (s.required) return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: %s is required but its data pointer is NULL", fn, s.name);
    return TFLA_SUCCESS;
  }
  if (!dtype_valid(s.t->dtype))
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: %s has dtype code %d; expected one of f32 (0), bf16 (1), f16 (2)", fn,
                s.name, static_cast<int>(s.t->dtype));
  if (s.dtype != kAnyDtype && s.t->dtype != s.dtype)
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: %s has dtype %s; expected %s", fn, s.name, dtype_name(s.t->dtype),
                dtype_name(s.dtype));
  for (int d = 0; d < s.rank; ++d) {
    const int64_t st = s.t->stride[d];
    if (st < 0)
      return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: %s has a negative stride (%lld) in dimension %d", fn, s.name,
                  static_cast<long long>(st), d);
    if (s.output && st == 0 && s.size[d] > 1)
      return fail(TFLA_ERROR_INVALID_ARGUMENT,
                  "%s: output %s has stride 0 in dimension %d of size %lld (elements would overlap)", fn, s.name, d,
                  static_cast<long long>(s.size[d]));
  }
  if (s.output) {
    // Outputs must not overlap themselves: with dims sorted by stride, each stride must clear the span of
    // the smaller ones. (Inputs may broadcast through stride 0.)
    int order[4] = {0, 1, 2, 3};
    for (int a = 0; a < s.rank; ++a)
      for (int b = a + 1; b < s.rank; ++b)
        if (s.t->stride[order[b]] < s.t->stride[order[a]]) {
          int tmp = order[a]; order[a] = order[b]; order[b] = tmp;
        }
    int64_t span = 1;  // elements covered by the dims seen so far
    for (int a = 0; a < s.rank; ++a) {
      const int d = order[a];
      if (s.size[d] == 1) continue;
      if (s.t->stride[d] < span)
        return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: output %s has overlapping strides (dimension %d stride %lld < %lld)",
                    fn, s.name, d, static_cast<long long>(s.t->stride[d]), static_cast<long long>(span));
      span = s.t->stride[d] * s.size[d];
    }
  }
  return TFLA_SUCCESS;
}


}  // namespace

double resolved_scale(const tfla_mlstm_problem& p) {
  return p.scale != 0.0f ? static_cast<double>(p.scale) : 1.0 / std::sqrt(static_cast<double>(p.dim_qk));
}

tfla_status validate_problem(const char* fn, const tfla_mlstm_problem& p) {
  const struct { const char* name; int64_t v; } sizes[] = {
      {"batch", p.batch}, {"heads", p.heads}, {"seq_len", p.seq_len}, {"dim_qk", p.dim_qk}, {"dim_v", p.dim_v}};
  for (const auto& s : sizes)
    if (s.v < 1)
      return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: problem.%s is %lld; it must be >= 1", fn, s.name,
                  static_cast<long long>(s.v));
  if (p.variant != TFLA_VARIANT_EXP && p.variant != TFLA_VARIANT_SIG)
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: problem.variant is %d; expected TFLA_VARIANT_EXP (0) or TFLA_VARIANT_SIG (1)",
                fn, static_cast<int>(p.variant));
  if (p.normalize != 0 && p.normalize != 1)
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: problem.normalize is %d; expected 0 or 1", fn, static_cast<int>(p.normalize));
  if (p.variant == TFLA_VARIANT_EXP && p.normalize == 0)
    return fail(TFLA_ERROR_INVALID_ARGUMENT,
                "%s: problem.normalize = 0 is defined only for TFLA_VARIANT_SIG (mLSTMexp always normalizes)", fn);
  if (!std::isfinite(p.scale))
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: problem.scale is not finite", fn);
  if (!std::isfinite(p.eps) || p.eps < 0.0f)
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: problem.eps is %g; it must be finite and >= 0", fn, static_cast<double>(p.eps));
  if (p.chunk_size < 0)
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: problem.chunk_size is %lld; it must be >= 1 (or 0 for the default)", fn,
                static_cast<long long>(p.chunk_size));
  if (p.device_type != TFLA_DEVICE_CPU && p.device_type != TFLA_DEVICE_CUDA)
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: problem.device_type is %d; expected TFLA_DEVICE_CPU (0) or TFLA_DEVICE_CUDA (1)",
                fn, static_cast<int>(p.device_type));
  if (p.device_index < 0)
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: problem.device_index is %d; it must be >= 0", fn, static_cast<int>(p.device_index));
  return TFLA_SUCCESS;
}

tfla_status validate_fwd(const tfla_mlstm_fwd_params& p) {
  const char* fn = "tfla_mlstm_fwd";
  const tfla_mlstm_problem& pr = p.problem;
  TFLA_TRY(validate_problem(fn, pr));
  const int64_t B = pr.batch, H = pr.heads, S = pr.seq_len, K = pr.dim_qk, V = pr.dim_v;
  const int32_t x = p.q.dtype, g = p.igate.dtype, F32 = TFLA_DTYPE_F32;
  const TensorSpec specs[] = {
      {"q", &p.q, 4, {B, H, S, K}, true, false, kAnyDtype},
      {"k", &p.k, 4, {B, H, S, K}, true, false, x},
      {"v", &p.v, 4, {B, H, S, V}, true, false, x},
      {"igate", &p.igate, 3, {B, H, S, 1}, true, false, kAnyDtype},
      {"fgate", &p.fgate, 3, {B, H, S, 1}, true, false, g},
      {"c0", &p.c0, 4, {B, H, K, V}, false, false, F32},
      {"n0", &p.n0, 3, {B, H, K, 1}, false, false, F32},
      {"m0", &p.m0, 2, {B, H, 1, 1}, false, false, F32},
      {"h", &p.h, 4, {B, H, S, V}, true, true, x},
      {"c_last", &p.c_last, 4, {B, H, K, V}, false, true, F32},
      {"n_last", &p.n_last, 3, {B, H, K, 1}, false, true, F32},
      {"m_last", &p.m_last, 2, {B, H, 1, 1}, false, true, F32},
      {"m_token", &p.m_token, 3, {B, H, S, 1}, false, true, F32},
      {"den_token", &p.den_token, 3, {B, H, S, 1}, false, true, F32},
  };
  for (const auto& s : specs) TFLA_TRY(check_tensor(fn, s));
  return TFLA_SUCCESS;
}

tfla_status validate_bwd(const tfla_mlstm_bwd_params& p) {
  const char* fn = "tfla_mlstm_bwd";
  const tfla_mlstm_problem& pr = p.problem;
  TFLA_TRY(validate_problem(fn, pr));
  const int64_t B = pr.batch, H = pr.heads, S = pr.seq_len, K = pr.dim_qk, V = pr.dim_v;
  const int32_t x = p.q.dtype, g = p.igate.dtype, F32 = TFLA_DTYPE_F32;
  const bool needs_stats = pr.variant == TFLA_VARIANT_EXP || pr.normalize == 1;
  const TensorSpec specs[] = {
      {"q", &p.q, 4, {B, H, S, K}, true, false, kAnyDtype},
      {"k", &p.k, 4, {B, H, S, K}, true, false, x},
      {"v", &p.v, 4, {B, H, S, V}, true, false, x},
      {"igate", &p.igate, 3, {B, H, S, 1}, true, false, kAnyDtype},
      {"fgate", &p.fgate, 3, {B, H, S, 1}, true, false, g},
      {"c0", &p.c0, 4, {B, H, K, V}, false, false, F32},
      {"n0", &p.n0, 3, {B, H, K, 1}, false, false, F32},
      {"m0", &p.m0, 2, {B, H, 1, 1}, false, false, F32},
      {"m_token", &p.m_token, 3, {B, H, S, 1}, pr.variant == TFLA_VARIANT_EXP, false, F32},
      {"den_token", &p.den_token, 3, {B, H, S, 1}, needs_stats, false, F32},
      {"dh", &p.dh, 4, {B, H, S, V}, true, false, x},
      {"dc_last", &p.dc_last, 4, {B, H, K, V}, false, false, F32},
      {"dn_last", &p.dn_last, 3, {B, H, K, 1}, false, false, F32},
      {"dq", &p.dq, 4, {B, H, S, K}, false, true, x},
      {"dk", &p.dk, 4, {B, H, S, K}, false, true, x},
      {"dv", &p.dv, 4, {B, H, S, V}, false, true, x},
      {"digate", &p.digate, 3, {B, H, S, 1}, false, true, g},
      {"dfgate", &p.dfgate, 3, {B, H, S, 1}, false, true, g},
      {"dc0", &p.dc0, 4, {B, H, K, V}, false, true, F32},
      {"dn0", &p.dn0, 3, {B, H, K, 1}, false, true, F32},
  };
  for (const auto& s : specs) TFLA_TRY(check_tensor(fn, s));
  return TFLA_SUCCESS;
}

}  // namespace tfla
