// Warp-level tile primitives of the portable kernels: operand fragments, a warp GEMM over shared-memory
// tiles in either orientation, and global<->shared tile copies with conversion and zero fill.
//
// Every kernel works on 64x64 tiles held in shared memory with a padded row (kLd = 72 elements: the
// 16-byte pad keeps ldmatrix rows in different banks). A warp owns 16 rows of a 64-row output tile.
// For 16-bit inputs the GEMM uses mma.sync m16n8k16 (tensor cores, fp32 accumulation). For fp32 inputs
// the same fragment interface is implemented with fp32 FMAs, so fp32 results are exact to fp32
// rounding (TF32 would miss the spec's accuracy rule by two orders of magnitude).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
#include <type_traits>

#include "cuda/hw/mma.cuh"

namespace tfla::cuda {

constexpr int kTile = 64;      // tokens per sequence tile and head-dim elements per dim tile
constexpr int kLd = kTile + 8; // shared-memory row length (elements)
constexpr int kThreads = 128;  // 4 warps; warp w owns rows [16w, 16w+16) of a 64-row output tile

template <class T> __device__ __forceinline__ float to_float(T x);
template <> __device__ __forceinline__ float to_float<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }

template <class T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

// ---------------------------------------------------------------------------------------------------
// Fragments. FragA: a 16x16 A block (row r = lane/4 and r+8). FragB: a 16(k) x 8(n) B block.
// Accumulator (float[4]): c0,c1 at (lane/4, 2*(lane%4) + {0,1}), c2,c3 at row + 8.
template <class T> struct FragA { uint32_t r[4]; };
template <class T> struct FragB { uint32_t r[2]; };
template <> struct FragA<float> { float a[2][16]; };
template <> struct FragB<float> { float b[2][16]; };

// A block at (m0, k0) of a matrix stored s[m * ld + k] (K_MAJOR = true) or s[k * ld + m] (false).
template <class T, bool K_MAJOR>
__device__ __forceinline__ void load_a(FragA<T>& f, const T* s, int ld, int m0, int k0) {
  const int lane = threadIdx.x & 31;
  if constexpr (K_MAJOR) {
    const int row = m0 + (lane & 7) + ((lane >> 3) & 1) * 8, col = k0 + (lane >> 4) * 8;
    hw::ldmatrix_x4(f.r, s + row * ld + col);
  } else {
    const int mat = lane >> 3;
    const int row = k0 + (lane & 7) + (mat >> 1) * 8, col = m0 + (mat & 1) * 8;
    hw::ldmatrix_x4_trans(f.r, s + row * ld + col);
  }
}
template <>
__device__ __forceinline__ void load_a<float, true>(FragA<float>& f, const float* s, int ld, int m0, int k0) {
  const int r = m0 + ((threadIdx.x & 31) >> 2);
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int k = 0; k < 16; ++k) f.a[i][k] = s[(r + 8 * i) * ld + k0 + k];
}
template <>
__device__ __forceinline__ void load_a<float, false>(FragA<float>& f, const float* s, int ld, int m0, int k0) {
  const int r = m0 + ((threadIdx.x & 31) >> 2);
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int k = 0; k < 16; ++k) f.a[i][k] = s[(k0 + k) * ld + r + 8 * i];
}

