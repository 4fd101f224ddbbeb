// The CUDA backend: checks the limits of the portable path, lays out the workspace, and queues the
// kernels of the forward and the backward on the caller's stream. No allocation, no host sync: the
// calls are capturable in a CUDA graph.
//
// Path selection lives here, per device: every GPU of compute capability >= 8.0 runs the portable path (mma.sync,
// sm_80); on sm_90 (built for sm_90a) the forward walk runs on wgmma (hopper/output_walk.cuh) at L = 64 and the
// fused chunk backward's state products and the backward's two state recurrences (hopper/chunk_states.cuh) on wgmma.
//
// Forward : prepare_gates -> output_walk (h, the state on chip; on sm_90 at L = 64 its wgmma form; with segments:
//           segment_states -> segment_start_states first), or where the walk's limits do not hold (fp32 inputs,
//           Dk > 128, L > 128, GPUs other than sm_90): chunk_states (C^_c for every chunk) -> intra_chunk_output (h).
// Backward: prepare_gates -> chunk_states (the recompute of C^_c and the reverse walk for dC^_c, one launch; on sm_90
//           its wgmma form, hopper/chunk_states.cuh, for 16-bit inputs) ->
//           chunk_gradients (dq, dk, dv of a chunk in one block: 16-bit inputs, L = 64, Dk <= 128, Dv <= 256,
//           sm_90), or elsewhere intra_chunk_dq, intra_chunk_dk, intra_chunk_dv -> gate_grads.
// SPDX-License-Identifier: Apache-2.0
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/backend.hpp"
#include "core/dtype.hpp"
#include "core/status.hpp"
#include "cuda/kernels/chunk_gradients_config.hpp"
#include "cuda/hopper/chunk_states_config.hpp"
#include "cuda/hopper/inter_chunk_grads_config.hpp"
#include "cuda/hopper/output_walk_config.hpp"
#include "cuda/kernels/output_walk_config.hpp"
#include "cuda/launch.cuh"

