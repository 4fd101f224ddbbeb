/*
 * tfla: Tiled Flash Linear Attention kernels for the mLSTM cell (xLSTM).
 * Plain C ABI. SPDX-License-Identifier: Apache-2.0
 *
 * The contract these functions compute is docs/spec-mlstm.md (shapes, math, gradient semantics, numerics).
 *
 * Design rules of this API (they make it usable from C++ inference engines and CUDA graphs):
 *  - A call takes a plain parameter struct (pointers, int64 element strides, sizes, dtypes, options),
 *    a caller-owned workspace and a stream. Nothing is allocated and nothing synchronises the host
 *    inside tfla_mlstm_fwd / tfla_mlstm_bwd.
 *  - Every call returns a tfla_status; tfla_last_error() gives a readable message (thread-local)
 *    that names the offending argument.
 *  - Optional tensors are "absent" when their data pointer is NULL.
 */
#ifndef TFLA_TFLA_H_
#define TFLA_TFLA_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TFLA_VERSION_MAJOR 0
#define TFLA_VERSION_MINOR 1
#define TFLA_VERSION_PATCH 0

#if defined(_WIN32)
#define TFLA_API __declspec(dllexport)
#else
#define TFLA_API __attribute__((visibility("default")))
#endif

typedef enum tfla_status {
  TFLA_SUCCESS = 0,
  TFLA_ERROR_INVALID_ARGUMENT = 1,  /* a shape, stride, dtype, pointer or option is wrong */
  TFLA_ERROR_NOT_SUPPORTED = 2,     /* valid, but this build/backend/device cannot run it */
  TFLA_ERROR_WORKSPACE_TOO_SMALL = 3,
  TFLA_ERROR_CUDA = 4,              /* a CUDA runtime call or kernel launch failed */
  TFLA_ERROR_INTERNAL = 5
} tfla_status;

typedef enum tfla_dtype {
  TFLA_DTYPE_F32 = 0,
  TFLA_DTYPE_BF16 = 1,
  TFLA_DTYPE_F16 = 2
} tfla_dtype;

typedef enum tfla_variant {
  TFLA_VARIANT_EXP = 0, /* mLSTMexp: exponential input gate, max-stabilized */
  TFLA_VARIANT_SIG = 1  /* mLSTMsig: sigmoid input gate, no stabilizer (m == 0) */
} tfla_variant;

typedef enum tfla_device_type {
  TFLA_DEVICE_CPU = 0,
  TFLA_DEVICE_CUDA = 1
} tfla_device_type;

/*
 * A strided tensor view. `stride` holds element strides (not bytes) of the tensor's dimensions in the
 * order of its documented shape; entries past the tensor's rank are ignored. data == NULL means absent.
 * Example: q of shape (B, H, S, Dk) in (B, S, H, Dk) memory order has stride = {S*H*Dk, Dk, H*Dk, 1}.
 */
typedef struct tfla_tensor {
  void* data;
  int32_t dtype; /* tfla_dtype */
  int64_t stride[4];
} tfla_tensor;

/* The problem: sizes and options shared by the forward and the backward. */
typedef struct tfla_mlstm_problem {
  int64_t batch;      /* B >= 1 */
  int64_t heads;      /* H >= 1 */
  int64_t seq_len;    /* S >= 1 */
  int64_t dim_qk;     /* Dk >= 1 */
  int64_t dim_v;      /* Dv >= 1 */
  int32_t variant;    /* tfla_variant */
  int32_t normalize;  /* mLSTMsig only: 1 = divide by max(|n.q|, 1) + eps, 0 = plain C^T q. exp: must be 1 */
  float scale;        /* multiplies q; 0 selects the default Dk^-1/2 */
  float eps;          /* >= 0; default 1e-6 */
  int64_t chunk_size; /* L >= 1; 0 selects the backend's default for the shape */
  int32_t device_type;  /* tfla_device_type: where every tensor lives */
  int32_t device_index; /* CUDA device ordinal (ignored on CPU) */
} tfla_mlstm_problem;