// B block at (k0, n0) of a matrix stored s[n * ld + k] (K_MAJOR = true) or s[k * ld + n] (false).
template <class T, bool K_MAJOR>
__device__ __forceinline__ void load_b(FragB<T>& f, const T* s, int ld, int n0, int k0) {
  const int lane = threadIdx.x & 15;  // .x2: lanes 0..15 supply addresses (others mirror them)
  if constexpr (K_MAJOR) {
    hw::ldmatrix_x2(f.r, s + (n0 + (lane & 7)) * ld + k0 + (lane >> 3) * 8);
  } else {
    hw::ldmatrix_x2_trans(f.r, s + (k0 + (lane & 7) + (lane >> 3) * 8) * ld + n0);
  }
}
// B blocks of two adjacent n-tiles, (k0, n0) and (k0, n0 + 8), by one ldmatrix.x4 (16-bit T): half the
// ldmatrix instructions of two load_b calls. Lane l supplies the row of matrix l / 8: matrices 0, 1 are b0's
// k halves, 2, 3 are b1's.
template <class T, bool K_MAJOR>
__device__ __forceinline__ void load_b2(FragB<T>& b0, FragB<T>& b1, const T* s, int ld, int n0, int k0) {
  const int lane = threadIdx.x & 31, mat = lane >> 3, r = lane & 7;
  uint32_t x[4];
  if constexpr (K_MAJOR) {
    hw::ldmatrix_x4(x, s + (n0 + (mat >> 1) * 8 + r) * ld + k0 + (mat & 1) * 8);
  } else {
    hw::ldmatrix_x4_trans(x, s + (k0 + (mat & 1) * 8 + r) * ld + n0 + (mat >> 1) * 8);
  }
  b0.r[0] = x[0];
  b0.r[1] = x[1];
  b1.r[0] = x[2];
  b1.r[1] = x[3];
}
template <>
__device__ __forceinline__ void load_b<float, true>(FragB<float>& f, const float* s, int ld, int n0, int k0) {
  const int c = n0 + 2 * (threadIdx.x & 3);
#pragma unroll
  for (int j = 0; j < 2; ++j)
#pragma unroll
    for (int k = 0; k < 16; ++k) f.b[j][k] = s[(c + j) * ld + k0 + k];
}
template <>
__device__ __forceinline__ void load_b<float, false>(FragB<float>& f, const float* s, int ld, int n0, int k0) {
  const int c = n0 + 2 * (threadIdx.x & 3);
#pragma unroll
  for (int j = 0; j < 2; ++j)
#pragma unroll
    for (int k = 0; k < 16; ++k) f.b[j][k] = s[(k0 + k) * ld + c + j];
}

template <class T>
__device__ __forceinline__ void mma(float (&d)[4], const FragA<T>& a, const FragB<T>& b) {
  if constexpr (sizeof(T) == 2 && std::is_same_v<T, __nv_bfloat16>) {
    hw::mma_m16n8k16_bf16(d, a.r, b.r);
  } else {
    hw::mma_m16n8k16_f16(d, a.r, b.r);
  }
}
template <>
__device__ __forceinline__ void mma<float>(float (&d)[4], const FragA<float>& a, const FragB<float>& b) {
#pragma unroll
  for (int k = 0; k < 16; ++k) {
    d[0] = fmaf(a.a[0][k], b.b[0][k], d[0]);
    d[1] = fmaf(a.a[0][k], b.b[1][k], d[1]);
    d[2] = fmaf(a.a[1][k], b.b[0][k], d[2]);
    d[3] = fmaf(a.a[1][k], b.b[1][k], d[3]);
  }
}

