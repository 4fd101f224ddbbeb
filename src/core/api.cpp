// The public C entry points: validate, resolve defaults, and dispatch to one backend.
// This file is the single dispatch point: a later Hopper path (sm_90a) slots in inside the CUDA backend's
// own selection (src/cuda/dispatch.cu), which picks the kernel family per GPU.
// SPDX-License-Identifier: Apache-2.0
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/backend.hpp"
#include "core/status.hpp"
#include "core/validate.hpp"
#include "tfla/tfla.h"

namespace tfla {
namespace {
thread_local std::string g_last_error;
}

tfla_status fail(tfla_status status, const char* fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  g_last_error = buf;
  return status;
}

void clear_error() { g_last_error.clear(); }

const char* last_error_cstr() { return g_last_error.c_str(); }

namespace {

[[maybe_unused]] tfla_status no_cuda(const char* fn) {
  return fail(TFLA_ERROR_NOT_SUPPORTED,
              "%s: problem.device_type is TFLA_DEVICE_CUDA but this build of tfla has no CUDA backend "
              "(configure with -DTFLA_CUDA=ON on a machine with the CUDA toolkit)", fn);
}

tfla_status default_chunk(const tfla_mlstm_problem& p, int64_t* out) {
  if (p.device_type == TFLA_DEVICE_CUDA) {
#if TFLA_WITH_CUDA
    *out = cuda::default_chunk_size(p);
    return TFLA_SUCCESS;
#else
    return no_cuda("tfla_mlstm_default_chunk_size");
#endif
  }
  *out = cpu::default_chunk_size(p);
  return TFLA_SUCCESS;
}

// Validate and fill the defaults into a copy the backends receive.
template <class Params>
tfla_status prepare(const Params* in, const char* fn, tfla_status (*validate)(const Params&), Params* out) {
  clear_error();
  if (in == nullptr) return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: params is NULL", fn);
  TFLA_TRY(validate(*in));
  *out = *in;
  out->problem.scale = static_cast<float>(resolved_scale(in->problem));
  if (out->problem.chunk_size == 0) TFLA_TRY(default_chunk(in->problem, &out->problem.chunk_size));
  return TFLA_SUCCESS;
}

tfla_status check_workspace(const char* fn, void* ws, size_t have, size_t need) {
  if (have < need)
    return fail(TFLA_ERROR_WORKSPACE_TOO_SMALL, "%s: workspace_bytes is %zu; this call needs %zu (query it with the "
                "matching _workspace_size function)", fn, have, need);
  if (need > 0 && ws == nullptr) return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: workspace is NULL but %zu bytes are needed", fn, need);
  if (need > 0 && (reinterpret_cast<uintptr_t>(ws) % 256) != 0)
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: workspace must be 256-byte aligned", fn);
  return TFLA_SUCCESS;
}

}  // namespace
}  // namespace tfla

using namespace tfla;

extern "C" {

void tfla_mlstm_problem_init(tfla_mlstm_problem* p) {
  if (p == nullptr) return;
  std::memset(p, 0, sizeof(*p));
  p->variant = TFLA_VARIANT_EXP;
  p->normalize = 1;
  p->eps = 1e-6f;
  p->device_type = TFLA_DEVICE_CPU;
}

tfla_status tfla_mlstm_default_chunk_size(const tfla_mlstm_problem* p, int64_t* chunk_size) {
  clear_error();
  if (p == nullptr || chunk_size == nullptr)
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "tfla_mlstm_default_chunk_size: NULL argument");
  TFLA_TRY(validate_problem("tfla_mlstm_default_chunk_size", *p));
  return default_chunk(*p, chunk_size);
}

tfla_status tfla_mlstm_fwd_workspace_size(const tfla_mlstm_fwd_params* params, size_t* bytes) {
  const char* fn = "tfla_mlstm_fwd_workspace_size";
  if (bytes == nullptr) return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: bytes is NULL", fn);
  tfla_mlstm_fwd_params p;
  TFLA_TRY(prepare(params, "tfla_mlstm_fwd", &validate_fwd, &p));
  if (p.problem.device_type == TFLA_DEVICE_CUDA) {
#if TFLA_WITH_CUDA
    return cuda::fwd_workspace_size(p, bytes);
#else
    return no_cuda(fn);
#endif
  }
  return cpu::fwd_workspace_size(p, bytes);
}

