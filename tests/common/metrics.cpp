// SPDX-License-Identifier: Apache-2.0
#include "common/metrics.hpp"

#include <cmath>
#include <limits>
#include <sstream>

namespace tfla::test {

int64_t first_nonfinite(const std::vector<double>& v) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) return static_cast<int64_t>(i);
  return -1;
}

double max_abs_err(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::quiet_NaN();
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(a[i] - b[i]);
    if (std::isnan(d)) return std::numeric_limits<double>::quiet_NaN();
    m = std::max(m, d);
  }
  return m;
}

double l2_norm(const std::vector<double>& a) {
  double s = 0.0;
  for (double x : a) s += x * x;
  return std::sqrt(s);
}

double rel_l2_err(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::quiet_NaN();
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = a[i] - b[i];
    if (std::isnan(d)) return std::numeric_limits<double>::quiet_NaN();
    num += d * d;
    den += b[i] * b[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

::testing::AssertionResult all_finite(const std::string& name, const std::vector<double>& v) {
  const int64_t i = first_nonfinite(v);
  if (i < 0) return ::testing::AssertionSuccess();
  int64_t count = 0;
  for (double x : v) count += std::isfinite(x) ? 0 : 1;
  return ::testing::AssertionFailure() << name << ": " << count << " of " << v.size()
                                       << " elements not finite (unwritten or NaN/Inf); first at " << i << " = "
                                       << v[i];
}

::testing::AssertionResult near_rel(const std::string& name, const std::vector<double>& got,
                                    const std::vector<double>& want, double tol, double abs_floor) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << name << ": size " << got.size() << " vs " << want.size();
  const int64_t bad = first_nonfinite(got);
  if (bad >= 0 && std::isfinite(want[bad]))
    return ::testing::AssertionFailure() << name << ": element " << bad << " is " << got[bad] << " (reference "
                                         << want[bad] << ")";
  const double e = rel_l2_err(got, want);
  if (e <= tol) return ::testing::AssertionSuccess() << name << ": rel err " << e;
  std::vector<double> diff(got.size());
  for (size_t i = 0; i < got.size(); ++i) diff[i] = got[i] - want[i];
  const double abs_err = l2_norm(diff);
  if (abs_err <= abs_floor) return ::testing::AssertionSuccess() << name << ": abs err " << abs_err;
  // Locate the worst element for the message.
  size_t worst = 0;
  double wd = -1.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(got[i] - want[i]);
    if (!(d <= wd)) {
      wd = d;
      worst = i;
    }
  }
  return ::testing::AssertionFailure() << name << ": norm-wise relative error " << e << " > " << tol
                                       << " (|ref| = " << l2_norm(want) << ", |got-ref| = " << abs_err << ", floor " << abs_floor << "; worst element " << worst << ": got "
                                       << got[worst] << ", ref " << want[worst] << ")";
}

double rms_err(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::quiet_NaN();
  if (a.empty()) return 0.0;
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s / static_cast<double>(a.size()));
}

::testing::AssertionResult accuracy_rule(const std::string& name, const std::vector<double>& kernel,
                                         const std::vector<double>& plain, const std::vector<double>& ref,
                                         ErrorMeasure measure, double factor, double abs_tol) {
  if (kernel.size() != ref.size() || plain.size() != ref.size())
    return ::testing::AssertionFailure() << name << ": sizes differ (kernel " << kernel.size() << ", plain "
                                         << plain.size() << ", ref " << ref.size() << ")";
  for (size_t i = 0; i < kernel.size(); ++i)
    if (std::isnan(kernel[i]))
      return ::testing::AssertionFailure() << name << ": NaN at element " << i << " (unwritten or not finite)";
  std::ostringstream msg;
  bool ok = true;
  if (measure != ErrorMeasure::kRms) {
    const double ek = max_abs_err(kernel, ref), ep = max_abs_err(plain, ref), bound = factor * ep + abs_tol;
    ok = ok && ek <= bound;
    msg << name << ": max|kernel-ref| = " << ek << ", max|plain-ref| = " << ep << ", bound " << bound << "; ";
  }
  if (measure != ErrorMeasure::kMaxAbs) {
    const double ek = rms_err(kernel, ref), ep = rms_err(plain, ref), bound = factor * ep + abs_tol;
    ok = ok && ek <= bound;
    msg << name << ": rms(kernel-ref) = " << ek << ", rms(plain-ref) = " << ep << ", bound " << bound;
  }
  if (ok) return ::testing::AssertionSuccess() << msg.str();
  return ::testing::AssertionFailure() << msg.str();
}

}  // namespace tfla::test
