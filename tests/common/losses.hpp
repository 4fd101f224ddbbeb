// Losses for finite-difference gradient checks.
//
// The library's (and the references') backward holds den_t and every stabilizer m constant. That equals the
// true derivative only for a loss that is invariant to a positive per-row scale of h (spec "Gradients"): both
// den_t and m_t enter h_t as a per-row factor. RowRmsLoss is such a loss:
//   L(h) = sum_rows sum_j w_rj (h_rj / rms(h_r) + o_rj)^2,    rms(h_r) = sqrt(mean_j h_rj^2).
// For the final state of mLSTMexp, m_last rescales c_last and n_last together, so a loss on them must be
// invariant to one positive scale of the concatenation (c_last[b,h], n_last[b,h]): RowRmsLoss over rows of
// length Dk*Dv + Dk does that. For mLSTMsig (no stabilizer) any smooth loss works; QuadLoss is used there
// because it is not scale-invariant and so checks the state gradients in absolute terms.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace tfla::test {

class RowRmsLoss {
 public:
  RowRmsLoss(int64_t rows, int64_t len, uint64_t seed) : rows_(rows), len_(len), w_(rows * len), o_(rows * len) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> uw(0.5, 1.5), uo(-1.0, 1.0);
    for (auto& x : w_) x = uw(rng);
    for (auto& x : o_) x = uo(rng);
  }
  double value(const std::vector<double>& x) const {
    double L = 0.0;
    for (int64_t r = 0; r < rows_; ++r) {
      const double rr = rms(x, r);
      for (int64_t j = 0; j < len_; ++j) {
        const int64_t e = r * len_ + j;
        const double y = x[e] / rr + o_[e];
        L += w_[e] * y * y;
      }
    }
    return L;
  }
  std::vector<double> grad(const std::vector<double>& x) const {
    std::vector<double> g(x.size());
    for (int64_t r = 0; r < rows_; ++r) {
      const double rr = rms(x, r);
      double gy_y = 0.0;  // sum_j dL/dy_j * y_j
      for (int64_t j = 0; j < len_; ++j) {
        const int64_t e = r * len_ + j;
        const double y = x[e] / rr;
        g[e] = 2.0 * w_[e] * (y + o_[e]);  // dL/dy
        gy_y += g[e] * y;
      }
      // y = x / rms(x): dy_j/dx_l = (delta_jl - y_j y_l / len) / rms
      for (int64_t j = 0; j < len_; ++j) {
        const int64_t e = r * len_ + j;
        g[e] = (g[e] - (x[e] / rr) * gy_y / static_cast<double>(len_)) / rr;
      }
    }
    return g;
  }

 private:
  double rms(const std::vector<double>& x, int64_t r) const {
    double s = 0.0;
    for (int64_t j = 0; j < len_; ++j) s += x[r * len_ + j] * x[r * len_ + j];
    return std::sqrt(s / static_cast<double>(len_));
  }
  int64_t rows_, len_;
  std::vector<double> w_, o_;
};

// L(x) = sum_e a_e x_e + 0.5 * b_e x_e^2
class QuadLoss {
 public:
  QuadLoss(int64_t n, uint64_t seed) : a_(n), b_(n) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    for (auto& x : a_) x = u(rng);
    for (auto& x : b_) x = u(rng);
  }
  double value(const std::vector<double>& x) const {
    double L = 0.0;
    for (size_t e = 0; e < x.size(); ++e) L += a_[e] * x[e] + 0.5 * b_[e] * x[e] * x[e];
    return L;
  }
  std::vector<double> grad(const std::vector<double>& x) const {
    std::vector<double> g(x.size());
    for (size_t e = 0; e < x.size(); ++e) g[e] = a_[e] + b_[e] * x[e];
    return g;
  }

 private:
  std::vector<double> a_, b_;
};

}  // namespace tfla::test