tfla_status tfla_mlstm_bwd_workspace_size(const tfla_mlstm_bwd_params* params, size_t* bytes) {
  const char* fn = "tfla_mlstm_bwd_workspace_size";
  if (bytes == nullptr) return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: bytes is NULL", fn);
  tfla_mlstm_bwd_params p;
  TFLA_TRY(prepare(params, "tfla_mlstm_bwd", &validate_bwd, &p));
  if (p.problem.device_type == TFLA_DEVICE_CUDA) {
#if TFLA_WITH_CUDA
    return cuda::bwd_workspace_size(p, bytes);
#else
    return no_cuda(fn);
#endif
  }
  return cpu::bwd_workspace_size(p, bytes);
}

tfla_status tfla_mlstm_fwd(const tfla_mlstm_fwd_params* params, void* workspace, size_t workspace_bytes, void* stream) {
  const char* fn = "tfla_mlstm_fwd";
  tfla_mlstm_fwd_params p;
  TFLA_TRY(prepare(params, fn, &validate_fwd, &p));
  size_t need = 0;
  if (p.problem.device_type == TFLA_DEVICE_CUDA) {
#if TFLA_WITH_CUDA
    TFLA_TRY(cuda::fwd_workspace_size(p, &need));
    TFLA_TRY(check_workspace(fn, workspace, workspace_bytes, need));
    return cuda::fwd(p, workspace, workspace_bytes, stream);
#else
    (void)stream;
    return no_cuda(fn);
#endif
  }
  TFLA_TRY(cpu::fwd_workspace_size(p, &need));
  TFLA_TRY(check_workspace(fn, workspace, workspace_bytes, need));
  return cpu::fwd(p, workspace, workspace_bytes);
}

tfla_status tfla_mlstm_bwd(const tfla_mlstm_bwd_params* params, void* workspace, size_t workspace_bytes, void* stream) {
  const char* fn = "tfla_mlstm_bwd";
  tfla_mlstm_bwd_params p;
  TFLA_TRY(prepare(params, fn, &validate_bwd, &p));
  size_t need = 0;
  if (p.problem.device_type == TFLA_DEVICE_CUDA) {
#if TFLA_WITH_CUDA
    TFLA_TRY(cuda::bwd_workspace_size(p, &need));
    TFLA_TRY(check_workspace(fn, workspace, workspace_bytes, need));
    return cuda::bwd(p, workspace, workspace_bytes, stream);
#else
    (void)stream;
    return no_cuda(fn);
#endif
  }
  TFLA_TRY(cpu::bwd_workspace_size(p, &need));
  TFLA_TRY(check_workspace(fn, workspace, workspace_bytes, need));
  return cpu::bwd(p, workspace, workspace_bytes);
}

const char* tfla_last_error(void) { return last_error_cstr(); }

const char* tfla_status_string(tfla_status status) {
  switch (status) {
    case TFLA_SUCCESS: return "success";
    case TFLA_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case TFLA_ERROR_NOT_SUPPORTED: return "not supported";
    case TFLA_ERROR_WORKSPACE_TOO_SMALL: return "workspace too small";
    case TFLA_ERROR_CUDA: return "CUDA error";
    case TFLA_ERROR_INTERNAL: return "internal error";
    default: return "unknown status";
  }
}

int tfla_has_cuda(void) { return TFLA_WITH_CUDA ? 1 : 0; }

#define TFLA_STR2(x) #x
#define TFLA_STR(x) TFLA_STR2(x)
const char* tfla_version_string(void) {
  return TFLA_STR(TFLA_VERSION_MAJOR) "." TFLA_STR(TFLA_VERSION_MINOR) "." TFLA_STR(TFLA_VERSION_PATCH);
}

}  // extern "C"
