// Thin wrappers, one per PTX instruction of the Hopper path (sm_90a): warpgroup matrix multiply-accumulate (wgmma)
// and the fences around it. Each names its section of the PTX ISA manual. Unit-tested on the GPU by
// tests/gpu/test_hw.cu (HwLayer.Wgmma*). The wgmma instructions exist only on the sm_90a target: code that calls
// them is compiled under TFLA_HAS_WGMMA (below) and traps elsewhere.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "cuda/hw/mma.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TFLA_HAS_WGMMA 1
#else
#define TFLA_HAS_WGMMA 0
#endif

namespace tfla::cuda::hw {

// PTX ISA, "Asynchronous Warpgroup Level Matrix Shared Memory Layout: Matrix Descriptor". Bits 0-13: start address,
// 16-29: leading-dimension byte offset, 32-45: stride-dimension byte offset (each in 16-byte units); 49-51: base
// offset (0: every 128-byte-swizzle pattern used here starts on a 1024-byte boundary); 62-63: swizzle mode
// (1 = 128-byte swizzle).
__device__ __forceinline__ uint64_t wgmma_desc(uint32_t smem_byte_addr, uint32_t lbo_bytes, uint32_t sbo_bytes,
                                               uint32_t swizzle) {
  return static_cast<uint64_t>((smem_byte_addr & 0x3FFFFu) >> 4) |
         (static_cast<uint64_t>((lbo_bytes >> 4) & 0x3FFFu) << 16) |
         (static_cast<uint64_t>((sbo_bytes >> 4) & 0x3FFFu) << 32) | (static_cast<uint64_t>(swizzle & 3u) << 62);
}

#if TFLA_HAS_WGMMA
// PTX ISA, "wgmma.fence": orders this warp's earlier register writes (accumulators, A fragments) before the
// wgmma.mma_async instructions that follow read them.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
// PTX ISA, "wgmma.commit_group": the wgmma.mma_async instructions issued since the last commit become one group.
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// PTX ISA, "wgmma.wait_group": wait until at most N committed groups are pending (their accumulators and A
// registers may be touched again only after that).
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
#else
__device__ __forceinline__ void wgmma_fence() { __trap(); }
__device__ __forceinline__ void wgmma_commit() { __trap(); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { __trap(); }
#endif

// PTX ISA, "Parallel Synchronization and Communication Instructions: membar / fence", fence.proxy.async: shared memory
// written by ordinary stores (or cp.async) that wgmma reads next must be fenced into the async proxy by each writing
// thread before the barrier that publishes it.
__device__ __forceinline__ void fence_proxy_async_smem() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// Keeps the compiler from moving accesses of an accumulator register across the asynchronous wgmma that owns it
// (the register is read and written "here" as far as the compiler knows).
template <int R>
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// PTX ISA, "wgmma.mma_async": D (64 x N, fp32, N / 2 registers per thread) = A (64 x 16) * B (16 x N) + (accumulate ?
// D : 0), issued by the 4 warps of a warpgroup. ss: A and B from shared memory (descriptors; TA / TB = 1 reads
// that operand transposed, i.e. M- / N-major); rs: A from registers (per warp the m16n8k16 A fragment of rows
// 16 w.., the same layout as mma.sync's), B from shared memory. The accumulator layout per warp: rows 16 w + lane/4
// (+ 8), columns 8 j + 2 (lane % 4) (+ 1) in registers 4 j + {0, 1} (+ {2, 3}), as mma.sync's per n-tile j.
template <class T, int N>
struct Wgmma;  // N = 64 (the Hopper walk, chunk_gradients' dv), N = 32 (chunk_gradients' state products), N = 16
               // (chunk_gradients' scores: 16 score columns per warpgroup)
#if TFLA_HAS_WGMMA
// One definition per shape, instantiated for bf16 and f16 (PTX: the operand type in the instruction name).
#define TFLA_WGMMA_M64N64(TYPE, PTX) \
  template <> \
  struct Wgmma<TYPE, 64> { \
    template <int TA, int TB> \
    static __device__ __forceinline__ void ss(float (&d)[32], uint64_t da, uint64_t db, int accumulate) { \
      asm volatile( \
          "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
          "wgmma.mma_async.sync.aligned.m64n64k16.f32." PTX "." PTX "\n" \
          "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31},\n" \
          "%32, %33, p, 1, 1, %35, %36;\n}\n" \
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
          : "l"(da), "l"(db), "r"(accumulate), "n"(TA), "n"(TB)); \
    } \
    template <int TB> \
    static __device__ __forceinline__ void rs(float (&d)[32], const uint32_t (&a)[4], uint64_t db, int accumulate) { \
      asm volatile( \
          "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
          "wgmma.mma_async.sync.aligned.m64n64k16.f32." PTX "." PTX "\n" \
          "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31},\n" \
          "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n" \
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate), "n"(TB)); \
    } \
  };
#define TFLA_WGMMA_M64N32(TYPE, PTX) \
  template <> \
  struct Wgmma<TYPE, 32> { \
    template <int TA, int TB> \
    static __device__ __forceinline__ void ss(float (&d)[16], uint64_t da, uint64_t db, int accumulate) { \
      asm volatile( \
          "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n" \
          "wgmma.mma_async.sync.aligned.m64n32k16.f32." PTX "." PTX "\n" \
          "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15},\n" \
          "%16, %17, p, 1, 1, %19, %20;\n}\n" \
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]) \
          : "l"(da), "l"(db), "r"(accumulate), "n"(TA), "n"(TB)); \
    } \
    template <int TB> \
    static __device__ __forceinline__ void rs(float (&d)[16], const uint32_t (&a)[4], uint64_t db, int accumulate) { \
      asm volatile( \
          "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n" \
          "wgmma.mma_async.sync.aligned.m64n32k16.f32." PTX "." PTX "\n" \
          "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15},\n" \
          "{%16, %17, %18, %19}, %20, p, 1, 1, %22;\n}\n" \
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]) \
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate), "n"(TB)); \
    } \
  };
#define TFLA_WGMMA_M64N16(TYPE, PTX) \
  template <> \
  struct Wgmma<TYPE, 16> { \
    template <int TA, int TB> \
    static __device__ __forceinline__ void ss(float (&d)[8], uint64_t da, uint64_t db, int accumulate) { \
      asm volatile( \
          "{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n" \
          "wgmma.mma_async.sync.aligned.m64n16k16.f32." PTX "." PTX "\n" \
          "{%0, %1, %2, %3, %4, %5, %6, %7},\n" \
          "%8, %9, p, 1, 1, %11, %12;\n}\n" \
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]) \
          : "l"(da), "l"(db), "r"(accumulate), "n"(TA), "n"(TB)); \
    } \
  };
TFLA_WGMMA_M64N64(__nv_bfloat16, "bf16")
TFLA_WGMMA_M64N64(__half, "f16")
TFLA_WGMMA_M64N32(__nv_bfloat16, "bf16")
TFLA_WGMMA_M64N32(__half, "f16")
TFLA_WGMMA_M64N16(__nv_bfloat16, "bf16")
TFLA_WGMMA_M64N16(__half, "f16")
#undef TFLA_WGMMA_M64N64
#undef TFLA_WGMMA_M64N32
#undef TFLA_WGMMA_M64N16
#endif

}  // namespace tfla::cuda::hw