/*
 * Forward.  Shapes (dtype):
 *   q, k        (B, H, S, Dk)   (x: f32 | bf16 | f16, one dtype for q, k, v, h)
 *   v           (B, H, S, Dv)   (x)
 *   igate,fgate (B, H, S)       (g: f32 | bf16 | f16, one dtype for both) pre-activations
 *   c0 n0 m0    (B,H,Dk,Dv) (B,H,Dk) (B,H)   f32, optional; absent = zeros (m0 ignored for SIG)
 *   h           (B, H, S, Dv)   (x) output, required
 *   c_last n_last m_last  as c0 n0 m0, f32, optional outputs (m_last is 0 for SIG)
 *   m_token, den_token (B, H, S) f32, optional outputs: the per-token stabilizer m_t and normalizer
 *                         den_t = max(|n_t.q_t|, e^{-m_t}) (exp) / max(|n_t.q_t|, 1) (sig, normalize)
 *                         that the backward needs (see tfla_mlstm_bwd).
 */
typedef struct tfla_mlstm_fwd_params {
  tfla_mlstm_problem problem;
  tfla_tensor q, k, v, igate, fgate;
  tfla_tensor c0, n0, m0;
  tfla_tensor h;
  tfla_tensor c_last, n_last, m_last;
  tfla_tensor m_token, den_token;
} tfla_mlstm_fwd_params;

/*
 * Backward: gradients of the forward's returned outputs (h, and c_last / n_last when their gradients are
 * given) with the normalizer den and every stabilizer m held constant (spec: "Gradients").
 *   inputs : q, k, v, igate, fgate, c0, n0, m0 exactly as given to the forward;
 *            m_token, den_token as written by the forward (required for EXP and for SIG with normalize=1;
 *            ignored for SIG with normalize=0);
 *            dh (B,H,S,Dv) (x), required; dc_last (B,H,Dk,Dv), dn_last (B,H,Dk) f32, optional (absent = 0).
 *   outputs: dq, dk (B,H,S,Dk) (x), dv (B,H,S,Dv) (x), digate, dfgate (B,H,S) (g): each optional, computed
 *            when given; dc0 (B,H,Dk,Dv), dn0 (B,H,Dk) f32, optional: the gradient with respect to the initial
 *            state, also when c0/n0 was absent (then it is the gradient at the zero state).
 */
typedef struct tfla_mlstm_bwd_params {
  tfla_mlstm_problem problem;
  tfla_tensor q, k, v, igate, fgate;
  tfla_tensor c0, n0, m0;
  tfla_tensor m_token, den_token;
  tfla_tensor dh, dc_last, dn_last;
  tfla_tensor dq, dk, dv, digate, dfgate;
  tfla_tensor dc0, dn0;
} tfla_mlstm_bwd_params;

/* Zero a params struct and set the documented defaults (variant EXP, normalize 1, eps 1e-6, scale and
 * chunk_size 0 = default, device CPU). */
TFLA_API void tfla_mlstm_problem_init(tfla_mlstm_problem* problem);

/* Validate the params and return the workspace bytes the call needs (0 is possible). */
TFLA_API tfla_status tfla_mlstm_fwd_workspace_size(const tfla_mlstm_fwd_params* params, size_t* bytes);
TFLA_API tfla_status tfla_mlstm_bwd_workspace_size(const tfla_mlstm_bwd_params* params, size_t* bytes);

/*
 * Run. `workspace` must hold at least the queried bytes, live on the params' device, and be 256-byte
 * aligned; it may be NULL when 0 bytes are needed. `stream` is a cudaStream_t for CUDA (NULL = the legacy
 * default stream) and is ignored on CPU. CUDA calls are asynchronous and capturable in a CUDA graph.
 */
TFLA_API tfla_status tfla_mlstm_fwd(const tfla_mlstm_fwd_params* params, void* workspace,
                                    size_t workspace_bytes, void* stream);
TFLA_API tfla_status tfla_mlstm_bwd(const tfla_mlstm_bwd_params* params, void* workspace,
                                    size_t workspace_bytes, void* stream);

/* The chunk size a call with chunk_size == 0 would use. */
TFLA_API tfla_status tfla_mlstm_default_chunk_size(const tfla_mlstm_problem* problem, int64_t* chunk_size);

/* The message of the last failed call on this thread ("" after a success). */
TFLA_API const char* tfla_last_error(void);
TFLA_API const char* tfla_status_string(tfla_status status);
/* 1 when this build contains the CUDA backend. */
TFLA_API int tfla_has_cuda(void);
TFLA_API const char* tfla_version_string(void);

#ifdef __cplusplus
}
#endif
#endif /* TFLA_TFLA_H_ */