// ---------------------------------------------------------------------------------------------------
// Register-side conversions of 16-bit fragments: two elements of a 32-bit register <-> two floats (the
// element with the lower k or n index sits in the low half, as ldmatrix and mma.sync expect).
template <class T> __device__ __forceinline__ float2 unpack2(uint32_t r);
// bf16 -> fp32 is a 16-bit shift: one shift and one mask (the intrinsic compiled to a PRMT and a shift per
// element; chunk_gradients' state split spent 21% of its instructions in pack2_split, ncu, bench/NOTES.md v4).
template <> __device__ __forceinline__ float2 unpack2<__nv_bfloat16>(uint32_t r) {
  return make_float2(__uint_as_float(r << 16), __uint_as_float(r & 0xffff0000u));
}
template <> __device__ __forceinline__ float2 unpack2<__half>(uint32_t r) {
  return __half22float2(*reinterpret_cast<const __half2*>(&r));
}
template <class T> __device__ __forceinline__ uint32_t pack2(float x, float y);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float x, float y) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
  return *reinterpret_cast<const uint32_t*>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float x, float y) {
  const __half2 h = __floats2half2_rn(x, y);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Two floats -> PARTS registers whose sum carries them (split_store's scheme, in registers).
// bf16, 3 parts: part 0 = bf16(x) rounded to nearest; the remainder r = x - part 0 is exact in fp32 and has at most
// 16 significant bits, so part 1 = r truncated to bf16 (its upper 16 bits) and part 2 = r - part 1 (at most 8
// significant bits: exactly a bf16) split it exactly, with masks and byte permutes instead of two more rounding
// conversions and their unpacking (chunk_gradients' state split: 11 instead of 15 instructions per pair).
template <class T, int PARTS>
__device__ __forceinline__ void pack2_split(uint32_t* dst, int stride, float x, float y) {
  if constexpr (std::is_same_v<T, __nv_bfloat16> && PARTS == 3) {
    dst[0] = pack2<T>(x, y);
    const float2 h = unpack2<T>(dst[0]);
    const uint32_t rx = __float_as_uint(x - h.x), ry = __float_as_uint(y - h.y);
    dst[stride] = __byte_perm(rx, ry, 0x7632);  // upper halves: x's in the low half, y's in the high half
    const float lx = __uint_as_float(rx) - __uint_as_float(rx & 0xffff0000u);
    const float ly = __uint_as_float(ry) - __uint_as_float(ry & 0xffff0000u);
    dst[2 * stride] = __byte_perm(__float_as_uint(lx), __float_as_uint(ly), 0x7632);
  } else {
#pragma unroll
    for (int p = 0; p < PARTS; ++p) {
      dst[p * stride] = pack2<T>(x, y);
      const float2 r = unpack2<T>(dst[p * stride]);
      x -= r.x;
      y -= r.y;
    }
  }
}

// out[p] = parts of A with column k (the token index of a K^T or Q^T operand) scaled by w[k0 + k] (shared
// memory). The weighting happens on the operand fragment each warp loads anyway, instead of a pass over
// a shared tile: no extra shared-memory traffic and no barrier (chunk_states v2).
// A fragment registers (load_a, mma.sync m16n8k16): r0 (row g, k 2t..2t+1), r1 (g+8, same k),
// r2 (g, k 8+2t..), r3 (g+8, k 8+2t..), with g = lane/4, t = lane%4.
// The two elements of A register i times their column weights (in fp32).
template <class T>
__device__ __forceinline__ float2 scaled_a_pair(const FragA<T>& a, const float* w, int k0, int i) {
  const float2 s = *reinterpret_cast<const float2*>(w + k0 + (i < 2 ? 0 : 8) + 2 * (threadIdx.x & 3));
  const float2 x = unpack2<T>(a.r[i]);
  return make_float2(x.x * s.x, x.y * s.y);
}
template <class T, int PARTS>
__device__ __forceinline__ void scale_a_cols(FragA<T> (&out)[PARTS], const FragA<T>& a, const float* w, int k0) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 y = scaled_a_pair<T>(a, w, k0, i);
    pack2_split<T, PARTS>(&out[0].r[i], sizeof(FragA<T>) / sizeof(uint32_t), y.x, y.y);
  }
}
// Part `part` only of a split of the same weighted values: callers that loop over the parts keep one fragment live
// instead of PARTS (the forward walk's final-state variant). Part 0 equals scale_a_cols'; the later parts are
// rounded, where pack2_split's bf16 3-part split truncates, so the parts differ while their sum is the same within
// ~fp32.
template <class T, int PARTS>
__device__ __forceinline__ void scale_a_cols_part(FragA<T>& out, const FragA<T>& a, const float* w, int k0, int part) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 y = scaled_a_pair<T>(a, w, k0, i);
    float u = y.x, v = y.y;
    for (int p = 0; p < part; ++p) {
      const float2 r = unpack2<T>(pack2<T>(u, v));
      u -= r.x;
      v -= r.y;
    }
    out.r[i] = pack2<T>(u, v);
  }
}
template <>
__device__ __forceinline__ void scale_a_cols<float, 1>(FragA<float> (&out)[1], const FragA<float>& a, const float* w,
                                                      int k0) {
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int k = 0; k < 16; ++k) out[0].a[i][k] = a.a[i][k] * w[k0 + k];
}

