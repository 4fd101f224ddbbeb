// fp64 references of the mLSTM cell for tests and for the error column of tfla-bench: the recurrent
// (step) form and the parallel (quadratic) form, forward and backward. Deliberately independent of the
// library's backends (no chunking, no shared code with src/), so that they can check them.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <vector>

#include "tfla/tfla.h"

namespace tfla::ref {

struct Problem {
  int64_t B = 1, H = 1, S = 1, Dk = 1, Dv = 1;
  tfla_variant variant = TFLA_VARIANT_EXP;
  bool normalize = true;  // sig only; exp always normalizes
  double scale = 0.0;     // 0 = Dk^-1/2
  double eps = 1e-6;
};

// Dense row-major fp64 tensors: q,k (B,H,S,Dk), v (B,H,S,Dv), i,f (B,H,S), c0 (B,H,Dk,Dv), n0 (B,H,Dk),
// m0 (B,H). An empty vector means "absent" (zeros).
struct Inputs {
  std::vector<double> q, k, v, i, f;
  std::vector<double> c0, n0, m0;
};

// h (B,H,S,Dv); c_last, n_last, m_last as c0, n0, m0; m_token, den_token (B,H,S).
struct Outputs {
  std::vector<double> h, c_last, n_last, m_last, m_token, den_token;
};

// Gradients of the outputs: dh required; dc_last, dn_last empty = absent.
struct OutputGrads {
  std::vector<double> dh, dc_last, dn_last;
};

// Gradients of the inputs (den and every m held constant, spec "Gradients"). dc0/dn0 are always filled.
struct InputGrads {
  std::vector<double> dq, dk, dv, di, df, dc0, dn0;
};

Outputs forward_recurrent(const Problem& p, const Inputs& x);
Outputs forward_parallel(const Problem& p, const Inputs& x);
InputGrads backward_recurrent(const Problem& p, const Inputs& x, const OutputGrads& g);
InputGrads backward_parallel(const Problem& p, const Inputs& x, const OutputGrads& g);

}  // namespace tfla::ref