namespace tfla::cuda {
namespace {

constexpr int kTileSize = 64;
// chunk_tiles keeps its 64 rows of the score operand in shared memory over the whole head dim: 512 fits
// with fp32 inputs (226 KB of the 227 KB an H100 block may have).
constexpr int kMaxHeadDim = 512;

size_t align_up(size_t x) { return (x + 255) & ~static_cast<size_t>(255); }

// Workspace carve-out; with base == nullptr it only counts bytes.
struct Carver {
  char* base;
  size_t used = 0;
  float* take(size_t n_floats, size_t elem_bytes = sizeof(float)) {
    float* p = base ? reinterpret_cast<float*>(base + used) : nullptr;
    used += align_up(n_floats * elem_bytes);
    return p;
  }
};

int64_t n_chunks(const tfla_mlstm_problem& p) { return (p.seq_len + p.chunk_size - 1) / p.chunk_size; }

// How the backward runs on this device (plan_backward: the device queried once per call).
struct BackwardPlan {
  bool fused = false;          // the fused chunk kernel (chunk_gradients.cuh), else the per-role kernels
  bool hopper_states = false;  // the state recurrences on wgmma (hopper/chunk_states.cuh), else on mma.sync
  bool inter_dq = false;       // dq's / dk's inter-chunk term from hopper/inter_chunk_grads.cuh instead of stored
  bool inter_dk = false;       // states (the recompute / reverse recurrence then does not run)
};

// How the forward runs on this device: the walk (output_walk.cuh: the state on chip, one pass) or the
// materialized path (chunk_states -> chunk_tiles), and the walk's sequence segments.
struct ForwardPlan {
  bool walk = false;
  bool hopper = false;  // the walk on wgmma (hopper/output_walk.cuh)
  int nseg = 1, seg_chunks = 0;
};

// An environment variable that forces a path for side-by-side measurements (TFLA_CUDA_FORWARD, TFLA_CUDA_BACKWARD).
bool env_forces(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v && std::strcmp(v, value) == 0;
}

// What the path choices read from the device; ok = false if the attributes could not be read (the portable
// kernels run then).
struct DeviceCaps {
  bool ok = false;
  int smem_optin = 0, sms = 0, major = 0;
};
DeviceCaps device_caps(int device) {
  DeviceCaps d;
  d.ok = cudaDeviceGetAttribute(&d.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) == cudaSuccess &&
         cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, device) == cudaSuccess &&
         cudaDeviceGetAttribute(&d.major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess;
  if (!d.ok) (void)cudaGetLastError();
  return d;
}
// The forward walks and the fused chunk backward are built for sm_90 only (their sm_80 builds are stubs; the wgmma
// ones for sm_90a) and need more shared memory per block than other GPUs give.
#ifndef TFLA_BUILT_SM90A
#define TFLA_BUILT_SM90A 0  // CMakeLists.txt defines it when the architectures include sm_90a
#endif
bool runs_sm90_kernel(const DeviceCaps& d, size_t smem_bytes) {
  return d.ok && d.major == 9 && static_cast<size_t>(d.smem_optin) >= smem_bytes;
}
// The same for the kernels with wgmma (sm_90a-only instructions): the Hopper walk, the fused chunk backward.
bool runs_sm90a_kernel(const DeviceCaps& d, size_t smem_bytes) { return TFLA_BUILT_SM90A && runs_sm90_kernel(d, smem_bytes); }

// The walk where its limits hold and the device has the shared memory; TFLA_CUDA_FORWARD=materialized forces
// the other path (for side-by-side measurements and tests of both paths on one GPU).
// Segments: the walk runs B*H*ceil(Dv/128) blocks of one per SM; while that is under half the SMs, the
// sequence is cut into floor(#SMs / blocks) segments (each costs one more pass over k and v: segment_states).
ForwardPlan plan_forward(const tfla_mlstm_problem& p, int32_t dtype) {
  ForwardPlan plan;
  if (env_forces("TFLA_CUDA_FORWARD", "materialized")) return plan;
  if (dtype_size(dtype) != 2 || p.dim_qk > kWalkMaxDk || p.chunk_size > kWalkMaxL) return plan;
  const DeviceCaps dev = device_caps(p.device_index);
  if (!runs_sm90_kernel(dev, output_walk_smem_bytes(2))) return plan;
  const int sms = dev.sms;
  plan.walk = true;
  // The walk on wgmma where it runs (L = 64, the default for these head dims); TFLA_CUDA_FORWARD=portable-walk
  // forces the mma.sync walk (side-by-side measurements, tests of both walks on one GPU).
  plan.hopper = p.chunk_size == kHopperWalkL && !env_forces("TFLA_CUDA_FORWARD", "portable-walk") &&
                runs_sm90a_kernel(dev, hopper_output_walk_smem_bytes(2));
  const int64_t nc = n_chunks(p);
  const int64_t blocks = p.batch * p.heads * ((p.dim_v + kWalkDv - 1) / kWalkDv);
  int64_t nseg = blocks * 2 <= sms ? sms / blocks : 1;
  nseg = nseg < nc ? nseg : nc;
  nseg = nseg < kWalkMaxSegments ? nseg : kWalkMaxSegments;
  plan.seg_chunks = static_cast<int>((nc + nseg - 1) / nseg);
  plan.nseg = static_cast<int>((nc + plan.seg_chunks - 1) / plan.seg_chunks);  // no empty segment
  return plan;
}

// How the backward runs (BackwardPlan):
// - its intra-chunk gradients: the fused chunk kernel (chunk_gradients.cuh: every gradient of a 64-token chunk in one
//   block, the scores formed once) where its limits hold and the device has its shared memory, else the per-role
//   kernels (chunk_tiles.cuh: kDq, kDk, kDv). TFLA_CUDA_BACKWARD=separate forces the per-role kernels.
// - its two state recurrences: on wgmma (hopper/chunk_states.cuh, any L) for 16-bit inputs where the build has sm_90a
//   and the device is sm_90; TFLA_CUDA_STATES=portable forces the mma.sync kernel.
// - the inter-chunk terms of dq and dk with the state recurrences on chip (hopper/inter_chunk_grads.cuh) instead of
//   the recurrences' stored states, under the fused chunk kernel with the wgmma recurrences, where their limits hold
//   (Dv <= 256, L = 64): dq where its blocks (one per head and 64 Dk rows, each walking its whole sequence) fill at
//   least half the SMs: at the main shape S <= 16,384 (B*H >= 64); S = 65,536 (B*H = 16: 32 blocks) keeps the stored
//   states; dk where, besides, the reverse recurrence would run in fewer than 4 waves of its 3 blocks per SM, whose
//   last wave then leaves SMs idle for a whole sequence. Measured at the main shape (H100,
//   bench/results/2026-11-26-h100-v8): S = 16,384 (512 recurrence blocks, 1.3 waves): fwbw sig 6.374 ms with the dk
//   kernel, 6.650 with the recurrence; S = 1,024 (8,192 blocks, 21 waves): 6.456 against 6.283 (the dk kernel reads V
//   as well, 1.34 ms against 1.08). TFLA_CUDA_INTER=states forces the stored states for both, =dq the dq kernel with
//   the reverse recurrence, =inter both kernels wherever their limits hold, however few the blocks (tests: the grid's
//   cases).
// The environment variables are for side-by-side measurements and tests of each path on one GPU.
BackwardPlan plan_backward(const tfla_mlstm_problem& p, int32_t dtype) {
  BackwardPlan plan;
  if (dtype_size(dtype) != 2) return plan;
  const DeviceCaps dev = device_caps(p.device_index);
  plan.fused = !env_forces("TFLA_CUDA_BACKWARD", "separate") && p.chunk_size == kGradTile &&
               p.dim_qk <= kGradMaxDk && p.dim_v <= kGradMaxDv && runs_sm90a_kernel(dev, chunk_gradients_smem_bytes(2));
  plan.hopper_states =
      !env_forces("TFLA_CUDA_STATES", "portable") && runs_sm90a_kernel(dev, hopper_chunk_states_smem_bytes(2));
  if (env_forces("TFLA_CUDA_INTER", "states") || !plan.fused || !plan.hopper_states || p.dim_v > kInterDqMaxDv ||
      !runs_sm90a_kernel(dev, hopper_inter_chunk_grads_smem_bytes(2)))
    return plan;
  const int64_t bh = p.batch * p.heads, dk_tiles = (p.dim_qk + kInterDqRows - 1) / kInterDqRows;
  const int64_t recurrence_blocks = bh * dk_tiles * ((p.dim_v + kHopperStatesCols - 1) / kHopperStatesCols);
  const bool forced = env_forces("TFLA_CUDA_INTER", "inter"), dq_only = env_forces("TFLA_CUDA_INTER", "dq");
  plan.inter_dq = forced || dq_only || 2 * bh * dk_tiles >= dev.sms;
  plan.inter_dk = forced || (plan.inter_dq && !dq_only &&
                             recurrence_blocks < 4 * static_cast<int64_t>(kHopperStatesBlocksPerSm) * dev.sms);
  return plan;
}

// The forward stores its per-chunk states in the input dtype (state_bytes = its size), the backward in fp32 (for the
// fused chunk backward as 2 parts of the input dtype in the same bytes, Args::split_states); the forward walk stores
// none, only its segments' start states (with more than one segment). With BackwardPlan::inter_dq / inter_dk the
// inter-chunk terms of dq (no cstates then) and dk (dcstates then holds part 0 only) from the inter-chunk kernels.
void layout(const tfla_mlstm_problem& p, bool backward, size_t state_bytes, const ForwardPlan& plan, void* ws, Args* a,
            size_t* bytes, const BackwardPlan& bplan = {}) {
  Carver cv{static_cast<char*>(ws)};
  const size_t bh = static_cast<size_t>(p.batch * p.heads), S = p.seq_len, NC = n_chunks(p);
  const size_t Dk = p.dim_qk, Dv = p.dim_v;
  const size_t n_dk = (Dk + kTileSize - 1) / kTileSize, n_dv = (Dv + kTileSize - 1) / kTileSize;
  Args tmp{};
  Args& w = a ? *a : tmp;
  w.bcum = cv.take(bh * S);
  w.iota = cv.take(bh * S);
  w.mtok = cv.take(bh * S);
  w.mhat = cv.take(bh * (NC + 1));
  w.chunk_a = cv.take(bh * NC);
  w.chunk_b = cv.take(bh * NC);
  w.nseg = plan.nseg;
  w.seg_chunks = plan.seg_chunks;
  // per-token state weights and per-chunk decays, computed once by prepare_gates: the walk and chunk_states copy
  // them with cp.async (computing them in the tile loop stalled the issuing warps on global loads)
  w.wstate = cv.take(bh * S);
  w.chunk_decay = cv.take(bh * NC);
  if (backward) w.wrev = cv.take(bh * S);
  if (plan.walk) {
    if (plan.nseg > 1) w.seg_states = cv.take(bh * plan.nseg * (Dk * Dv + Dk));
  } else if (bplan.inter_dq) {
    w.dq_inter = cv.take(bh * S * Dk);
    if (bplan.inter_dk) w.dk_inter = cv.take(bh * S * Dk);
  } else {
    w.cstates = cv.take(bh * (NC + 1) * Dk * Dv, backward ? sizeof(float) : state_bytes);
    w.nstates = cv.take(bh * (NC + 1) * Dk);
  }
  if (backward) {
    w.inv_den = cv.take(bh * S);
    w.dcstates = cv.take(bh * (NC + 1) * Dk * Dv);
    w.dnstates = cv.take(bh * (NC + 1) * Dk);
    w.qdq = cv.take(bh * S * n_dk);
    w.kdk = cv.take(bh * S * n_dk);
    w.statedot = cv.take(bh * n_dk * n_dv);
    w.grad_chunk_total = reinterpret_cast<double*>(cv.take(bh * NC, sizeof(double)));
    w.grad_chunk_carry = reinterpret_cast<double*>(cv.take(bh * NC, sizeof(double)));
  }
  if (bytes) *bytes = cv.used;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Limits of the portable path beyond the API's own validation.
tfla_status check_matrix(const char* fn, const char* name, const tfla_tensor& t) {
  if (!t.data) return TFLA_SUCCESS;
  const int64_t vec = 16 / static_cast<int64_t>(dtype_size(t.dtype));
  if (t.stride[3] != 1)
    return fail(TFLA_ERROR_NOT_SUPPORTED, "%s: %s must have a contiguous last dimension (stride[3] == 1) on CUDA; got %lld",
                fn, name, static_cast<long long>(t.stride[3]));
  for (int d = 0; d < 3; ++d)
    if (t.stride[d] % vec != 0)
      return fail(TFLA_ERROR_NOT_SUPPORTED, "%s: %s stride[%d] = %lld must be a multiple of %lld elements (16 bytes) on CUDA",
                  fn, name, d, static_cast<long long>(t.stride[d]), static_cast<long long>(vec));
  if (!aligned16(t.data)) return fail(TFLA_ERROR_NOT_SUPPORTED, "%s: %s must be 16-byte aligned on CUDA", fn, name);
  return TFLA_SUCCESS;
}

tfla_status check_pointer(const char* fn, const char* name, const void* ptr, int device) {
  if (!ptr) return TFLA_SUCCESS;
  cudaPointerAttributes attr{};
  const cudaError_t e = cudaPointerGetAttributes(&attr, ptr);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: %s is not a pointer CUDA knows (%s)", fn, name, cudaGetErrorString(e));
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: %s is host memory, but problem.device_type is CUDA", fn, name);
  if (attr.type == cudaMemoryTypeDevice && attr.device != device)
    return fail(TFLA_ERROR_INVALID_ARGUMENT, "%s: %s lives on CUDA device %d, but problem.device_index is %d", fn, name,
                attr.device, device);
  return TFLA_SUCCESS;
}

tfla_status check_problem(const char* fn, const tfla_mlstm_problem& p) {
  if (p.chunk_size % kTileSize != 0)
    return fail(TFLA_ERROR_NOT_SUPPORTED,
                "%s: the CUDA backend needs problem.chunk_size to be a multiple of %d (got %lld); S itself may be any "
                "length", fn, kTileSize, static_cast<long long>(p.chunk_size));
  if (p.dim_qk % 8 != 0 || p.dim_v % 8 != 0)
    return fail(TFLA_ERROR_NOT_SUPPORTED, "%s: the CUDA backend needs dim_qk and dim_v to be multiples of 8 (got %lld, %lld)",
                fn, static_cast<long long>(p.dim_qk), static_cast<long long>(p.dim_v));
  if (p.dim_qk > kMaxHeadDim || p.dim_v > kMaxHeadDim)
    return fail(TFLA_ERROR_NOT_SUPPORTED,
                "%s: the CUDA backend supports dim_qk and dim_v up to %d (got %lld, %lld); the CPU backend has no limit",
                fn, kMaxHeadDim, static_cast<long long>(p.dim_qk), static_cast<long long>(p.dim_v));
  if (p.batch * p.heads > 65535)
    return fail(TFLA_ERROR_NOT_SUPPORTED, "%s: batch * heads = %lld exceeds 65535 on the CUDA backend", fn,
                static_cast<long long>(p.batch * p.heads));
  if (p.seq_len > (int64_t{1} << 30) / 64)
    return fail(TFLA_ERROR_NOT_SUPPORTED, "%s: seq_len %lld is too long for the CUDA backend", fn, static_cast<long long>(p.seq_len));
  return TFLA_SUCCESS;
}

// Make problem.device_index current for the duration of a call, restoring the caller's device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&prev_) != cudaSuccess) prev_ = -1;
    if (prev_ != device) ok_ = cudaSetDevice(device) == cudaSuccess;
  }
  ~DeviceGuard() {
    if (prev_ >= 0 && ok_) (void)cudaSetDevice(prev_);
  }
  bool ok() const { return ok_; }

