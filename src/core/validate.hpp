// Argument checks shared by every backend (shapes, dtypes, strides, pointers, options).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include "tfla/tfla.h"

namespace tfla {

// `fn` names the public entry point in messages ("tfla_mlstm_fwd").
tfla_status validate_problem(const char* fn, const tfla_mlstm_problem& p);
tfla_status validate_fwd(const tfla_mlstm_fwd_params& p);
tfla_status validate_bwd(const tfla_mlstm_bwd_params& p);

// The scale the call uses: problem.scale, or Dk^-1/2 when it is 0.
double resolved_scale(const tfla_mlstm_problem& p);

}  // namespace tfla
