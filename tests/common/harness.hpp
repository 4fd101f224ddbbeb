// Buffers and parameter structs for one forward/backward call of the library, built from a Case:
// inputs filled (rounded to their dtypes), outputs poisoned with NaN, views in the case's layout.
// Device-neutral: make_*_params takes a DataPtr that maps each HostTensor to the memory the call should
// see (identity on CPU; a CUDA test passes a function returning the tensor's device mirror, copies the
// outputs back into the HostTensors afterwards, and then uses read_* and the checks unchanged).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/cases.hpp"
#include "common/host_tensor.hpp"
#include "reference/mlstm_reference.hpp"
#include "tfla/tfla.h"

namespace tfla::test {

using Named = std::vector<std::pair<std::string, HostTensor*>>;

struct FwdBuffers {
  HostTensor q, k, v, i, f, c0, n0, m0;                    // inputs
  HostTensor h, c_last, n_last, m_last, m_token, den_token;  // outputs (absent = not requested)
  Named inputs();
  Named outputs();  // present ones only
};

struct BwdBuffers {
  HostTensor dh, dc_last, dn_last;       // inputs
  HostTensor dq, dk, dv, di, df, dc0, dn0;  // outputs (absent = not requested)
  Named inputs();
  Named outputs();
};

// What the forward writes: h always; c_last/n_last/m_last when c.final_state; m_token always; den_token
// when the variant normalizes (it is undefined for sig with normalize = 0).
FwdBuffers make_fwd_buffers(const Case& c, const ref::Inputs& x);
// Requested gradients: dq, dk, dv, digate, dfgate always; dc0, dn0 when c.init (or when `with_dstate0`).
BwdBuffers make_bwd_buffers(const Case& c, const ref::OutputGrads& g, bool with_dstate0 = false);

using DataPtr = std::function<void*(HostTensor&)>;  // empty = the host memory
tfla_mlstm_fwd_params make_fwd_params(const tfla_mlstm_problem& p, FwdBuffers& b, const DataPtr& ptr = {});
// The backward reads q..m0 and m_token/den_token from `fb` (as the forward left them).
tfla_mlstm_bwd_params make_bwd_params(const tfla_mlstm_problem& p, FwdBuffers& fb, BwdBuffers& bb,
                                      const DataPtr& ptr = {});

// Read the outputs back as fp64, logical order; absent tensors give empty vectors.
ref::Outputs read_outputs(const FwdBuffers& b);
ref::InputGrads read_grads(const BwdBuffers& b);

// Every requested output fully written and finite (outputs are poisoned with NaN before the run). The spec
// allows no Inf for finite inputs, den_token included: where e^{-m_t} exceeds the f32 range (exp variant,
// m_t < -88, e.g. gate pre-activations of -1e4) the library must saturate it to a finite value.
::testing::AssertionResult outputs_written(Named outs);

// den_token against the fp64 reference: where the reference's den exceeds the f32 range, the library's must
// be a finite value >= 1e30 (saturated: dh / den is 0 at every precision that matters); elsewhere near_rel.
::testing::AssertionResult den_token_matches(const std::vector<double>& lib, const std::vector<double>& ref,
                                             double tol, double abs_floor);

// Run on the CPU backend with a freshly allocated, 256-byte aligned workspace of the queried size.
tfla_status run_fwd_cpu(const tfla_mlstm_fwd_params& p);
tfla_status run_bwd_cpu(const tfla_mlstm_bwd_params& p);

// Where a call runs. Inputs arrive filled and outputs poisoned in host tensors; an executor runs the call
// and leaves every output back in its host tensor. The CPU one runs in place; a CUDA one mirrors every
// present tensor to the device (the poisoned outputs too, so unwritten elements stay NaN), builds the params
// with a DataPtr onto the mirrors, runs, synchronizes and copies the outputs back.
class Executor {
 public:
  virtual ~Executor() = default;
  virtual tfla_device_type device() const = 0;
  virtual tfla_status fwd(const tfla_mlstm_problem& p, FwdBuffers& fb) = 0;
  virtual tfla_status bwd(const tfla_mlstm_problem& p, FwdBuffers& fb, BwdBuffers& bb) = 0;
};
Executor& cpu_executor();

// Forward then backward of case `c` (the backward gets the forward's m_token and den_token). Fails the
// current test (ADD_FAILURE) on a non-success status or an unwritten/non-finite output.
struct LibResult {
  ref::Outputs out;
  ref::InputGrads grads;
  bool ok = false;
};
LibResult run_lib(Executor& ex, const Case& c, const ref::Inputs& x, const ref::OutputGrads& g, bool backward = true);
inline LibResult run_cpu(const Case& c, const ref::Inputs& x, const ref::OutputGrads& g, bool backward = true) {
  return run_lib(cpu_executor(), c, x, g, backward);
}

}  // namespace tfla::test