 private:
  int prev_ = -1;
  bool ok_ = true;
};

Args make_args(const tfla_mlstm_problem& p) {
  Args a{};
  a.B = static_cast<int>(p.batch);
  a.H = static_cast<int>(p.heads);
  a.S = static_cast<int>(p.seq_len);
  a.Dk = static_cast<int>(p.dim_qk);
  a.Dv = static_cast<int>(p.dim_v);
  a.L = static_cast<int>(p.chunk_size);
  a.NC = static_cast<int>(n_chunks(p));
  a.variant = p.variant;
  a.normalize = p.normalize;
  a.scale = p.scale;
  a.eps = p.eps;
  a.scan_round = kScanChunks;
  if (const char* r = std::getenv("TFLA_CUDA_SCAN_ROUND")) {  // tests: several rounds on short sequences
    const int n = std::atoi(r);
    if (n >= 1 && n < kScanChunks) a.scan_round = n;
  }
  return a;
}

#define TFLA_CUDA_TRY(fn, what, expr)                                                                   \
  do {                                                                                                 \
    const cudaError_t e_ = (expr);                                                                     \
    if (e_ != cudaSuccess) return fail(TFLA_ERROR_CUDA, "%s: %s failed: %s", fn, what, cudaGetErrorString(e_)); \
  } while (0)

template <class G>
tfla_status run_gates(const char* fn, KernelId id, const Args& a, cudaStream_t s) {
  if (id == KernelId::kPrepareGatesFwd) TFLA_CUDA_TRY(fn, "prepare_gates", (launch<KernelId::kPrepareGatesFwd, G>(a, s)));
  if (id == KernelId::kPrepareGatesBwd) TFLA_CUDA_TRY(fn, "prepare_gates", (launch<KernelId::kPrepareGatesBwd, G>(a, s)));
  if (id == KernelId::kGateGrads) TFLA_CUDA_TRY(fn, "gate_grads", (launch<KernelId::kGateGrads, G>(a, s)));
  return TFLA_SUCCESS;
}

tfla_status gates(const char* fn, KernelId id, int32_t dtype, const Args& a, cudaStream_t s) {
  switch (dtype) {
    case TFLA_DTYPE_F32: return run_gates<float>(fn, id, a, s);
    case TFLA_DTYPE_BF16: return run_gates<__nv_bfloat16>(fn, id, a, s);
    default: return run_gates<__half>(fn, id, a, s);
  }
}

template <class T>
tfla_status run_forward(const Args& a, const ForwardPlan& plan, cudaStream_t s) {
  const char* fn = "tfla_mlstm_fwd";
  if constexpr (sizeof(T) == 2) {
    if (plan.walk) {
      const bool fin = a.c_last.data != nullptr;  // ~fp32 state updates only where the final state is an output
      if (a.nseg > 1) {
        // the segment pass on the same tensor-core path as the walk after it
        if (plan.hopper && fin)
          TFLA_CUDA_TRY(fn, "segment_states (wgmma)", (launch<KernelId::kSegmentStatesHopperFinal, T>(a, s)));
        else if (plan.hopper) TFLA_CUDA_TRY(fn, "segment_states (wgmma)", (launch<KernelId::kSegmentStatesHopper, T>(a, s)));
        else if (fin) TFLA_CUDA_TRY(fn, "segment_states", (launch<KernelId::kSegmentStatesFinal, T>(a, s)));
        else TFLA_CUDA_TRY(fn, "segment_states", (launch<KernelId::kSegmentStates, T>(a, s)));
        TFLA_CUDA_TRY(fn, "segment_start_states", (launch<KernelId::kSegmentStartStates, T>(a, s)));
      }
      if (plan.hopper) {
        if (fin) TFLA_CUDA_TRY(fn, "output_walk (wgmma)", (launch<KernelId::kOutputWalkHopperFinal, T>(a, s)));
        else TFLA_CUDA_TRY(fn, "output_walk (wgmma)", (launch<KernelId::kOutputWalkHopper, T>(a, s)));
      } else if (fin) {
        TFLA_CUDA_TRY(fn, "output_walk", (launch<KernelId::kOutputWalkFinal, T>(a, s)));
      } else {
        TFLA_CUDA_TRY(fn, "output_walk", (launch<KernelId::kOutputWalk, T>(a, s)));
      }
      return TFLA_SUCCESS;
    }
  }
  // The final state as an output needs 2-part products; the states h consumes need 1 (chunk_states.cuh).
  if (a.c_last.data) {
    TFLA_CUDA_TRY(fn, "chunk_states", (launch<KernelId::kStatesFwdFinal, T>(a, s)));
  } else {
    TFLA_CUDA_TRY(fn, "chunk_states", (launch<KernelId::kStatesFwd, T>(a, s)));
  }
  TFLA_CUDA_TRY(fn, "intra_chunk_output", (launch<KernelId::kOutput, T>(a, s)));
  return TFLA_SUCCESS;
}

template <class T>
tfla_status run_backward(const Args& a, const BackwardPlan& plan, bool need_dq, bool need_dk, bool need_dv,
                         cudaStream_t s) {
  const bool hopper_states = plan.hopper_states;
  const char* fn = "tfla_mlstm_bwd";
  if constexpr (sizeof(T) == 2) {
    if (hopper_states && a.dq_inter) {
      TFLA_CUDA_TRY(fn, "inter_chunk_grads dq (wgmma)", (launch<KernelId::kInterChunkDqHopper, T>(a, s)));
      if (a.dk_inter) TFLA_CUDA_TRY(fn, "inter_chunk_grads dk (wgmma)", (launch<KernelId::kInterChunkDkHopper, T>(a, s)));
      else TFLA_CUDA_TRY(fn, "chunk_states (reverse, wgmma)", (launch<KernelId::kStatesBackwardHopper, T>(a, s)));
    } else if (hopper_states) {
      TFLA_CUDA_TRY(fn, "chunk_states (recompute and reverse, wgmma)", (launch<KernelId::kStatesBackwardHopper, T>(a, s)));
    }
  }
  if (sizeof(T) != 2 || !hopper_states)
    TFLA_CUDA_TRY(fn, "chunk_states (recompute and reverse)", (launch<KernelId::kStatesBackward, T>(a, s)));
  if constexpr (sizeof(T) == 2) {
    if (plan.fused) {
      if (need_dq || need_dk || need_dv) TFLA_CUDA_TRY(fn, "chunk_gradients", (launch<KernelId::kChunkGradients, T>(a, s)));
      return TFLA_SUCCESS;
    }
  }
  if (need_dq) TFLA_CUDA_TRY(fn, "intra_chunk_dq", (launch<KernelId::kDq, T>(a, s)));
  if (need_dk) TFLA_CUDA_TRY(fn, "intra_chunk_dk", (launch<KernelId::kDk, T>(a, s)));
  if (need_dv) TFLA_CUDA_TRY(fn, "intra_chunk_dv", (launch<KernelId::kDv, T>(a, s)));
  return TFLA_SUCCESS;
}

template <class Run>
tfla_status by_dtype(int32_t dtype, Run&& run) {
  switch (dtype) {
    case TFLA_DTYPE_F32: return run(float{});
    case TFLA_DTYPE_BF16: return run(__nv_bfloat16{});
    default: return run(__half{});
  }
}

}  // namespace