// acc[nt] += sum_p A_p * B(k0.., n-tile nt) for nt < NT (16-bit T): the A parts are in registers (weighted or
// split by the caller); all NT B fragments are loaded first (two n-tiles per ldmatrix.x4), then the mma run part by
// part over the NT accumulators. mma and ldmatrix are volatile asm, issued in source order: the v2 order (per
// n-tile, every part's mma into one accumulator) issued dependent mma back to back (bench/NOTES.md v4).
template <class T, bool B_K_MAJOR, int NT, int PARTS>
__device__ __forceinline__ void mma_parts_over_tiles(float (&acc)[NT][4], const FragA<T> (&a)[PARTS], const T* sB, int ldb,
                                                     int k0) {
  static_assert(sizeof(T) == 2 && NT % 2 == 0, "16-bit fragments, n-tiles in pairs");
  FragB<T> bf[NT];
#pragma unroll
  for (int nt = 0; nt < NT; nt += 2) load_b2<T, B_K_MAJOR>(bf[nt], bf[nt + 1], sB, ldb, nt * 8, k0);
#pragma unroll
  for (int p = 0; p < PARTS; ++p)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) mma<T>(acc[nt], a[p], bf[nt]);
}

// acc(16 x 8*NT) += A(rows m0..m0+15, K) * B(K, 8*NT columns), both from shared memory with row lengths
// lda / ldb (elements).
template <class T, bool A_K_MAJOR, bool B_K_MAJOR, int NT>
__device__ __forceinline__ void warp_gemm_ld(float (&acc)[NT][4], const T* sA, int lda, int m0, const T* sB, int ldb,
                                             int K) {
  if constexpr (std::is_same_v<T, float>) {
    // fp32: one k at a time, so only 2 A and 2 B values per n-tile are live (whole FragA/FragB<float>
    // fragments, 64 registers, made the v2 chunk_tiles kernels spill); the shared-memory reads are the same.
    const int r = m0 + ((threadIdx.x & 31) >> 2), cb = 2 * (threadIdx.x & 3);
#pragma unroll 2
    for (int k = 0; k < K; ++k) {
      const float a0 = A_K_MAJOR ? sA[r * lda + k] : sA[k * lda + r];
      const float a1 = A_K_MAJOR ? sA[(r + 8) * lda + k] : sA[k * lda + r + 8];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int c = nt * 8 + cb;
        const float b0 = B_K_MAJOR ? sB[c * ldb + k] : sB[k * ldb + c];
        const float b1 = B_K_MAJOR ? sB[(c + 1) * ldb + k] : sB[k * ldb + c + 1];
        acc[nt][0] = fmaf(a0, b0, acc[nt][0]);
        acc[nt][1] = fmaf(a0, b1, acc[nt][1]);
        acc[nt][2] = fmaf(a1, b0, acc[nt][2]);
        acc[nt][3] = fmaf(a1, b1, acc[nt][3]);
      }
    }
    return;
  }
#pragma unroll 1
  for (int k0 = 0; k0 < K; k0 += 16) {
    FragA<T> a;
    load_a<T, A_K_MAJOR>(a, sA, lda, m0, k0);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      FragB<T> b;
      load_b<T, B_K_MAJOR>(b, sB, ldb, nt * 8, k0);
      mma<T>(acc[nt], a, b);
    }
  }
}

// The common case: 64-column tiles of row length kLd.
template <class T, bool A_K_MAJOR, bool B_K_MAJOR>
__device__ __forceinline__ void warp_gemm(float (&acc)[8][4], const T* sA, int m0, const T* sB, int K) {
  warp_gemm_ld<T, A_K_MAJOR, B_K_MAJOR, 8>(acc, sA, kLd, m0, sB, kLd, K);
}

template <int NT>
__device__ __forceinline__ void zero(float (&acc)[NT][4]) {
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[nt][e] = 0.f;
}

// Row (within the 64-row tile) and column of accumulator element e of n-tile nt for this thread.
__device__ __forceinline__ int acc_row(int warp, int e) { return warp * 16 + ((threadIdx.x & 31) >> 2) + (e >> 1) * 8; }
__device__ __forceinline__ int acc_col(int nt, int e) { return nt * 8 + 2 * (threadIdx.x & 3) + (e & 1); }

