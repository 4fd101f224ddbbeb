// The CPU backend's entry points (namespace tfla::cpu of core/backend.hpp): workspace sizes and the
// OpenMP dispatch over (batch, head) pairs. The math lives in mlstm_cpu_fwd.cpp and mlstm_cpu_bwd.cpp.
//
// Workspace: one slot per OpenMP thread (omp_get_max_threads() at query time, at most B*H slots), each
// holding the fp64 scratch of one head (layouts: FwdScratch / BwdScratch). A run uses as many slots as
// fit the given workspace_bytes and hands (batch, head) pairs to them dynamically, so memory never scales
// with B*H. Nothing is allocated inside fwd / bwd.
// SPDX-License-Identifier: Apache-2.0
#include "core/backend.hpp"
#include "cpu/mlstm_cpu_common.hpp"

namespace tfla::cpu {

using detail::Dims;

int64_t default_chunk_size(const tfla_mlstm_problem&) { return 64; }

tfla_status fwd_workspace_size(const tfla_mlstm_fwd_params& p, size_t* bytes) {
  const Dims d = Dims::of(p.problem);
  *bytes = static_cast<size_t>(detail::slots_wanted(d)) * detail::fwd_slot_bytes(d);
  return TFLA_SUCCESS;
}

tfla_status bwd_workspace_size(const tfla_mlstm_bwd_params& p, size_t* bytes) {
  const Dims d = Dims::of(p.problem);
  *bytes = static_cast<size_t>(detail::slots_wanted(d)) * detail::bwd_slot_bytes(d);
  return TFLA_SUCCESS;
}

tfla_status fwd(const tfla_mlstm_fwd_params& p, void* workspace, size_t workspace_bytes) {
  const Dims d = Dims::of(p.problem);
  return detail::for_each_head("tfla_mlstm_fwd", d, workspace, workspace_bytes, detail::fwd_slot_bytes(d),
                               [&](int64_t b, int64_t h, void* slot) { detail::forward_head(p, d, b, h, slot); });
}

tfla_status bwd(const tfla_mlstm_bwd_params& p, void* workspace, size_t workspace_bytes) {
  const Dims d = Dims::of(p.problem);
  return detail::for_each_head("tfla_mlstm_bwd", d, workspace, workspace_bytes, detail::bwd_slot_bytes(d),
                               [&](int64_t b, int64_t h, void* slot) { detail::backward_head(p, d, b, h, slot); });
}

}  // namespace tfla::cpu
