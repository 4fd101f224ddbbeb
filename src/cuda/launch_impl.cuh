// Definition of launch<K, T>; included only by the generated instantiation files.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include "cuda/kernels/chunk_gradients.cuh"
#include "cuda/kernels/chunk_states.cuh"
#include "cuda/kernels/chunk_tiles.cuh"
#include "cuda/kernels/gates.cuh"
#include "cuda/kernels/output_walk.cuh"
#include "cuda/hopper/chunk_states.cuh"
#include "cuda/hopper/inter_chunk_grads.cuh"
#include "cuda/hopper/output_walk.cuh"
#include "cuda/launch.cuh"

namespace tfla::cuda {

template <class Kernel>
cudaError_t launch_with_smem(Kernel kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const Args& a) {
  if (smem > 48 * 1024) {
    // Opt in to more than 48 KB of dynamic shared memory (a host-side attribute, no stream work).
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  kernel<<<grid, block, smem, stream>>>(a);
  return cudaGetLastError();
}

template <KernelId K, class T>
cudaError_t launch(const Args& a, cudaStream_t stream) {
  const unsigned bh = static_cast<unsigned>(a.B * a.H);
  const unsigned n_dk = cdiv(a.Dk, kTile), n_dv = cdiv(a.Dv, kTile), n_seq = cdiv(a.S, kTile);
  const dim3 chunks_grid(static_cast<unsigned>(a.NC), bh);
  if constexpr (K == KernelId::kPrepareGatesFwd || K == KernelId::kPrepareGatesBwd) {
    const int backward = K == KernelId::kPrepareGatesBwd ? 1 : 0;
    chunk_gate_scan_kernel<T><<<chunks_grid, 32, 0, stream>>>(a, backward);
    chunk_stabilizers_kernel<T><<<bh, kScanThreads, 0, stream>>>(a, backward);
    if (!backward) token_stabilizers_kernel<T><<<dim3(cdiv(a.S, 128), bh), 128, 0, stream>>>(a);
    else backward_token_weights_kernel<T><<<dim3(cdiv(a.S, 128), bh), 128, 0, stream>>>(a);
    return cudaGetLastError();
  } else if constexpr (K == KernelId::kGateGrads) {
    chunk_gate_totals_kernel<T><<<chunks_grid, 32, 0, stream>>>(a, static_cast<int>(n_dk));
    chunk_gate_carries_kernel<T><<<bh, kScanThreads, 0, stream>>>(a, static_cast<int>(n_dk * n_dv));
    gate_grads_kernel<T><<<chunks_grid, 32, 0, stream>>>(a, static_cast<int>(n_dk));
    return cudaGetLastError();
  } else if constexpr (K == KernelId::kStatesFwd || K == KernelId::kStatesFwdFinal) {
    constexpr int parts = K == KernelId::kStatesFwd ? 1 : kStateParts<T>;
    return launch_with_smem(chunk_states_kernel<T, false, parts, T>, dim3(n_dk * n_dv, bh), dim3(kThreads),
                            chunk_states_smem_bytes<T>(), stream, a);
  } else if constexpr (K == KernelId::kStatesBackward) {
    return launch_with_smem(chunk_states_backward_kernel<T>, dim3(n_dk * n_dv, bh, 2), dim3(kThreads),
                            chunk_states_smem_bytes<T>(), stream, a);
  } else if constexpr (K == KernelId::kStatesBackwardHopper) {
    static_assert(sizeof(T) == 2, "the wgmma recurrences take 16-bit inputs");
    const dim3 grid(static_cast<unsigned>(cdiv(a.Dk, kHopperStatesRows) * cdiv(a.Dv, kHopperStatesCols)), bh,
                    a.dq_inter ? 1 : 2);  // (with dq_inter: the reverse recurrence only)
    return launch_with_smem(hopper_chunk_states_backward_kernel<T>, grid, dim3(kHopperStatesThreads),
                            hopper_chunk_states_smem_bytes(sizeof(T)), stream, a);
  } else if constexpr (K == KernelId::kInterChunkDqHopper || K == KernelId::kInterChunkDkHopper) {
    static_assert(sizeof(T) == 2, "the inter-chunk gradient kernels take 16-bit inputs");
    constexpr bool reverse = K == KernelId::kInterChunkDkHopper;
    return launch_with_smem(hopper_inter_chunk_grads_kernel<T, reverse>,
                            dim3(static_cast<unsigned>(cdiv(a.Dk, kInterDqRows)), bh), dim3(kInterDqThreads),
                            hopper_inter_chunk_grads_smem_bytes(sizeof(T)), stream, a);
  } else if constexpr (K == KernelId::kOutputWalk || K == KernelId::kOutputWalkFinal || K == KernelId::kSegmentStates ||
                       K == KernelId::kSegmentStatesFinal) {
    static_assert(sizeof(T) == 2, "the forward walk takes 16-bit inputs");
    constexpr bool states_only = K == KernelId::kSegmentStates || K == KernelId::kSegmentStatesFinal;
    constexpr int parts = (K == KernelId::kOutputWalkFinal || K == KernelId::kSegmentStatesFinal) ? kStateParts<T> : 1;
    const dim3 grid(cdiv(a.Dv, kWalkDv), bh, a.nseg);
    return launch_with_smem(output_walk_kernel<T, states_only, parts>, grid, dim3(kWalkThreads),
                            output_walk_smem_bytes(sizeof(T)), stream, a);
  } else if constexpr (K == KernelId::kOutputWalkHopper || K == KernelId::kOutputWalkHopperFinal ||
                       K == KernelId::kSegmentStatesHopper || K == KernelId::kSegmentStatesHopperFinal) {
    static_assert(sizeof(T) == 2, "the forward walk takes 16-bit inputs");
    constexpr bool states_only = K == KernelId::kSegmentStatesHopper || K == KernelId::kSegmentStatesHopperFinal;
    constexpr int parts =
        (K == KernelId::kOutputWalkHopperFinal || K == KernelId::kSegmentStatesHopperFinal) ? kStateParts<T> : 1;
    const dim3 grid(cdiv(a.Dv, kHopperWalkDv), bh, a.nseg);
    return launch_with_smem(hopper_output_walk_kernel<T, parts, states_only>, grid, dim3(kHopperWalkThreads),
                            hopper_output_walk_smem_bytes(sizeof(T)), stream, a);
  } else if constexpr (K == KernelId::kChunkGradients) {
    static_assert(sizeof(T) == 2, "the fused chunk backward takes 16-bit inputs");
    return launch_with_smem(chunk_gradients_kernel<T>, chunks_grid, dim3(kGradThreads),
                            chunk_gradients_smem_bytes(sizeof(T)), stream, a);
  } else if constexpr (K == KernelId::kSegmentStartStates) {
    const int64_t elems = static_cast<int64_t>(a.Dk) * a.Dv + a.Dk;
    segment_start_states_kernel<T><<<dim3(static_cast<unsigned>((elems + 255) / 256), bh), 256, 0, stream>>>(a);
    return cudaGetLastError();
  } else {
    constexpr int role = K == KernelId::kOutput ? kOutput : K == KernelId::kDq ? kDq : K == KernelId::kDk ? kDk : kDv;
    const unsigned n_out = cdiv((role == kDq || role == kDk) ? a.Dk : a.Dv, chunk_tiles_out_cols(role));
    const size_t smem = chunk_tiles_smem_bytes<T>(role, (role == kOutput || role == kDv) ? a.Dk : a.Dv);
    return launch_with_smem(chunk_tiles_kernel<T, role>, dim3(n_out, n_seq, bh), dim3(kThreads), smem, stream, a);
  }
}

}  // namespace tfla::cuda
