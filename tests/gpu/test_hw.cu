// Unit tests of the hardware layer (src/cuda/hw/mma.cuh) through the fragment primitives that wrap it
// (src/cuda/tiles.cuh): cp.async tile loads with zero fill, ldmatrix (x2/x4, plain and .trans) in every
// operand orientation, also as load_b2 (two n-tiles per ldmatrix.x4), and mma.sync m16n8k16 (bf16, f16) or the
// fp32 FMA emulation, against a host GEMM; the register-side split of fp32 values into 3 parts (pack2_split); named barriers;
// the Hopper layer (src/cuda/hw/wgmma.cuh, src/cuda/hopper/sw128.cuh): wgmma m64n64k16 with operands in the
// 128-byte-swizzled layout, K-major and MN-major, A from shared memory and from registers (ldmatrix.trans); wgmma
// m64n32k16 with A from registers and mma.sync B fragments from a swizzled tile (chunk_gradients).
// SPDX-License-Identifier: Apache-2.0
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cuda/hopper/sw128.cuh"
#include "cuda/tiles.cuh"

namespace tc = tfla::cuda;

namespace {

// C(64x64) = A(64 x 64) * B(64 x 64), A given as g[m][k] (A_KM) or g[k][m]; B as g[n][k] (B_KM) or g[k][n].
// Both inputs arrive through load_tile_async with `rows`/`cols` valid (the rest must read as zero).
template <class T, bool A_KM, bool B_KM, bool PAIRS>
__global__ void gemm_kernel(const T* a, const T* b, float* c, int rows, int cols) {
  __shared__ __align__(16) T sA[tc::kTile * tc::kLd];
  __shared__ __align__(16) T sB[tc::kTile * tc::kLd];
  tc::load_tile_async<T>(sA, a, tc::kTile, rows, cols);
  tc::load_tile_async<T>(sB, b, tc::kTile, rows, cols);
  tfla::cuda::hw::cp_async_commit();
  tfla::cuda::hw::cp_async_wait<0>();
  __syncthreads();
  float acc[8][4];
  tc::zero(acc);
  const int warp = threadIdx.x >> 5;
  if constexpr (PAIRS) {  // load_b2: B fragments of n-tiles nt, nt + 1 by one ldmatrix.x4
    for (int k0 = 0; k0 < tc::kTile; k0 += 16) {
      tc::FragA<T> fa;
      tc::load_a<T, A_KM>(fa, sA, tc::kLd, warp * 16, k0);
      for (int nt = 0; nt < 8; nt += 2) {
        tc::FragB<T> b0, b1;
        tc::load_b2<T, B_KM>(b0, b1, sB, tc::kLd, nt * 8, k0);
        tc::mma<T>(acc[nt], fa, b0);
        tc::mma<T>(acc[nt + 1], fa, b1);
      }
    }
  } else {
    tc::warp_gemm<T, A_KM, B_KM>(acc, sA, warp * 16, sB, tc::kTile);
  }
  for (int nt = 0; nt < 8; ++nt)
    for (int e = 0; e < 4; ++e) c[tc::acc_row(warp, e) * tc::kTile + tc::acc_col(nt, e)] = acc[nt][e];
}

template <class T> T host_from(float x) { return static_cast<T>(x); }
template <> __nv_bfloat16 host_from<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __half host_from<__half>(float x) { return __float2half(x); }
template <class T> float host_to(T x) { return static_cast<float>(x); }
template <> float host_to<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> float host_to<__half>(__half x) { return __half2float(x); }

// n normal values of T (h) and the same values as float (f), the exact inputs of the host reference.
template <class T>
void draw(std::mt19937& rng, int n, std::vector<T>& h, std::vector<float>& f) {
  std::normal_distribution<float> nd;
  h.resize(n);
  f.resize(n);
  for (int i = 0; i < n; ++i) {
    h[i] = host_from<T>(nd(rng));
    f[i] = host_to<T>(h[i]);
  }
}

// Two random 64 x 64 tiles of T on the device (a, b) and their exact values as float on the host (fa, fb).
template <class T>
struct RandomTilePair {
  static constexpr int n = 64 * 64;
  std::vector<float> fa, fb;
  T *a = nullptr, *b = nullptr;
  explicit RandomTilePair(unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<T> ha, hb;
    draw(rng, n, ha, fa);
    draw(rng, n, hb, fb);
    if (cudaMalloc(&a, n * sizeof(T)) != cudaSuccess || cudaMalloc(&b, n * sizeof(T)) != cudaSuccess) return;
    cudaMemcpy(a, ha.data(), n * sizeof(T), cudaMemcpyHostToDevice);
    cudaMemcpy(b, hb.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  }
  bool ok() const { return a && b; }
  ~RandomTilePair() { cudaFree(a); cudaFree(b); }
};

template <class T, bool A_KM, bool B_KM, bool PAIRS = false>
void run_case(int rows, int cols) {
  const int n = tc::kTile * tc::kTile;
  std::mt19937 rng(rows * 131 + cols + (A_KM ? 7 : 0) + (B_KM ? 3 : 0));
  std::vector<T> ha, hb;
  std::vector<float> fa, fb;
  draw(rng, n, ha, fa);
  draw(rng, n, hb, fb);
  // logical value of memory element (r, c) after the zero fill
  auto A = [&](int m, int k) {  // A(m, k)
    const int r = A_KM ? m : k, c = A_KM ? k : m;
    return (r < rows && c < cols) ? static_cast<double>(fa[r * tc::kTile + c]) : 0.0;
  };
  auto B = [&](int k, int nn) {
    const int r = B_KM ? nn : k, c = B_KM ? k : nn;
    return (r < rows && c < cols) ? static_cast<double>(fb[r * tc::kTile + c]) : 0.0;
  };
  T *da, *db;
  float* dc;
  ASSERT_EQ(cudaMalloc(&da, n * sizeof(T)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&db, n * sizeof(T)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dc, n * sizeof(float)), cudaSuccess);
  cudaMemcpy(da, ha.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  cudaMemcpy(db, hb.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  cudaMemset(dc, 0xff, n * sizeof(float));
  gemm_kernel<T, A_KM, B_KM, PAIRS><<<1, tc::kThreads>>>(da, db, dc, rows, cols);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> hc(n);
  cudaMemcpy(hc.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost);
  double max_err = 0.0, max_ref = 0.0;
  for (int m = 0; m < tc::kTile; ++m)
    for (int nn = 0; nn < tc::kTile; ++nn) {
      double ref = 0.0;
      for (int k = 0; k < tc::kTile; ++k) ref += A(m, k) * B(k, nn);
      max_err = std::fmax(max_err, std::fabs(hc[m * tc::kTile + nn] - ref));
      if (std::isnan(hc[m * tc::kTile + nn])) max_err = INFINITY;
      max_ref = std::fmax(max_ref, std::fabs(ref));
    }
  // fp32 accumulation of 64 exact products: error ~ 64 * 2^-24 * |terms|
  EXPECT_LE(max_err, 1e-4 * (max_ref + 1.0)) << "rows=" << rows << " cols=" << cols << " A_KM=" << A_KM << " B_KM=" << B_KM
                                             << " PAIRS=" << PAIRS;
  cudaFree(da); cudaFree(db); cudaFree(dc);
}

template <class T>
void all_orientations() {
  for (int rows : {64, 37})
    for (int cols : {64, 40}) {
      run_case<T, true, true>(rows, cols);
      run_case<T, true, false>(rows, cols);
      run_case<T, false, true>(rows, cols);
      run_case<T, false, false>(rows, cols);
    }
}

template <class T>
void pair_orientations() {
  for (int rows : {64, 37})
    for (int cols : {64, 40}) {
      run_case<T, true, true, true>(rows, cols);
      run_case<T, true, false, true>(rows, cols);
      run_case<T, false, true, true>(rows, cols);
      run_case<T, false, false, true>(rows, cols);
    }
}

// x -> 3 parts of T in registers (pack2_split<T, 3>) and back (unpack2): part 0 is T(x) rounded to nearest, and
// the parts sum to x within ~fp32 (what the state products' "~fp32" rests on); for bf16 exactly.
template <class T>
__global__ void split3_kernel(const float* x, float* parts, int n) {
  const int i = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
  if (i + 1 >= n) return;
  uint32_t r[3];
  tc::pack2_split<T, 3>(r, 1, x[i], x[i + 1]);
  for (int p = 0; p < 3; ++p) {
    const float2 f = tc::unpack2<T>(r[p]);
    parts[3 * i + p] = f.x;
    parts[3 * (i + 1) + p] = f.y;
  }
}
// e_lo..e_hi: the binary exponents of the magnitudes drawn. The error is relative to max(|x|, floor): f16's
// later parts reach its subnormals (2^-24) for |x| < 1, where the error is absolute (~2^-25; measured 3.2e-5
// relative at |x| ~ 1e-3 on the H100, 2026-11-26), which the state products, dominated by their large elements,
// do not see; bf16 has fp32's exponent range and stays relative.
template <class T>
void split3_case(int e_lo, int e_hi, double floor, double bound) {
  const int n = 1 << 14;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> hx(n);
  for (int i = 0; i < n; ++i) hx[i] = nd(rng) * std::ldexp(1.f, e_lo + static_cast<int>(rng() % (e_hi - e_lo + 1)));
  float *dx, *dp;
  ASSERT_EQ(cudaMalloc(&dx, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dp, 3 * n * sizeof(float)), cudaSuccess);
  cudaMemcpy(dx, hx.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemset(dp, 0xff, 3 * n * sizeof(float));
  split3_kernel<T><<<n / 256, 128>>>(dx, dp, n);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> hp(3 * n);
  cudaMemcpy(hp.data(), dp, 3 * n * sizeof(float), cudaMemcpyDeviceToHost);
  double worst = 0.0;
  int wrong_hi = 0;
  for (int i = 0; i < n; ++i) {
    if (hp[3 * i] != host_to<T>(host_from<T>(hx[i]))) ++wrong_hi;
    const double sum = static_cast<double>(hp[3 * i]) + hp[3 * i + 1] + hp[3 * i + 2];
    worst = std::fmax(worst, std::fabs(sum - hx[i]) / std::fmax(std::fabs(static_cast<double>(hx[i])), floor));
    if (std::isnan(sum)) worst = INFINITY;
  }
  EXPECT_EQ(wrong_hi, 0);
  EXPECT_LE(worst, bound);
  cudaFree(dx); cudaFree(dp);
}

// Named barriers (hw::named_barrier_sync): warps w and w + 4 of 8 form pair w % 4 on barrier 1 + w % 4 (as the forward
// walk's row groups do). The upper warp of each pair writes its values only after a ~20 us spin, so a reader that
// did not wait at the barrier would see the poison instead.
__global__ void named_barrier_kernel(int* out) {
  __shared__ int buf[8][32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  buf[warp][lane] = -1;
  __syncthreads();
  if (warp >= 4) {
    const long long t0 = clock64();
    while (clock64() - t0 < 40000) {
    }
  }
  buf[warp][lane] = 100 * warp + lane;
  tc::hw::named_barrier_sync(1 + (warp & 3), 64);
  out[warp * 32 + lane] = buf[warp ^ 4][lane];
}

// ---- wgmma (sm_90a) ----------------------------------------------------------------------------------------
// One warpgroup: D (64 x 64) = A (64 x K) B (K x 64) with
//   kKMajorB:   A [m][k] and B [n][k] both K-major (K = 128: two panels, the descriptor's panel and 32-byte steps);
//   kMnMajorB:  A [m][k] K-major, B [k][n] MN-major, read from panel 1 of a 128-column tile (K = 64);
//   kRegisterA: A = X^T from registers (X [k][m] swizzled, ldmatrix.x4.trans, as the walk's K^T), B [k][n] MN-major.
// Inputs arrive through load_tile_sw128 with nrows / ncols valid (the rest must read as zero).
enum WgmmaCase { kKMajorB, kMnMajorB, kRegisterA };

// A warpgroup's m64nN accumulator (R = N / 2 registers per thread) to d[64][N] (the layout of hw/wgmma.cuh).
template <int R>
__device__ void store_wgmma_acc(float* d, const float (&acc)[R], int n) {
  const int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  for (int j = 0; j < R / 4; ++j)
    for (int e = 0; e < 4; ++e)
      d[(16 * warp + lane / 4 + 8 * (e >> 1)) * n + 8 * j + 2 * (lane % 4) + (e & 1)] = acc[4 * j + e];
}

template <class T, int CASE>
__global__ void wgmma_kernel(const T* a, const T* b, float* d, int nrows, int ncols) {
#if TFLA_HAS_WGMMA
  constexpr int K = CASE == kKMajorB ? 128 : 64, BCOLS = CASE == kKMajorB ? 128 : 128;
  __shared__ __align__(1024) unsigned char sA[64 * 128 * 2];
  __shared__ __align__(1024) unsigned char sB[64 * BCOLS * 2];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  tc::load_tile_sw128<T, 64, K == 128 ? 128 : 64, 128>(sA, a, K, nrows, ncols, tid);
  tc::load_tile_sw128<T, 64, BCOLS, 128>(sB, b, BCOLS, CASE == kKMajorB ? nrows : 64, CASE == kKMajorB ? ncols : 128, tid);
  tc::hw::cp_async_commit();
  tc::hw::cp_async_wait<0>();
  tc::hw::fence_proxy_async_smem();
  __syncthreads();
  const uint32_t a_addr = tc::hw::smem_addr(sA), b_addr = tc::hw::smem_addr(sB);
  float acc[32];
  for (int i = 0; i < 32; ++i) acc[i] = 0.f;
  uint32_t fa[K / 16][4];
  if constexpr (CASE == kRegisterA)
    for (int k0 = 0; k0 < K; k0 += 16) tc::load_a_trans_sw128(fa[k0 / 16], sA, 64, 16 * warp, k0);
  tc::hw::wgmma_fence();
  tc::hw::wgmma_fence_operands(acc);
#pragma unroll
  for (int k0 = 0; k0 < K; k0 += 16) {
    if constexpr (CASE == kKMajorB)
      tc::hw::Wgmma<T, 64>::template ss<0, 0>(acc, tc::desc_k_major(a_addr, 64, k0), tc::desc_k_major(b_addr, 64, k0), 1);
    else if constexpr (CASE == kMnMajorB)
      tc::hw::Wgmma<T, 64>::template ss<0, 1>(acc, tc::desc_k_major(a_addr, 64, k0), tc::desc_mn_major(b_addr, 64, 1, k0), 1);
    else
      tc::hw::Wgmma<T, 64>::template rs<1>(acc, fa[k0 / 16], tc::desc_mn_major(b_addr, 64, 0, k0), 1);
  }
  tc::hw::wgmma_commit();
  tc::hw::wgmma_wait<0>();
  tc::hw::wgmma_fence_operands(acc);
  store_wgmma_acc(d, acc, 64);
#else
  __trap();
#endif
}

template <class T, int CASE>
void wgmma_case(int nrows, int ncols) {
  constexpr int K = CASE == kKMajorB ? 128 : 64;
  const int na = 64 * (CASE == kKMajorB ? 128 : 64), nb = 64 * 128;
  std::mt19937 rng(nrows * 7 + ncols + 100 * CASE);
  std::vector<T> ha, hb;
  std::vector<float> fa, fb;
  draw(rng, na, ha, fa);
  draw(rng, nb, hb, fb);
  const int lda = CASE == kKMajorB ? 128 : 64;
  // logical A(m, k) and B(k, n) after the zero fill of the tiles as stored
  auto A = [&](int m, int k) -> double {
    const int r = CASE == kRegisterA ? k : m, c = CASE == kRegisterA ? m : k;
    return (r < nrows && c < ncols) ? fa[r * lda + c] : 0.0;
  };
  auto B = [&](int k, int n) -> double {
    if (CASE == kKMajorB) return (n < nrows && k < ncols) ? fb[n * 128 + k] : 0.0;
    return fb[k * 128 + (CASE == kMnMajorB ? 64 : 0) + n];
  };
  T *da, *db;
  float* dd;
  ASSERT_EQ(cudaMalloc(&da, na * sizeof(T)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&db, nb * sizeof(T)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dd, 64 * 64 * sizeof(float)), cudaSuccess);
  cudaMemcpy(da, ha.data(), na * sizeof(T), cudaMemcpyHostToDevice);
  cudaMemcpy(db, hb.data(), nb * sizeof(T), cudaMemcpyHostToDevice);
  cudaMemset(dd, 0xff, 64 * 64 * sizeof(float));
  wgmma_kernel<T, CASE><<<1, 128>>>(da, db, dd, nrows, ncols);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> hd(64 * 64);
  cudaMemcpy(hd.data(), dd, hd.size() * sizeof(float), cudaMemcpyDeviceToHost);
  double worst = 0.0;
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < 64; ++n) {
      double ref = 0.0, mag = 0.0;
      for (int k = 0; k < K; ++k) {
        ref += A(m, k) * B(k, n);
        mag += std::fabs(A(m, k) * B(k, n));
      }
      const double err = std::fabs(hd[m * 64 + n] - ref) / (mag + 1e-30);
      worst = std::isnan(hd[m * 64 + n]) ? INFINITY : std::fmax(worst, err);
    }
  // exact products, fp32 accumulation over K terms: relative to sum |a b|, ~K * 2^-24
  EXPECT_LE(worst, 2e-5) << "case " << CASE << " nrows=" << nrows << " ncols=" << ncols;
  cudaFree(da); cudaFree(db); cudaFree(dd);
}

bool has_sm90() {
  int major = 0;
  return cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess && major == 9;
}

TEST(HwLayer, WgmmaKMajorAB) {
  if (!has_sm90()) GTEST_SKIP() << "wgmma needs an sm_90 GPU";
  wgmma_case<__nv_bfloat16, kKMajorB>(64, 128);
  wgmma_case<__nv_bfloat16, kKMajorB>(45, 96);  // zero fill: rows 45.., columns 96..
  wgmma_case<__half, kKMajorB>(64, 128);
}
TEST(HwLayer, WgmmaMnMajorB) {
  if (!has_sm90()) GTEST_SKIP() << "wgmma needs an sm_90 GPU";
  wgmma_case<__nv_bfloat16, kMnMajorB>(64, 64);
  wgmma_case<__half, kMnMajorB>(50, 40);
}
TEST(HwLayer, WgmmaRegisterAFromTransposedTile) {
  if (!has_sm90()) GTEST_SKIP() << "wgmma needs an sm_90 GPU";
  wgmma_case<__nv_bfloat16, kRegisterA>(64, 64);
  wgmma_case<__half, kRegisterA>(33, 56);
}

// chunk_gradients' state products: D (64 x 32) = A (64 x 64, from registers: load_a of a padded [m][k] tile, the
// kernel's dH / V) times B = rows 32..63 of a swizzled K-major [n][k] tile (wgmma m64n32k16, the descriptor's start
// 32 rows in); and with mma.sync, D2 (64 x 64) = A times a swizzled [k][n] tile through load_b2_sw128, and D3 (64 x 64)
// = the swizzled tile read as A [m][k] through load_a_sw128 (chunk_gradients' dH) times the padded tile as B [k][n].
template <class T>
__global__ void wgmma_n32_kernel(const T* a, const T* b, float* d, float* d2, float* d3) {
#if TFLA_HAS_WGMMA
  __shared__ __align__(16) T sA[tc::kTile * tc::kLd];
  __shared__ __align__(1024) unsigned char sB[64 * 64 * 2];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  tc::load_tile_async<T>(sA, a, tc::kTile, 64, 64);
  tc::load_tile_sw128<T, 64, 64, 128>(sB, b, 64, 64, 64, tid);
  tc::hw::cp_async_commit();
  tc::hw::cp_async_wait<0>();
  tc::hw::fence_proxy_async_smem();
  __syncthreads();
  tc::FragA<T> fa[4];
  for (int k = 0; k < 4; ++k) tc::load_a<T, true>(fa[k], sA, tc::kLd, 16 * warp, 16 * k);
  float acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = 0.f;
  tc::hw::wgmma_fence_operands(acc);
  tc::hw::wgmma_fence();
  for (int k = 0; k < 4; ++k)
    tc::hw::Wgmma<T, 32>::template rs<0>(acc, fa[k].r, tc::desc_k_major(tc::hw::smem_addr(sB) + 32 * 128, 64, 16 * k), 1);
  tc::hw::wgmma_commit();
  tc::hw::wgmma_wait<0>();
  tc::hw::wgmma_fence_operands(acc);
  store_wgmma_acc(d, acc, 32);
  float acc2[8][4];
  tc::zero(acc2);
  for (int k = 0; k < 4; ++k)
    for (int nt = 0; nt < 8; nt += 2) {
      tc::FragB<T> b0, b1;
      tc::load_b2_sw128(b0.r, b1.r, sB, 64, 16 * k, 8 * nt);
      tc::mma<T>(acc2[nt], fa[k], b0);
      tc::mma<T>(acc2[nt + 1], fa[k], b1);
    }
  for (int nt = 0; nt < 8; ++nt)
    for (int e = 0; e < 4; ++e) d2[tc::acc_row(warp, e) * 64 + tc::acc_col(nt, e)] = acc2[nt][e];
  tc::zero(acc2);
  for (int k = 0; k < 4; ++k) {
    tc::FragA<T> x;
    tc::load_a_sw128(x.r, sB, 64, 16 * warp, 16 * k);
    for (int nt = 0; nt < 8; nt += 2) {
      tc::FragB<T> b0, b1;
      tc::load_b2<T, false>(b0, b1, sA, tc::kLd, 8 * nt, 16 * k);
      tc::mma<T>(acc2[nt], x, b0);
      tc::mma<T>(acc2[nt + 1], x, b1);
    }
  }
  for (int nt = 0; nt < 8; ++nt)
    for (int e = 0; e < 4; ++e) d3[tc::acc_row(warp, e) * 64 + tc::acc_col(nt, e)] = acc2[nt][e];
#else
  __trap();
#endif
}

template <class T>
void wgmma_n32_case() {
  const RandomTilePair<T> tiles(4242);
  ASSERT_TRUE(tiles.ok());
  const int n = tiles.n;
  const std::vector<float>&fa = tiles.fa, &fb = tiles.fb;
  float *dd, *dd2, *dd3;
  ASSERT_EQ(cudaMalloc(&dd, 64 * 32 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dd2, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dd3, n * sizeof(float)), cudaSuccess);
  cudaMemset(dd, 0xff, 64 * 32 * sizeof(float));
  cudaMemset(dd2, 0xff, n * sizeof(float));
  cudaMemset(dd3, 0xff, n * sizeof(float));
  wgmma_n32_kernel<T><<<1, 128>>>(tiles.a, tiles.b, dd, dd2, dd3);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> hd(64 * 32), hd2(n), hd3(n);
  cudaMemcpy(hd.data(), dd, hd.size() * sizeof(float), cudaMemcpyDeviceToHost);
  cudaMemcpy(hd2.data(), dd2, hd2.size() * sizeof(float), cudaMemcpyDeviceToHost);
  cudaMemcpy(hd3.data(), dd3, hd3.size() * sizeof(float), cudaMemcpyDeviceToHost);
  double worst = 0.0, worst2 = 0.0, worst3 = 0.0;
  for (int m = 0; m < 64; ++m) {
    for (int c = 0; c < 32; ++c) {  // D = A B^T with B rows 32 + c (K-major [n][k])
      double ref = 0.0, mag = 0.0;
      for (int k = 0; k < 64; ++k) {
        ref += static_cast<double>(fa[m * 64 + k]) * fb[(32 + c) * 64 + k];
        mag += std::fabs(static_cast<double>(fa[m * 64 + k]) * fb[(32 + c) * 64 + k]);
      }
      worst = std::isnan(hd[m * 32 + c]) ? INFINITY : std::fmax(worst, std::fabs(hd[m * 32 + c] - ref) / mag);
    }
    for (int c = 0; c < 64; ++c) {  // D2 = A B with B as [k][n]
      double ref = 0.0, mag = 0.0;
      for (int k = 0; k < 64; ++k) {
        ref += static_cast<double>(fa[m * 64 + k]) * fb[k * 64 + c];
        mag += std::fabs(static_cast<double>(fa[m * 64 + k]) * fb[k * 64 + c]);
      }
      worst2 = std::isnan(hd2[m * 64 + c]) ? INFINITY : std::fmax(worst2, std::fabs(hd2[m * 64 + c] - ref) / mag);
    }
    for (int c = 0; c < 64; ++c) {  // D3 = B as [m][k] times A as [k][n]
      double ref = 0.0, mag = 0.0;
      for (int k = 0; k < 64; ++k) {
        ref += static_cast<double>(fb[m * 64 + k]) * fa[k * 64 + c];
        mag += std::fabs(static_cast<double>(fb[m * 64 + k]) * fa[k * 64 + c]);
      }
      worst3 = std::isnan(hd3[m * 64 + c]) ? INFINITY : std::fmax(worst3, std::fabs(hd3[m * 64 + c] - ref) / mag);
    }
  }
  EXPECT_LE(worst, 2e-5);
  EXPECT_LE(worst2, 2e-5);
  EXPECT_LE(worst3, 2e-5);
  cudaFree(dd); cudaFree(dd2); cudaFree(dd3);
}

TEST(HwLayer, WgmmaN32RegisterAAndSwizzledBFragments) {
  if (!has_sm90()) GTEST_SKIP() << "wgmma needs an sm_90 GPU";
  wgmma_n32_case<__nv_bfloat16>();
  wgmma_n32_case<__half>();
}

// chunk_gradients' narrow wgmma with both operands from swizzled shared memory (K-major): the scores' m64n16
// (B = rows 16..31 of the key tile: the descriptor starts 16 rows in) and the state products' m64n32 (B = rows 32..63).
template <class T>
__global__ void wgmma_ss_narrow_kernel(const T* a, const T* b, float* d16, float* d32) {
#if TFLA_HAS_WGMMA
  __shared__ __align__(1024) unsigned char sA[64 * 64 * 2];
  __shared__ __align__(1024) unsigned char sB[64 * 64 * 2];
  const int tid = threadIdx.x;
  tc::load_tile_sw128<T, 64, 64, 128>(sA, a, 64, 64, 64, tid);
  tc::load_tile_sw128<T, 64, 64, 128>(sB, b, 64, 64, 64, tid);
  tc::hw::cp_async_commit();
  tc::hw::cp_async_wait<0>();
  tc::hw::fence_proxy_async_smem();
  __syncthreads();
  float acc16[8], acc32[16];
  for (int i = 0; i < 8; ++i) acc16[i] = 0.f;
  for (int i = 0; i < 16; ++i) acc32[i] = 0.f;
  tc::hw::wgmma_fence_operands(acc16);
  tc::hw::wgmma_fence_operands(acc32);
  tc::hw::wgmma_fence();
  const uint32_t a_addr = tc::hw::smem_addr(sA), b_addr = tc::hw::smem_addr(sB);
  for (int k0 = 0; k0 < 64; k0 += 16) {
    tc::hw::Wgmma<T, 16>::template ss<0, 0>(acc16, tc::desc_k_major(a_addr, 64, k0),
                                            tc::desc_k_major(b_addr + 16 * 128, 64, k0), k0 > 0 ? 1 : 0);
    tc::hw::Wgmma<T, 32>::template ss<0, 0>(acc32, tc::desc_k_major(a_addr, 64, k0),
                                            tc::desc_k_major(b_addr + 32 * 128, 64, k0), k0 > 0 ? 1 : 0);
  }
  tc::hw::wgmma_commit();
  tc::hw::wgmma_wait<0>();
  tc::hw::wgmma_fence_operands(acc16);
  tc::hw::wgmma_fence_operands(acc32);
  store_wgmma_acc(d16, acc16, 16);
  store_wgmma_acc(d32, acc32, 32);
#else
  __trap();
#endif
}

template <class T>
void wgmma_ss_narrow_case() {
  const RandomTilePair<T> tiles(777);
  ASSERT_TRUE(tiles.ok());
  const std::vector<float>&fa = tiles.fa, &fb = tiles.fb;
  float *d16, *d32;
  ASSERT_EQ(cudaMalloc(&d16, 64 * 16 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d32, 64 * 32 * sizeof(float)), cudaSuccess);
  cudaMemset(d16, 0xff, 64 * 16 * sizeof(float));  // NaN poison
  cudaMemset(d32, 0xff, 64 * 32 * sizeof(float));
  wgmma_ss_narrow_kernel<T><<<1, 128>>>(tiles.a, tiles.b, d16, d32);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> h16(64 * 16), h32(64 * 32);
  cudaMemcpy(h16.data(), d16, h16.size() * sizeof(float), cudaMemcpyDeviceToHost);
  cudaMemcpy(h32.data(), d32, h32.size() * sizeof(float), cudaMemcpyDeviceToHost);
  for (int width : {16, 32}) {
    const std::vector<float>& got = width == 16 ? h16 : h32;
    double worst = 0.0;
    for (int m = 0; m < 64; ++m)
      for (int c = 0; c < width; ++c) {  // D = A B^T with B rows width + c (K-major [n][k])
        double ref = 0.0, mag = 0.0;
        for (int k = 0; k < 64; ++k) {
          ref += static_cast<double>(fa[m * 64 + k]) * fb[(width + c) * 64 + k];
          mag += std::fabs(static_cast<double>(fa[m * 64 + k]) * fb[(width + c) * 64 + k]);
        }
        const float x = got[m * width + c];
        worst = std::isnan(x) ? INFINITY : std::fmax(worst, std::fabs(x - ref) / mag);
        if (std::isnan(x)) break;
      }
    EXPECT_LE(worst, 2e-5) << "m64n" << width;
  }
  cudaFree(d16); cudaFree(d32);
}

TEST(HwLayer, WgmmaNarrowBothFromSwizzledTiles) {
  if (!has_sm90()) GTEST_SKIP() << "wgmma needs an sm_90 GPU";
  wgmma_ss_narrow_case<__nv_bfloat16>();
  wgmma_ss_narrow_case<__half>();
}

TEST(HwLayer, NamedBarrierPairs) {
  int* d;
  ASSERT_EQ(cudaMalloc(&d, 256 * sizeof(int)), cudaSuccess);
  cudaMemset(d, 0xff, 256 * sizeof(int));
  named_barrier_kernel<<<1, 256>>>(d);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<int> h(256);
  cudaMemcpy(h.data(), d, 256 * sizeof(int), cudaMemcpyDeviceToHost);
  int wrong = 0;
  for (int w = 0; w < 8; ++w)
    for (int l = 0; l < 32; ++l) wrong += h[w * 32 + l] != 100 * (w ^ 4) + l;
  EXPECT_EQ(wrong, 0);
  cudaFree(d);
}

TEST(HwLayer, MmaBf16AllOrientations) { all_orientations<__nv_bfloat16>(); }
TEST(HwLayer, MmaBf16PairedBLoads) { pair_orientations<__nv_bfloat16>(); }
TEST(HwLayer, MmaF16PairedBLoads) { pair_orientations<__half>(); }
// bf16: exact (the remainder's two parts by truncation, tiles.cuh); f16: rounded parts, ~fp32 (3 x 11 bits).
TEST(HwLayer, SplitIntoThreePartsBf16) { split3_case<__nv_bfloat16>(-10, 10, 0.0, 0.0); }
TEST(HwLayer, SplitIntoThreePartsF16) { split3_case<__half>(-4, 6, 1.0, std::ldexp(1.0, -23)); }
TEST(HwLayer, MmaF16AllOrientations) { all_orientations<__half>(); }
TEST(HwLayer, Fp32EmulationAllOrientations) { all_orientations<float>(); }

}  // namespace
