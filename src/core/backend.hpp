// The interface every backend implements. The core (api.cpp) validates the params, resolves the defaults
// (scale, chunk_size) into the copy it passes here, and picks the backend: this is the one dispatch point.
// Backends may assume validate_fwd/validate_bwd passed; they check only their own extra limits.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstddef>
#include <cstdint>

#include "tfla/tfla.h"

namespace tfla {

namespace cpu {
int64_t default_chunk_size(const tfla_mlstm_problem& p);
tfla_status fwd_workspace_size(const tfla_mlstm_fwd_params& p, size_t* bytes);
tfla_status bwd_workspace_size(const tfla_mlstm_bwd_params& p, size_t* bytes);
tfla_status fwd(const tfla_mlstm_fwd_params& p, void* workspace, size_t workspace_bytes);
tfla_status bwd(const tfla_mlstm_bwd_params& p, void* workspace, size_t workspace_bytes);
}  // namespace cpu

#if TFLA_WITH_CUDA
namespace cuda {
int64_t default_chunk_size(const tfla_mlstm_problem& p);
tfla_status fwd_workspace_size(const tfla_mlstm_fwd_params& p, size_t* bytes);
tfla_status bwd_workspace_size(const tfla_mlstm_bwd_params& p, size_t* bytes);
tfla_status fwd(const tfla_mlstm_fwd_params& p, void* workspace, size_t workspace_bytes, void* stream);
tfla_status bwd(const tfla_mlstm_bwd_params& p, void* workspace, size_t workspace_bytes, void* stream);
}  // namespace cuda
#endif

}  // namespace tfla