// ---------------------------------------------------------------------------------------------------
// Global -> shared copies of a 64 x 64 tile. Rows beyond `rows` and columns beyond `cols` are zero.
// `g` points at element (0, 0); rows are `row_stride` elements apart, columns contiguous.
// Requires cols % 8 == 0, 16-byte aligned rows (checked by the dispatcher).
// A 64 x COLS tile; shared rows are LD elements long.
// NTH: the threads of the block that share the copy.
template <class T, int COLS = kTile, int NTH = kThreads>
__device__ __forceinline__ void load_tile_async_ld(T* s, int ld, const T* g, int64_t row_stride, int rows, int cols) {
  constexpr int kVec = 16 / sizeof(T);          // elements per 16-byte vector
  constexpr int kVecsPerRow = COLS / kVec;
  static_assert(NTH % kVecsPerRow == 0, "each thread keeps its column");
  // Thread t's vectors t, t + NTH, ... share a column: the addresses are computed once and stepped (as
  // load_tile_sw128; v7 computed each vector's row, column and 64-bit source).
  constexpr int kRowStep = NTH / kVecsPerRow, kIters = (kTile + kRowStep - 1) / kRowStep;
  const int r0 = static_cast<int>(threadIdx.x) / kVecsPerRow, c = (static_cast<int>(threadIdx.x) % kVecsPerRow) * kVec;
  const uint32_t s0 = hw::smem_addr(s + r0 * ld + c);
  const T* const g0 = g + r0 * row_stride + c;
  const int64_t g_step = kRowStep * row_stride;
  const bool col_ok = c < cols;
#pragma unroll
  for (int k = 0; k < kIters; ++k) {
    const int r = r0 + k * kRowStep;
    if (kTile % kRowStep != 0 && r >= kTile) break;
    const bool ok = col_ok && r < rows;
    hw::cp_async_16(s0 + static_cast<uint32_t>(k * kRowStep * ld * sizeof(T)), ok ? g0 + k * g_step : g, ok ? 16 : 0);
  }
}
template <class T, int COLS = kTile, int LD = kLd>
__device__ __forceinline__ void load_tile_async(T* s, const T* g, int64_t row_stride, int rows, int cols) {
  load_tile_async_ld<T, COLS>(s, LD, g, row_stride, rows, cols);
}

// An fp32 value as a sum of PARTS values of T: part 0 = T(x), part p = T(x - parts 0..p-1). For bf16 each
// part adds 8 mantissa bits: 2 parts ~ 2^-17 relative, 3 parts ~ fp32. Products with state tiles go
// through the tensor cores once per part. (T = float: one exact part.)
template <class T, int PARTS>
__device__ __forceinline__ void split_store(T* const* dst, int at, float x) {
#pragma unroll
  for (int p = 0; p < PARTS; ++p) {
    const T t = from_float<T>(x);
    dst[p][at] = t;
    x -= to_float<T>(t);
  }
}

// fp32 workspace tile (row stride `row_stride`) -> PARTS shared tiles of T, with zero fill.
// A 64 x COLS fp32 tile -> PARTS shared tiles of T with rows of LD elements.
template <class T, int PARTS, int COLS = kTile, int LD = kLd>
__device__ __forceinline__ void load_tile_f32_split(T* const* dst, const float* g, int64_t row_stride, int rows, int cols) {
  for (int idx = threadIdx.x; idx < kTile * COLS / 4; idx += kThreads) {
    const int r = idx / (COLS / 4), c = (idx % (COLS / 4)) * 4;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < rows && c < cols) v = *reinterpret_cast<const float4*>(g + r * row_stride + c);
    split_store<T, PARTS>(dst, r * LD + c + 0, v.x);
    split_store<T, PARTS>(dst, r * LD + c + 1, v.y);
    split_store<T, PARTS>(dst, r * LD + c + 2, v.z);
    split_store<T, PARTS>(dst, r * LD + c + 3, v.w);
  }
}

// Parts used for products with fp32 boundary states: the gate gradients need ~fp32 states (their reverse
// cumulative sum cancels cross-chunk terms computed once from the query side and once from the key side;
// measured with 2 parts: d f up to 9x the plain implementation's error, bench/results/2026-11-25-h100-v1.1).
template <class T> constexpr int kStateParts = sizeof(T) == 2 ? 3 : 1;

// Write this warp's accumulator rows (scaled per row) to global memory as T; rows >= rows / cols >= cols
// are skipped. row_scale[r] is read from shared memory.
template <class T, int NT>
__device__ __forceinline__ void store_acc(T* g, int64_t row_stride, const float (&acc)[NT][4], int warp, int rows,
                                          int cols, const float* row_scale) {
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; e += 2) {
      const int r = acc_row(warp, e), c = acc_col(nt, e);
      if (r < rows && c < cols) {
        const float sc = row_scale ? row_scale[r] : 1.f;
        T* dst = g + r * row_stride + c;  // cols % 8 == 0: c + 1 < cols as well; c even: an aligned pair
        if constexpr (sizeof(T) == 2) {
          *reinterpret_cast<uint32_t*>(dst) = pack2<T>(acc[nt][e] * sc, acc[nt][e + 1] * sc);  // one 4-byte store
        } else {
          *reinterpret_cast<float2*>(dst) = make_float2(acc[nt][e] * sc, acc[nt][e + 1] * sc);
        }
      }
    }
}

