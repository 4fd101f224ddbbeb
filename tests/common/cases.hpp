// A test case (sizes, options, dtypes, layout, seed) and its random inputs, already rounded to the dtypes
// the library will see, so that the fp64 references run on exactly the values the kernel reads.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <ostream>
#include <string>

#include "common/host_tensor.hpp"
#include "reference/mlstm_reference.hpp"
#include "tfla/tfla.h"

namespace tfla::test {

enum class Gates {
  kNormal,     // i ~ N(0, 1.5^2), f ~ N(2.5, 1.5^2): typical trained-model ranges
  kExtreme50,  // each gate pre-activation one of +50, -50 or N(0,1), uniformly
  kExtreme1e4, // each one of +1e4, -1e4 or N(0,1)
};

struct Case {
  int64_t B = 1, H = 1, S = 1, Dk = 4, Dv = 4;
  tfla_variant variant = TFLA_VARIANT_EXP;
  bool normalize = true;  // sig only
  int64_t chunk = 0;      // 0 = the backend's default
  Layout layout = Layout::kDense;  // of q, k, v, h, gates and their gradients; states are always dense
  bool init = false;               // c0, n0, m0 given (and dc0, dn0 requested)
  bool final_state = false;        // c_last, n_last, m_last requested; dc_last, dn_last given
  tfla_dtype x = TFLA_DTYPE_F32;   // q, k, v, h, dh, dq, dk, dv
  tfla_dtype g = TFLA_DTYPE_F32;   // igate, fgate, digate, dfgate
  float scale = 0.0f;              // 0 = Dk^-1/2
  float eps = 1e-6f;
  Gates gates = Gates::kNormal;
  uint64_t seed = 1;

  std::string name() const;  // a gtest-safe name
};

// gtest prints parameters with this (readable test listings instead of a byte dump).
inline void PrintTo(const Case& c, std::ostream* os) { *os << c.name(); }

// The sizes of a case, its variant, and a Case built from them (the suites' shared shorthand).
struct Shape {
  int64_t B, H, S, Dk, Dv;
};
struct Variant {
  tfla_variant v;
  bool normalize;
};
// The three variants: mLSTMexp; mLSTMsig normalized; mLSTMsig unnormalized.
inline constexpr Variant kVariants[3] = {{TFLA_VARIANT_EXP, true}, {TFLA_VARIANT_SIG, true}, {TFLA_VARIANT_SIG, false}};
Case make_case(const Shape& s, const Variant& v, int64_t chunk, Layout layout, bool init, bool fin, uint64_t seed);

// The scale and eps exactly as the library uses them (float), as doubles.
double lib_scale(const Case& c);
ref::Problem ref_problem(const Case& c);
tfla_mlstm_problem lib_problem(const Case& c, tfla_device_type device = TFLA_DEVICE_CPU);

// Random inputs (q, k, v ~ N(0,1); gates per c.gates; c0 ~ N(0, 0.5^2), n0 ~ N(0, 0.5^2), m0 ~ U(-1, 1) when
// c.init) rounded to the case's dtypes (states to f32). Deterministic in c.seed.
ref::Inputs random_inputs(const Case& c);
// dh ~ N(0,1) rounded to c.x; dc_last, dn_last ~ N(0,1) in f32 when c.final_state.
ref::OutputGrads random_output_grads(const Case& c);

}  // namespace tfla::test