// Default chunk size, per head-dim shape, from measurements at Dk=128, Dv=256, bf16 (fw / fwbw ms):
// - Dk <= 128 (the forward walk's domain on sm_90): L = 64. The walk keeps the state on chip, so L only sets how
//   many earlier tiles each query tile meets (0 at L = 64, 0.5 on average at 128): 65,536 tokens on an H200,
//   S = 1024: L=64 2.33 / 14.5, L=128 2.55 / 15.2; S = 65,536: 2.97 / 18.7 vs 3.12 / 19.2
//   (bench/results/2026-11-26-h200-v3). The backward's fused chunk kernel (chunk_gradients.cuh, Dv <= 256) runs
//   at L = 64 only: fwbw 8.77 ms at L = 64 against 14.47 ms at 128 (H100, S = 1024, bench/results/2026-11-26-h100-v4).
//   L = 64 stores twice as many per-chunk states in the backward: +2 GiB of workspace at 65,536 tokens x 16 heads
//   (5.7 vs 3.7 GiB peak, the sweep below); pass chunk_size = 128 to trade that memory for ~65% more backward time.
// - Dk > 128 (the materialized forward): L = 128. The H100 sweep (bench/results/2026-11-26-h100, materialized
//   path, S=8192): L=64 3.20 / 15.59, 128 3.19 / 15.87, 256 3.70 / 18.32, 512 4.82 / 23.84, 1024 7.24 / 35.39:
//   64 and 128 tie, 128 needs 36% less memory. (Measured at Dk=128; not yet swept at 256/512.)
int64_t default_chunk_size(const tfla_mlstm_problem& p) { return p.dim_qk <= kWalkMaxDk ? 64 : 128; }