// ---------------------------------------------------------------------------------------------------
// acc(16 x 8 NT) += sum over parts of A(rows m0.., K) * B(K, 8 NT columns): A has NPA parts (sA + p * a_part),
// B has NPB parts (sB + p * b_part); one of the two is 1. Per 16-deep k-step: A's parts, then per B part all NT
// B fragments (ldmatrix.x4, two n-tiles each), then NT mma into NT different accumulators. The first version
// (per n-tile: every part's mma into the same accumulator) issued dependent mma back to back; ldmatrix and mma are
// volatile asm (hw/mma.cuh), so the source order is the issue order. GUARD: skip n-tiles at or past n_live
// columns (head dims below the tile width), else no per-tile branch.
// (load_b_pair(fb0, fb1, p, n0, k0): the B fragments of n-tiles n0, n0 + 8 at k-step k0 from B's part p; hopper/sw128.cuh
// passes one for swizzled B tiles.)
template <class T, bool A_K_MAJOR, int NT, int NPA, int NPB, bool GUARD, class LoadBPair>
__device__ __forceinline__ void gemm_parts_loop(float (&acc)[NT][4], const T* sA, int a_part, int lda, int m0,
                                                LoadBPair load_b_pair, int K, int n_live) {
  static_assert(NT % 2 == 0, "n-tiles in pairs");
#pragma unroll 1
  for (int k0 = 0; k0 < K; k0 += 16) {
    FragA<T> fa[NPA];
#pragma unroll
    for (int q = 0; q < NPA; ++q) load_a<T, A_K_MAJOR>(fa[q], sA + q * a_part, lda, m0, k0);
#pragma unroll
    for (int p = 0; p < NPB; ++p) {
      FragB<T> fb[NT];
#pragma unroll
      for (int nt = 0; nt < NT; nt += 2)
        if (!GUARD || nt * 8 < n_live) load_b_pair(fb[nt], fb[nt + 1], p, nt * 8, k0);
#pragma unroll
      for (int q = 0; q < NPA; ++q)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          if (!GUARD || nt * 8 < n_live) mma<T>(acc[nt], fa[q], fb[nt]);
    }
  }
}
template <class T, bool A_K_MAJOR, bool B_K_MAJOR, int NT, int NPA, int NPB, bool GUARD>
__device__ __forceinline__ void gemm_parts_body(float (&acc)[NT][4], const T* sA, int a_part, int lda, int m0,
                                                const T* sB, int b_part, int ldb, int K, int n_live) {
  gemm_parts_loop<T, A_K_MAJOR, NT, NPA, NPB, GUARD>(
      acc, sA, a_part, lda, m0,
      [&](FragB<T>& b0, FragB<T>& b1, int p, int n0, int k0) { load_b2<T, B_K_MAJOR>(b0, b1, sB + p * b_part, ldb, n0, k0); },
      K, n_live);
}
template <class T, bool A_K_MAJOR, bool B_K_MAJOR, int NT, int NPA, int NPB>
__device__ __forceinline__ void gemm_parts(float (&acc)[NT][4], const T* sA, int a_part, int lda, int m0, const T* sB,
                                           int b_part, int ldb, int K, int n_live) {
  static_assert(NPA == 1 || NPB == 1, "parts on one operand");
  if (n_live >= NT * 8)
    gemm_parts_body<T, A_K_MAJOR, B_K_MAJOR, NT, NPA, NPB, false>(acc, sA, a_part, lda, m0, sB, b_part, ldb, K, n_live);
  else if (n_live > 0)
    gemm_parts_body<T, A_K_MAJOR, B_K_MAJOR, NT, NPA, NPB, true>(acc, sA, a_part, lda, m0, sB, b_part, ldb, K, n_live);
}

}  // namespace tfla::cuda
