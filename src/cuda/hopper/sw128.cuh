// Shared-memory tiles in the 128-byte-swizzled layout that wgmma reads (PTX ISA, "Asynchronous Warpgroup Level
// Matrix Shared Memory Layout": 128B swizzling), for 16-bit elements.
//
// A tile of R rows (R a multiple of 8) is stored in panels of 64 columns: panel p holds columns 64 p .. 64 p + 63 as
// R rows of 128 bytes, and the 16-byte chunk c (columns 8 c .. 8 c + 7 of the panel) of row r sits at chunk position
// c ^ (r % 8). Every panel starts on a 1024-byte boundary. The same bytes serve two ways:
//   K-major operand  (rows = M or N, columns = K): A = Q [token][dk], B = K [token][dk] for Q K^T;
//   MN-major operand (rows = K, columns = M or N): B = V [token][dv] for P V, B = C^ [dk][dv] for Q C^.
// The swizzle spreads the 8 rows of each 8 x 16-byte core matrix over all 32 banks, for wgmma and for ldmatrix.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>

#include "cuda/hw/mma.cuh"
#include "cuda/hw/wgmma.cuh"
#include "cuda/tiles.cuh"

namespace tfla::cuda {

constexpr int kSwPanel = 64;  // columns (16-bit elements) per panel: 128 bytes

// Byte offset of element (r, c) in a tile of `rows` rows.
__device__ __forceinline__ uint32_t sw128_offset(int rows, int r, int c) {
  return static_cast<uint32_t>((c >> 6) * rows * 128 + r * 128 + ((((c & 63) >> 3) ^ (r & 7)) << 4) + ((c & 7) << 1));
}

// wgmma descriptor of a K-major operand (tile of `rows` rows = M or N, columns = K) for the k-step k0.. k0 + 15
// (k0 a multiple of 16): panel k0 / 64, advanced 32 bytes per k-step inside its 128-byte rows (the swizzle is a
// function of the address bits, so the start moves and the pattern stays). Stride between 8-row groups: 1024 bytes;
// the leading offset is unused by swizzled K-major layouts.
__device__ __forceinline__ uint64_t desc_k_major(uint32_t tile_addr, int rows, int k0) {
  return hw::wgmma_desc(tile_addr + static_cast<uint32_t>((k0 >> 6) * rows * 128 + (k0 & 63) * 2), 16, 1024, 1);
}

// wgmma descriptor of an MN-major operand (rows = K, columns = M or N) for the k-step k0.. k0 + 15 and the 64 columns
// of panel `panel` (one swizzle pattern wide: N = 64). 8-row groups along K are 1024 bytes apart; with one pattern
// across MN the other offset is never used, so both offsets carry 1024 (hw test HwLayer.WgmmaMnMajorB*).
__device__ __forceinline__ uint64_t desc_mn_major(uint32_t tile_addr, int rows, int panel, int k0) {
  return hw::wgmma_desc(tile_addr + static_cast<uint32_t>(panel * rows * 128 + k0 * 128), 1024, 1024, 1);
}

// Queue cp.async copies of a global [ROWS][cols] tile (row stride ld elements, 16-byte aligned rows) into the swizzled
// layout at `dst` (COLS columns: a multiple of 64), zero-filling rows >= nrows and columns >= ncols (ncols a
// multiple of 8). THREADS threads share the work, thread `tid` the 16-byte chunks tid, tid + THREADS, ...
//
// Thread tid's chunks share one column (THREADS is a multiple of the chunks per row) and one swizzle phase (the rows
// between them are a multiple of 8 apart), so both addresses are computed once and stepped. v7 computed the row,
// column, swizzle and 64-bit source of every chunk: the tile loads were ~40% of chunk_gradients' instructions
// (ncu source counters, bench/results/2026-11-26-h100-v8).
template <class T, int ROWS, int COLS, int THREADS>
__device__ __forceinline__ void load_tile_sw128(unsigned char* dst, const T* src, int64_t ld, int nrows, int ncols,
                                                int tid) {
  static_assert(sizeof(T) == 2 && COLS % kSwPanel == 0 && ROWS % 8 == 0, "16-bit tiles of whole panels");
  constexpr int kChunksPerRow = COLS / 8;
  static_assert(THREADS % kChunksPerRow == 0 && (THREADS / kChunksPerRow) % 8 == 0,
                "each thread keeps its column and its swizzle phase");
  constexpr int kRowStep = THREADS / kChunksPerRow, kIters = (ROWS + kRowStep - 1) / kRowStep;
  const int r0 = tid / kChunksPerRow, c = (tid % kChunksPerRow) * 8;
  const uint32_t s0 = hw::smem_addr(dst) + sw128_offset(ROWS, r0, c);
  const T* const g0 = src + r0 * ld + c;
  const int64_t g_step = kRowStep * ld;
  const bool col_ok = c < ncols;
#pragma unroll
  for (int k = 0; k < kIters; ++k) {
    const int r = r0 + k * kRowStep;
    if (ROWS % kRowStep != 0 && r >= ROWS) break;
    const bool ok = col_ok && r < nrows;
    hw::cp_async_16(s0 + static_cast<uint32_t>(k * kRowStep * 128), ok ? g0 + k * g_step : src, ok ? 16 : 0);
  }
}

// The same copies with every chunk's addresses computed where it is queued: nothing stays live between calls. The
// backward's state recurrences (hopper/chunk_states.cuh) run 3 blocks per SM within 168 registers, and the stepped
// form's per-thread addresses, hoisted out of their chunk loop by the compiler, spilled there (20 bytes); they are
// bound by DRAM, not by instructions (ncu, bench/results/2026-11-26-h100-v8).
template <class T, int ROWS, int COLS, int THREADS>
__device__ __forceinline__ void load_tile_sw128_low_regs(unsigned char* dst, const T* src, int64_t ld, int nrows,
                                                         int ncols, int tid) {
  static_assert(sizeof(T) == 2 && COLS % kSwPanel == 0 && ROWS % 8 == 0, "16-bit tiles of whole panels");
  constexpr int kChunksPerRow = COLS / 8, kChunks = ROWS * kChunksPerRow;
#pragma unroll
  for (int i = tid; i < kChunks; i += THREADS) {
    const int r = i / kChunksPerRow, c = (i % kChunksPerRow) * 8;
    const bool ok = r < nrows && c < ncols;
    hw::cp_async_16(dst + sw128_offset(ROWS, r, c), ok ? src + r * ld + c : src, ok ? 16 : 0);
  }
}

// The A fragment (mma.sync / wgmma register layout, rows = M) of M rows m0..m0 + 15 and K columns k0..k0 + 15 of
// A = X^T, where X is a swizzled tile [k][m] of `rows` rows (e.g. A = K^T from the key tile [token][dk]):
// ldmatrix.x4.trans, lane l addressing row k0 + l % 8 + 8 (l / 16) and the 8 columns m0 + 8 ((l / 8) % 2)..
__device__ __forceinline__ void load_a_trans_sw128(uint32_t (&a)[4], const unsigned char* tile, int rows, int m0,
                                                   int k0) {
  const int l = threadIdx.x & 31;
  const int r = k0 + (l & 7) + 8 * (l >> 4), c = m0 + 8 * ((l >> 3) & 1);
  hw::ldmatrix_x4_trans(a, tile + sw128_offset(rows, r, c));
}

// The A fragment (mma.sync / wgmma register layout) of rows m0..m0 + 15 and K columns k0..k0 + 15 of a swizzled tile
// [m][k] of `rows` rows (A K-major, e.g. A = dH [token][dv]): ldmatrix.x4, lane l addressing row m0 + l % 8 +
// 8 ((l / 8) % 2) and the 8 columns k0 + 8 (l / 16).., as tiles.cuh's load_a<T, true>.
__device__ __forceinline__ void load_a_sw128(uint32_t (&a)[4], const unsigned char* tile, int rows, int m0, int k0) {
  const int l = threadIdx.x & 31;
  hw::ldmatrix_x4(a, tile + sw128_offset(rows, m0 + (l & 7) + 8 * ((l >> 3) & 1), k0 + 8 * (l >> 4)));
}

// The mma.sync B fragments of two adjacent n-tiles, (k0, n0) and (k0, n0 + 8), from a swizzled tile [k][n] of `rows`
// rows (n0 a multiple of 16, inside one panel): ldmatrix.x4.trans as tiles.cuh's load_b2<T, false>, lane l
// addressing row k0 + l % 8 + 8 ((l / 8) % 2) and the 8 columns n0 + 8 (l / 16)..
__device__ __forceinline__ void load_b2_sw128(uint32_t (&b0)[2], uint32_t (&b1)[2], const unsigned char* tile, int rows,
                                              int k0, int n0) {
  const int l = threadIdx.x & 31, mat = l >> 3;
  uint32_t x[4];
  hw::ldmatrix_x4_trans(x, tile + sw128_offset(rows, k0 + (mat & 1) * 8 + (l & 7), n0 + (mat >> 1) * 8));
  b0[0] = x[0];
  b0[1] = x[1];
  b1[0] = x[2];
  b1[1] = x[3];
}

// acc (16 x 8 NT) += sum over A's NPA parts of A (rows m0.., K; padded tile, tiles.cuh's load_a) * B (K x 8 NT columns
// n0.. of a swizzled tile [k][n] of `rows` rows, through load_b2_sw128): tiles.cuh's gemm_parts with B swizzled
// (chunk_gradients' dS K and dS^T Q). N-tiles at or past n_live columns are skipped.
template <class T, bool A_K_MAJOR, int NT, int NPA>
__device__ __forceinline__ void gemm_parts_b_sw128(float (&acc)[NT][4], const T* sA, int a_part, int lda, int m0,
                                                   const unsigned char* sB, int rows, int n0, int K, int n_live) {
  gemm_parts_loop<T, A_K_MAJOR, NT, NPA, 1, true>(
      acc, sA, a_part, lda, m0,
      [&](FragB<T>& b0, FragB<T>& b1, int, int n, int k0) { load_b2_sw128(b0.r, b1.r, sB, rows, k0, n0 + n); }, K,
      n_live);
}

}  // namespace tfla::cuda