tfla_status fwd_workspace_size(const tfla_mlstm_fwd_params& p, size_t* bytes) {
  TFLA_TRY(check_problem("tfla_mlstm_fwd", p.problem));
  layout(p.problem, false, dtype_size(p.q.dtype), plan_forward(p.problem, p.q.dtype), nullptr, nullptr, bytes);
  return TFLA_SUCCESS;
}

tfla_status bwd_workspace_size(const tfla_mlstm_bwd_params& p, size_t* bytes) {
  TFLA_TRY(check_problem("tfla_mlstm_bwd", p.problem));
  layout(p.problem, true, sizeof(float), ForwardPlan{}, nullptr, nullptr, bytes, plan_backward(p.problem, p.q.dtype));
  return TFLA_SUCCESS;
}

tfla_status fwd(const tfla_mlstm_fwd_params& p, void* workspace, size_t, void* stream) {
  const char* fn = "tfla_mlstm_fwd";
  TFLA_TRY(check_problem(fn, p.problem));
  const struct { const char* n; const tfla_tensor& t; } mats[] = {{"q", p.q}, {"k", p.k}, {"v", p.v}, {"h", p.h}};
  for (const auto& m : mats) TFLA_TRY(check_matrix(fn, m.n, m.t));
  DeviceGuard guard(p.problem.device_index);
  if (!guard.ok()) return fail(TFLA_ERROR_CUDA, "%s: cannot select CUDA device %d", fn, p.problem.device_index);
  const struct { const char* n; const void* ptr; } ptrs[] = {
      {"q", p.q.data}, {"k", p.k.data}, {"v", p.v.data}, {"igate", p.igate.data}, {"fgate", p.fgate.data},
      {"c0", p.c0.data}, {"n0", p.n0.data}, {"m0", p.m0.data}, {"h", p.h.data}, {"c_last", p.c_last.data},
      {"n_last", p.n_last.data}, {"m_last", p.m_last.data}, {"m_token", p.m_token.data},
      {"den_token", p.den_token.data}, {"workspace", workspace}};
  for (const auto& x : ptrs) TFLA_TRY(check_pointer(fn, x.n, x.ptr, p.problem.device_index));

  Args a = make_args(p.problem);
  a.q = p.q; a.k = p.k; a.v = p.v; a.igate = p.igate; a.fgate = p.fgate;
  a.c0 = p.c0; a.n0 = p.n0; a.m0 = p.m0;
  a.h = p.h; a.c_last = p.c_last; a.n_last = p.n_last; a.m_last = p.m_last;
  a.m_token = p.m_token; a.den_token = p.den_token;
  const ForwardPlan plan = plan_forward(p.problem, p.q.dtype);
  layout(p.problem, false, dtype_size(p.q.dtype), plan, workspace, &a, nullptr);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  TFLA_TRY(gates(fn, KernelId::kPrepareGatesFwd, p.igate.dtype, a, s));
  return by_dtype(p.q.dtype, [&](auto t) { return run_forward<decltype(t)>(a, plan, s); });
}

