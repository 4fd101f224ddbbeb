// Error metrics and the checks the suites share (host vectors in logical row-major order).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace tfla::test {

// Index of the first NaN/Inf, or -1.
int64_t first_nonfinite(const std::vector<double>& v);
// max_i |a_i - b_i| (NaN if the sizes differ or any element is NaN).
double max_abs_err(const std::vector<double>& a, const std::vector<double>& b);
// Norm-wise relative error ||a - b||_2 / ||b||_2 (plain ||a - b||_2 when b is all zero; NaN if any NaN).
double rel_l2_err(const std::vector<double>& a, const std::vector<double>& b);
double l2_norm(const std::vector<double>& a);

// Every element finite ("written": outputs are poisoned with NaN before the run).
::testing::AssertionResult all_finite(const std::string& name, const std::vector<double>& v);

// Norm-wise relative agreement: ||got - want||_2 <= tol * ||want||_2, or <= abs_floor (for tensors that are
// zero up to rounding, where a relative error means nothing). NaN never passes; sizes must match.
::testing::AssertionResult near_rel(const std::string& name, const std::vector<double>& got,
                                    const std::vector<double>& want, double tol, double abs_floor = 0.0);

// Root-mean-square of a - b (NaN if the sizes differ).
double rms_err(const std::vector<double>& a, const std::vector<double>& b);

enum class ErrorMeasure { kMaxAbs, kRms, kBoth };

// The spec's accuracy rule (FlashAttention-3 style):
//   err(kernel - ref) <= factor * err(plain - ref) + abs_tol,
// where ref is the fp64 reference on the same rounded inputs and plain the input-dtype implementation with
// fp32 accumulation (common/plain_lowp.hpp); the same measure on both sides. The measure is max-abs, RMS, or
// (default) both must hold: max-abs alone is dominated by the final rounding of the largest output element,
// which kernel and plain share, so the RMS form is the more discriminating one. NaN never passes.
::testing::AssertionResult accuracy_rule(const std::string& name, const std::vector<double>& kernel,
                                         const std::vector<double>& plain, const std::vector<double>& ref,
                                         ErrorMeasure measure = ErrorMeasure::kBoth, double factor = 2.0,
                                         double abs_tol = 1e-5);

}  // namespace tfla::test