tfla_status bwd(const tfla_mlstm_bwd_params& p, void* workspace, size_t, void* stream) {
  const char* fn = "tfla_mlstm_bwd";
  TFLA_TRY(check_problem(fn, p.problem));
  const struct { const char* n; const tfla_tensor& t; } mats[] = {
      {"q", p.q}, {"k", p.k}, {"v", p.v}, {"dh", p.dh}, {"dq", p.dq}, {"dk", p.dk}, {"dv", p.dv}};
  for (const auto& m : mats) TFLA_TRY(check_matrix(fn, m.n, m.t));
  DeviceGuard guard(p.problem.device_index);
  if (!guard.ok()) return fail(TFLA_ERROR_CUDA, "%s: cannot select CUDA device %d", fn, p.problem.device_index);
  const struct { const char* n; const void* ptr; } ptrs[] = {
      {"q", p.q.data}, {"k", p.k.data}, {"v", p.v.data}, {"igate", p.igate.data}, {"fgate", p.fgate.data},
      {"c0", p.c0.data}, {"n0", p.n0.data}, {"m0", p.m0.data}, {"m_token", p.m_token.data},
      {"den_token", p.den_token.data}, {"dh", p.dh.data}, {"dc_last", p.dc_last.data}, {"dn_last", p.dn_last.data},
      {"dq", p.dq.data}, {"dk", p.dk.data}, {"dv", p.dv.data}, {"digate", p.digate.data}, {"dfgate", p.dfgate.data},
      {"dc0", p.dc0.data}, {"dn0", p.dn0.data}, {"workspace", workspace}};
  for (const auto& x : ptrs) TFLA_TRY(check_pointer(fn, x.n, x.ptr, p.problem.device_index));

  Args a = make_args(p.problem);
  a.q = p.q; a.k = p.k; a.v = p.v; a.igate = p.igate; a.fgate = p.fgate;
  a.c0 = p.c0; a.n0 = p.n0; a.m0 = p.m0;
  a.m_token = p.m_token; a.den_token = p.den_token;
  a.dh = p.dh; a.dc_last = p.dc_last; a.dn_last = p.dn_last;
  a.dq = p.dq; a.dk = p.dk; a.dv = p.dv; a.digate = p.digate; a.dfgate = p.dfgate;
  a.dc0 = p.dc0; a.dn0 = p.dn0;
  const BackwardPlan plan = plan_backward(p.problem, p.q.dtype);
  layout(p.problem, true, sizeof(float), ForwardPlan{}, workspace, &a, nullptr, plan);
  const bool fused = plan.fused;
  a.skip_state0 = fused && !p.c0.data;
  a.skip_dstate_last = fused && !p.dc_last.data && !p.dn_last.data;  // the slot's dn^_NC is skipped with it
  a.split_states = fused;
  const bool need_gates = p.digate.data || p.dfgate.data;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  TFLA_TRY(gates(fn, KernelId::kPrepareGatesBwd, p.igate.dtype, a, s));
  TFLA_TRY(by_dtype(p.q.dtype, [&](auto t) {
    return run_backward<decltype(t)>(a, plan, p.dq.data || p.dfgate.data,
                                     p.dk.data || need_gates, p.dv.data != nullptr, s);
  }));
  if (need_gates) TFLA_TRY(gates(fn, KernelId::kGateGrads, p.igate.dtype, a, s));
  return TFLA_SUCCESS;
}

}  // namespace tfla::cuda
