// tfla-bench: time the library's mLSTM forward and backward on one shape and check both against the fp64
// reference (reference/mlstm_reference.hpp). Uses only the public API (tfla.h / tfla.hpp).
// Run `tfla-bench --help` for what it does, every option and the FLOP counts it reports.
// SPDX-License-Identifier: Apache-2.0
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tfla/tfla.h"
#include "tfla/tfla.hpp"

#ifndef TFLA_BENCH_WITH_CUDA
#define TFLA_BENCH_WITH_CUDA 0
#endif
#ifndef TFLA_BENCH_WITH_REFERENCE
#define TFLA_BENCH_WITH_REFERENCE 0
#endif

#if TFLA_BENCH_WITH_REFERENCE
#include "reference/mlstm_reference.hpp"
#endif
#if TFLA_BENCH_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace {

constexpr const char* kProg = "tfla-bench";

// ------------------------------------------------------------------------------------------------ help

void print_help() {
  std::printf(
      "tfla-bench: time the tfla mLSTM kernels (forward and backward) on one problem shape and check\n"
      "their results against the fp64 reference implementation.\n"
      "\n"
      "Usage: tfla-bench [options]\n"
      "\n"
      "With no options it picks the device: the CUDA backend on the first GPU when this build has one and a\n"
      "GPU is present, else the CPU backend on a small shape (it says which in its first line). It fills q, k, v\n"
      "with standard-normal values, the input gate with randn and the forget gate with 3 + randn (as the\n"
      "mlstm_kernels benchmarks do), runs warm-up calls, then times --reps calls of the forward and of the\n"
      "backward and reports the median time per call, tokens/s and TFLOP/s. Finally it compares h and every\n"
      "gradient with the fp64 recurrent reference (relative L2 error, ||x - ref|| / ||ref||).\n"
      "\n"
      "Problem:\n"
      "  --variant exp|sig      mLSTMexp (exponential input gate) or mLSTMsig (sigmoid input gate) [exp]\n"
      "  --normalize 0|1        sig only: 0 = h is C^T q without the normalizer n [1]\n"
      "  -B, --batch N          batch size              [cpu: 1,    cuda: 8]\n"
      "  -H, --heads N          heads                   [cpu: 2,    cuda: 8]\n"
      "  -S, --seq-len N        sequence length         [cpu: 2048, cuda: 8192]\n"
      "  --dk N                 query/key head dim      [cpu: 64,   cuda: 256]\n"
      "  --dv N                 value head dim          [cpu: 128,  cuda: 512]\n"
      "  --chunk N              chunk size L; 0 = the library's default for the shape [cpu: 64, cuda: 0]\n"
      "  --dtype f32|bf16|f16   dtype of q, k, v, h and their gradients [cpu: f32, cuda: bf16]\n"
      "  --gate-dtype f32|bf16|f16  dtype of the gate pre-activations and their gradients [f32]\n"
      "  --layout bhsd|bshd     memory order of q, k, v, h (gates: bhs|bsh); both are strided views [bhsd]\n"
      "  --state                also pass an initial state (c0, n0, m0), return the final state and\n"
      "                         its gradients (dc_last, dn_last in; dc0, dn0 out) [off]\n"
      "  --seed N               seed of the random inputs (same seed, same inputs on every device) [0]\n"
      "\n"
      "Run:\n"
      "  --device auto|cpu|cuda where to run [auto]\n"
      "  --device-index N       CUDA device ordinal [0]\n"
      "  --reps N               timed calls of each of forward and backward; the median is reported\n"
      "                         [cpu: 3, cuda: 20]\n"
      "  --warmup N             untimed calls before timing [cpu: 1, cuda: 3]\n"
      "  --check / --no-check   compare with the fp64 reference after timing [--check]\n"
      "  --check-heads N        how many (b,h) pairs to compare, spread evenly over B*H; 0 = all of them\n"
      "                         when B*H*S*Dk*Dv <= 2^27, else only (b=0,h=0) [0]. The reference costs\n"
      "                         O(S*Dk*Dv) per pair and runs on one CPU core.\n"
      "  --tol X                fail (exit 1) when an error exceeds X [none: report only; a NaN or Inf\n"
      "                         in a checked output always fails]\n"
      "  --flush-l2 / --no-flush-l2  CUDA: overwrite a scratch buffer of twice the L2 size (cudaMemsetAsync)\n"
      "                         before every call, outside the timed region, so that no call finds the\n"
      "                         previous call's data in L2 [--flush-l2]\n"
      "\n"
      "Output:\n"
      "  (default)              a readable report on stdout\n"
      "  --csv                  a CSV header line and one CSV line on stdout (notes go to stderr)\n"
      "  --json                 one JSON object on one line on stdout (notes go to stderr)\n"
      "  --no-header            with --csv: omit the header line (to append runs to one file)\n"
      "  -h, --help             this text;   --version   the library version\n"
      "\n"
      "What is measured:\n"
      "  time     the median over --reps of one tfla_mlstm_fwd / tfla_mlstm_bwd call (wall clock on CPU,\n"
      "           cudaEvent pairs on the call's stream on CUDA); fwd+bwd is the sum of the two medians.\n"
      "           Inputs, outputs and the workspace are allocated once, before timing. On CUDA the L2\n"
      "           cache is flushed before every call (--flush-l2; the memset is outside the event pair).\n"
      "           Inputs are drawn once per process (--seed) and not redrawn between calls: the kernels\n"
      "           have no data-dependent control flow, and with the flush no call reads its inputs from\n"
      "           L2. Outputs and gradients are overwritten, never accumulated, so nothing is cleared.\n"
      "  memory   (text, --json) the bytes of every device buffer tfla-bench allocates for the run, from\n"
      "           its own allocation sizes: inputs (q, k, v, gates, dh, initial/dlast state), forward\n"
      "           outputs (h, m_token, den_token, final state), gradients, and one workspace of\n"
      "           max(fwd, bwd) bytes; peak_bytes is their sum (the L2-flush scratch not counted).\n"
      "           fwd_extra_bytes = forward outputs + fwd workspace, fwdbwd_extra_bytes = forward\n"
      "           outputs + gradients + workspace: what a training step holds above its inputs.\n"
      "           --json also gives memgetinfo_delta_bytes (CUDA): the drop of cudaMemGetInfo's free\n"
      "           bytes over those allocations, as a cross-check (allocation granularity included).\n"
      "  tokens/s B*S / time.\n"
      "  TFLOP/s  a model count, not measured: per (b,h) with N = S tokens, L = min(chunk, S), c = 1/2,\n"
      "             forward  N*[4*Dk*Dv + 2*c*L*(Dk+Dv)]      (docs/spec-mlstm.md, runtime model)\n"
      "             backward N*[8*Dk*Dv + 2*c*L*(3*Dk+2*Dv)]  (the same rules applied to the backward of\n"
      "                      docs/algorithm.md: 4 state matmuls and 5 causal intra-chunk matmuls; no\n"
      "                      recomputation counted)\n"
      "           A multiply-add counts as 2 FLOPs; gate math and the normalizer are not counted.\n"
      "  error    over the checked (b,h) pairs, ||x - ref|| / ||ref|| per output, where ref is the fp64\n"
      "           recurrent reference run on the same (dtype-rounded) inputs; the absolute norm when\n"
      "           ||ref|| == 0. Outputs are poisoned (all bits set = NaN) before the first call, so an\n"
      "           element the library never writes shows up as NaN.\n"
      "\n"
      "The CPU backend computes in fp64 and is meant as an exact, portable backend, not a fast one; its\n"
      "threads follow OMP_NUM_THREADS.\n"
      "\n"
      "Exit status: 0 success, 1 a library/CUDA error or a failed check, 2 a bad command line.\n"
      "\n"
      "Examples:\n"
      "  tfla-bench                                   # default shape on the default device\n"
      "  tfla-bench --device cpu -S 512 --variant sig --normalize 0\n"
      "  tfla-bench --device cuda -B 8 -H 8 -S 8192 --dk 256 --dv 512 --dtype bf16 --chunk 128 --json\n");
}

[[noreturn]] void usage_error(const char* fmt, ...) {
  std::fprintf(stderr, "%s: error: ", kProg);
  va_list args;
  va_start(args, fmt);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
  std::fprintf(stderr, "\nRun '%s --help' for the options.\n", kProg);
  std::exit(2);
}

[[noreturn]] void runtime_error(const char* fmt, ...) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s: error: ", kProg);
  va_list args;
  va_start(args, fmt);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
  std::fprintf(stderr, "\n");
  std::exit(1);
}

void lib_check(tfla_status st, const char* what) {
  if (st != TFLA_SUCCESS)
    runtime_error("%s failed: %s (status %d): %s", what, tfla_status_string(st), static_cast<int>(st), tfla_last_error());
}

#if TFLA_BENCH_WITH_CUDA
void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) runtime_error("CUDA: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}
#endif

// ------------------------------------------------------------------------------------------------ options

enum class OutFormat { Text, Csv, Json };

struct Options {
  std::string device = "auto";
  int64_t device_index = 0;
  tfla_variant variant = TFLA_VARIANT_EXP;
  int64_t normalize = 1;
  int64_t B = -1, H = -1, S = -1, Dk = -1, Dv = -1, chunk = -1;  // -1: the device's default
  int dtype = -1;                                                  // -1: the device's default
  tfla_dtype gate_dtype = TFLA_DTYPE_F32;
  bool bshd = false;
  bool state = false;
  uint64_t seed = 0;
  int64_t reps = -1, warmup = -1;
  bool check = true;
  int64_t check_heads = 0;
  double tol = -1.0;  // < 0: none
  OutFormat out = OutFormat::Text;
  bool header = true;
  bool flush_l2 = true;
};

int64_t parse_int(const std::string& opt, const std::string& s, int64_t min_value) {
  if (s.empty()) usage_error("option %s needs a number, got an empty value", opt.c_str());
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '\0') usage_error("option %s needs an integer, got '%s'", opt.c_str(), s.c_str());
  if (errno == ERANGE) usage_error("option %s: '%s' is out of range", opt.c_str(), s.c_str());
  if (v < 0 && min_value >= 0) usage_error("option %s: negative values are not allowed (got %lld)", opt.c_str(), v);
  if (v < min_value) usage_error("option %s must be >= %lld (got %lld)", opt.c_str(), static_cast<long long>(min_value), v);
  return v;
}

uint64_t parse_u64(const std::string& opt, const std::string& s) {
  if (s.empty() || s[0] == '-') usage_error("option %s needs a non-negative integer, got '%s'", opt.c_str(), s.c_str());
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '\0') usage_error("option %s needs an integer, got '%s'", opt.c_str(), s.c_str());
  if (errno == ERANGE) usage_error("option %s: '%s' is out of range", opt.c_str(), s.c_str());
  return v;
}

double parse_double(const std::string& opt, const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end == s.c_str() || *end != '\0' || !std::isfinite(v))
    usage_error("option %s needs a number, got '%s'", opt.c_str(), s.c_str());
  if (v < 0) usage_error("option %s must be >= 0 (got %s)", opt.c_str(), s.c_str());
  return v;
}

tfla_dtype parse_dtype(const std::string& opt, const std::string& s) {
  if (s == "f32" || s == "fp32" || s == "float32") return TFLA_DTYPE_F32;
  if (s == "bf16" || s == "bfloat16") return TFLA_DTYPE_BF16;
  if (s == "f16" || s == "fp16" || s == "float16") return TFLA_DTYPE_F16;
  usage_error("option %s: unknown dtype '%s' (expected f32, bf16 or f16)", opt.c_str(), s.c_str());
}

const char* dtype_name(int d) {
  switch (d) {
    case TFLA_DTYPE_F32: return "f32";
    case TFLA_DTYPE_BF16: return "bf16";
    case TFLA_DTYPE_F16: return "f16";
    default: return "?";
  }
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string inline_value;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0) {
      const size_t eq = a.find('=');
      if (eq != std::string::npos) {
        inline_value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_inline = true;
      }
    }
    auto value = [&]() -> std::string {
      if (has_inline) return inline_value;
      if (i + 1 >= argc) usage_error("option %s needs a value", a.c_str());
      return argv[++i];
    };
    auto flag = [&]() {
      if (has_inline) usage_error("option %s takes no value", a.c_str());
    };
    if (a == "-h" || a == "--help") {
      flag();
      print_help();
      std::exit(0);
    } else if (a == "--version") {
      flag();
      std::printf("tfla-bench (tfla %s, CUDA backend %s)\n", tfla_version_string(), tfla_has_cuda() ? "built" : "not built");
      std::exit(0);
    } else if (a == "--variant") {
      const std::string v = value();
      if (v == "exp") o.variant = TFLA_VARIANT_EXP;
      else if (v == "sig") o.variant = TFLA_VARIANT_SIG;
      else usage_error("option --variant: expected exp or sig, got '%s'", v.c_str());
    } else if (a == "--normalize") {
      o.normalize = parse_int(a, value(), 0);
      if (o.normalize > 1) usage_error("option --normalize: expected 0 or 1, got %lld", static_cast<long long>(o.normalize));
    } else if (a == "-B" || a == "--batch") {
      o.B = parse_int(a, value(), 1);
    } else if (a == "-H" || a == "--heads") {
      o.H = parse_int(a, value(), 1);
    } else if (a == "-S" || a == "--seq-len") {
      o.S = parse_int(a, value(), 1);
    } else if (a == "--dk") {
      o.Dk = parse_int(a, value(), 1);
    } else if (a == "--dv") {
      o.Dv = parse_int(a, value(), 1);
    } else if (a == "--chunk") {
      o.chunk = parse_int(a, value(), 0);
    } else if (a == "--dtype") {
      o.dtype = parse_dtype(a, value());
    } else if (a == "--gate-dtype") {
      o.gate_dtype = parse_dtype(a, value());
    } else if (a == "--layout") {
      const std::string v = value();
      if (v == "bhsd") o.bshd = false;
      else if (v == "bshd") o.bshd = true;
      else usage_error("option --layout: expected bhsd or bshd, got '%s'", v.c_str());
    } else if (a == "--state") {
      flag();
      o.state = true;
    } else if (a == "--seed") {
      o.seed = parse_u64(a, value());
    } else if (a == "--device") {
      o.device = value();
      if (o.device != "auto" && o.device != "cpu" && o.device != "cuda")
        usage_error("option --device: expected auto, cpu or cuda, got '%s'", o.device.c_str());
    } else if (a == "--device-index") {
      o.device_index = parse_int(a, value(), 0);
      if (o.device_index > 1024) usage_error("option --device-index: %lld is not a plausible device ordinal",
                                             static_cast<long long>(o.device_index));
    } else if (a == "--reps") {
      o.reps = parse_int(a, value(), 1);
    } else if (a == "--warmup") {
      o.warmup = parse_int(a, value(), 0);
    } else if (a == "--check") {
      flag();
      o.check = true;
    } else if (a == "--no-check") {
      flag();
      o.check = false;
    } else if (a == "--check-heads") {
      o.check_heads = parse_int(a, value(), 0);
    } else if (a == "--tol") {
      o.tol = parse_double(a, value());
    } else if (a == "--csv") {
      flag();
      o.out = OutFormat::Csv;
    } else if (a == "--json") {
      flag();
      o.out = OutFormat::Json;
    } else if (a == "--no-header") {
      flag();
      o.header = false;
    } else if (a == "--flush-l2") {
      flag();
      o.flush_l2 = true;
    } else if (a == "--no-flush-l2") {
      flag();
      o.flush_l2 = false;
    } else if (a.size() > 1 && a[0] == '-') {
      usage_error("unknown option '%s'", argv[i]);
    } else {
      usage_error("unexpected argument '%s' (all options start with -)", argv[i]);
    }
  }
  if (o.variant == TFLA_VARIANT_EXP && o.normalize == 0)
    usage_error("--normalize 0 is defined only for --variant sig (mLSTMexp always normalizes)");
  return o;
}

// ------------------------------------------------------------------------------------------------ dtypes

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float from_bf16(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

inline uint16_t to_f16(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return static_cast<uint16_t>(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (ax < 0x38800000u) {                                                // below 2^-14: subnormal or zero
    if (ax < 0x33000000u) return sign;                                   // below 2^-25
    const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  const uint32_t v = ax - 0x38000000u;
  uint32_t r = v >> 13;
  const uint32_t rem = v & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}
inline float from_f16(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float f = std::ldexp(static_cast<float>(m), -24);
    return sign ? -f : f;
  }
  if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
  return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

size_t dtype_bytes(int d) { return d == TFLA_DTYPE_F32 ? 4 : 2; }

// ------------------------------------------------------------------------------------------------ buffers

// An allocator whose resize() leaves the bytes uninitialized (default-init instead of value-init), so that
// make_buf sets a large buffer's bytes (and takes its page faults) on all threads instead of one.
template <class T>
struct UninitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U>&) noexcept {}
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0)
      ::new (static_cast<void*>(p)) U;
    else
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// Run fn(block) for block = 0 .. nblocks-1 on all hardware threads (or `nthreads` when > 0). The blocks are
// handed out dynamically: fn's result must not depend on which thread runs a block.
template <class Fn>
void parallel_blocks(size_t nblocks, Fn&& fn, size_t nthreads = 0) {
  if (nthreads == 0) nthreads = std::max(1u, std::thread::hardware_concurrency());
  nthreads = std::min(nthreads, nblocks);
  if (nthreads <= 1) {
    for (size_t blk = 0; blk < nblocks; ++blk) fn(blk);
    return;
  }
  std::atomic<size_t> next{0};
  auto work = [&]() {
    for (size_t blk; (blk = next.fetch_add(1, std::memory_order_relaxed)) < nblocks;) fn(blk);
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < nthreads; ++t) threads.emplace_back(work);
  work();
  for (auto& th : threads) th.join();
}

// One tensor: a strided host copy in the layout the library sees, and (CUDA) its device copy.
struct Buf {
  const char* name = "";
  int rank = 0;
  int64_t dims[4] = {1, 1, 1, 1};
  int64_t stride[4] = {0, 0, 0, 0};
  int dtype = TFLA_DTYPE_F32;
  size_t numel = 0;
  std::vector<unsigned char, UninitAllocator<unsigned char>> host;
  void* dev = nullptr;

  size_t bytes() const { return host.size(); }
  int64_t offset(const int64_t* idx) const {
    int64_t o = 0;
    for (int d = 0; d < rank; ++d) o += idx[d] * stride[d];
    return o;
  }
  double load(int64_t off) const {
    const unsigned char* p = host.data() + static_cast<size_t>(off) * dtype_bytes(dtype);
    if (dtype == TFLA_DTYPE_F32) {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    uint16_t b;
    std::memcpy(&b, p, 2);
    return dtype == TFLA_DTYPE_BF16 ? from_bf16(b) : from_f16(b);
  }
  void store(int64_t off, float v) {
    unsigned char* p = host.data() + static_cast<size_t>(off) * dtype_bytes(dtype);
    if (dtype == TFLA_DTYPE_F32) {
      std::memcpy(p, &v, 4);
      return;
    }
    const uint16_t b = dtype == TFLA_DTYPE_BF16 ? to_bf16(v) : to_f16(v);
    std::memcpy(p, &b, 2);
  }
  tfla_tensor view() const {
    tfla_tensor t{};
    t.data = dev != nullptr ? dev : const_cast<unsigned char*>(host.data());
    t.dtype = dtype;
    for (int d = 0; d < 4; ++d) t.stride[d] = stride[d];
    return t;
  }
};

// Make a buffer of logical shape `dims` (rank 2..4). `seq_major` swaps the memory order of dims 1 and 2
// ((B,H,S,D) viewed over (B,S,H,D) memory, (B,H,S) over (B,S,H)). Outputs are poisoned with all-ones bits.
Buf make_buf(const char* name, int dtype, std::initializer_list<int64_t> shape, bool seq_major, bool poison) {
  Buf b;
  b.name = name;
  b.dtype = dtype;
  b.rank = static_cast<int>(shape.size());
  int d = 0;
  for (int64_t s : shape) b.dims[d++] = s;
  int order[4] = {0, 1, 2, 3};  // memory order, outermost first
  if (seq_major && b.rank >= 3) std::swap(order[1], order[2]);
  int64_t st = 1;
  for (int k = b.rank - 1; k >= 0; --k) {
    b.stride[order[k]] = st;
    st *= b.dims[order[k]];
  }
  b.numel = static_cast<size_t>(st);
  b.host.resize(b.numel * dtype_bytes(dtype));  // uninitialized: set in parallel below
  constexpr size_t kChunk = size_t{1} << 22;
  const size_t n = b.host.size();
  parallel_blocks((n + kChunk - 1) / kChunk, [&](size_t blk) {
    const size_t lo = blk * kChunk;
    std::memset(b.host.data() + lo, poison ? 0xff : 0x00, std::min(kChunk, n - lo));
  });
  return b;
}

// The SplitMix64 output function (a bijective 64-bit mixer).
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// ln(x) for finite x > 0 in float (Cephes logf: exponent split, degree-9 polynomial; about 1 ulp), written
// without calls or branches so that the compiler vectorizes the loop that uses it.
inline float log_f32(float x) {
  uint32_t u = f32_bits(x);
  int32_t e = static_cast<int32_t>(u >> 23) - 126;       // x = m * 2^e with m in [0.5, 1)
  const uint32_t mb = (u & 0x7fffffu) | 0x3f000000u;
  const uint32_t small = mb < 0x3f3504f3u ? 1u : 0u;     // m < sqrt(1/2): m in [sqrt(1/2), sqrt(2)) after
  e -= static_cast<int32_t>(small);
  const float m = bits_f32(mb + (small << 23));           // 2 m when small (exponent + 1)
  const float xm = m - 1.f, z = xm * xm;
  float p = 7.0376836292e-2f;
  p = p * xm - 1.1514610310e-1f;
  p = p * xm + 1.1676998740e-1f;
  p = p * xm - 1.2420140846e-1f;
  p = p * xm + 1.4249322787e-1f;
  p = p * xm - 1.6668057665e-1f;
  p = p * xm + 2.0000714765e-1f;
  p = p * xm - 2.4999993993e-1f;
  p = p * xm + 3.3333331174e-1f;
  const float fe = static_cast<float>(e);
  float y = p * xm * z - 2.12194440e-4f * fe - 0.5f * z;
  return xm + y + 0.693359375f * fe;
}

// sqrt(y) for finite y >= 0 as y * (1 / sqrt(y)) (bit-trick estimate, three Newton steps; about 1 ulp; exactly
// 0 for 0): std::sqrt's errno path would keep the compiler from vectorizing the loop.
inline float sqrt_f32(float y) {
  float x = bits_f32(0x5f3759dfu - (f32_bits(y) >> 1));  // ~1/sqrt(y), within 3.5 %
  const float hy = 0.5f * y;
  x = x * (1.5f - hy * x * x);
  x = x * (1.5f - hy * x * x);
  x = x * (1.5f - hy * x * x);
  return y * x;
}

// cos(2 pi t) and sin(2 pi t) for t in [0, 1): quadrant from t, Cephes sinf/cosf polynomials on
// [-pi/4, pi/4] (about 1e-7 absolute). Branch-free, like log_f32.
inline void sincos_2pi_f32(float t, float& c, float& s) {
  const float t4 = t * 4.f;
  const int32_t n = static_cast<int32_t>(t4 + 0.5f);    // nearest quadrant, 0..4
  const float a = (t4 - static_cast<float>(n)) * 1.5707963267948966f;  // in [-pi/4, pi/4]
  const float a2 = a * a;
  const float sa = a + a * a2 * (-1.6666654611e-1f + a2 * (8.3321608736e-3f + a2 * -1.9515295891e-4f));
  const float ca = 1.f - 0.5f * a2 +
                   a2 * a2 * (4.166664568298827e-2f + a2 * (-1.388731625493765e-3f + a2 * 2.443315711809948e-5f));
  // quadrant n: odd n swaps sin and cos; cos is negative for n = 1, 2 and sin for n = 2, 3 (bit selects and
  // sign flips, so that the loop has no branches)
  const uint32_t un = static_cast<uint32_t>(n), swap = 0u - (un & 1u);
  const uint32_t sb = f32_bits(sa), cb = f32_bits(ca);
  c = bits_f32(((sb & swap) | (cb & ~swap)) ^ (((un + 1u) & 2u) << 30));
  s = bits_f32(((cb & swap) | (sb & ~swap)) ^ ((un & 2u) << 30));
}

// Fill with mean + std * N(0,1), rounded to the buffer's dtype. Deterministic in (seed, stream, logical
// index): element i is the (i % 2)-th output of Box-Muller on the 64-bit hash of (seed, stream, i / 2), so
// the values do not depend on the layout, the number of threads (`nthreads`, 0 = all hardware threads) or
// how the work is split. Box-Muller in float on 24-bit uniforms (|z| <= 5.8), enough for bf16/f16/f32 inputs.
void fill_normal(Buf& b, uint64_t seed, uint64_t stream, float mean, float stddev, size_t nthreads = 0) {
  constexpr size_t kTile = 512;            // elements per tile (even): the math runs on whole tiles
  constexpr size_t kTilesPerBlock = 128;   // a work item: 64 Ki elements
  constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;
  const uint64_t key = mix64(mix64(seed ^ 0x6a09e667f3bcc909ull) ^ (stream * kGolden));
  const size_t ntiles = (b.numel + kTile - 1) / kTile;
  const size_t nblocks = (ntiles + kTilesPerBlock - 1) / kTilesPerBlock;
  // The common case: the memory order is the logical order (offset == logical index).
  bool contiguous = true;
  {
    int64_t st = 1;
    for (int d = b.rank - 1; d >= 0; --d) {
      if (b.dims[d] != 1 && b.stride[d] != st) contiguous = false;
      st *= b.dims[d];
    }
  }
  const size_t esize = dtype_bytes(b.dtype);
  parallel_blocks(nblocks, [&](size_t blk) {
    float u1[kTile / 2], u2[kTile / 2], z[kTile];
    const size_t t_end = std::min(ntiles, (blk + 1) * kTilesPerBlock);
    for (size_t tile = blk * kTilesPerBlock; tile < t_end; ++tile) {
      const size_t lo = tile * kTile, hi = std::min(b.numel, lo + kTile);
      const uint64_t p0 = lo / 2;
      for (size_t j = 0; j < kTile / 2; ++j) {
        const uint64_t x = mix64(key + (p0 + j) * kGolden);
        u1[j] = static_cast<float>(static_cast<int32_t>(x >> 40) + 1) * 0x1.0p-24f;        // (0, 1]
        u2[j] = static_cast<float>(static_cast<int32_t>((x >> 16) & 0xffffffu)) * 0x1.0p-24f;  // [0, 1)
      }
      for (size_t j = 0; j < kTile / 2; ++j) {  // whole tiles only: the same code for every element
        const float r = sqrt_f32(-2.f * log_f32(u1[j]));
        float c, s;
        sincos_2pi_f32(u2[j], c, s);
        z[2 * j] = mean + stddev * (r * c);
        z[2 * j + 1] = mean + stddev * (r * s);
      }
      const size_t n = hi - lo;
      if (contiguous) {
        unsigned char* out = b.host.data() + lo * esize;
        if (b.dtype == TFLA_DTYPE_F32) {
          std::memcpy(out, z, n * 4);
        } else {
          uint16_t h[kTile];
          if (b.dtype == TFLA_DTYPE_BF16)
            for (size_t j = 0; j < n; ++j) h[j] = to_bf16(z[j]);
          else
            for (size_t j = 0; j < n; ++j) h[j] = to_f16(z[j]);
          std::memcpy(out, h, n * 2);
        }
        continue;
      }
      // Strided: the logical index lo split once per tile, then counted up with its memory offset.
      int64_t idx[4] = {0, 0, 0, 0};
      size_t rest = lo;
      for (int d = b.rank - 1; d >= 0; --d) {
        idx[d] = static_cast<int64_t>(rest % static_cast<size_t>(b.dims[d]));
        rest /= static_cast<size_t>(b.dims[d]);
      }
      int64_t off = b.offset(idx);
      for (size_t j = 0; j < n; ++j) {
        b.store(off, z[j]);
        int d = b.rank - 1;
        ++idx[d];
        off += b.stride[d];
        while (d > 0 && idx[d] == b.dims[d]) {
          off -= b.dims[d] * b.stride[d];
          idx[d] = 0;
          --d;
          ++idx[d];
          off += b.stride[d];
        }
      }
    }
  }, nthreads);
}

// ------------------------------------------------------------------------------------------------ progress

// A one-line progress indicator on stderr for runs longer than about a second: \r-updated on a terminal,
// one line per phase otherwise (CI logs).
class Progress {
 public:
  Progress() : tty_(isatty(STDERR_FILENO) != 0), start_(clock::now()), last_(start_) {}
  void update(const std::string& phase, int64_t i = -1, int64_t n = -1) {
    const auto now = clock::now();
    const double elapsed = secs(start_, now);
    if (elapsed < 1.0) return;
    if (tty_) {
      if (phase == phase_ && secs(last_, now) < 0.1) return;
      char buf[200];
      if (n > 0)
        std::snprintf(buf, sizeof buf, "[%s %6.1f s] %s %lld/%lld", kProg, elapsed, phase.c_str(),
                      static_cast<long long>(i), static_cast<long long>(n));
      else
        std::snprintf(buf, sizeof buf, "[%s %6.1f s] %s", kProg, elapsed, phase.c_str());
      std::fprintf(stderr, "\r%-78s", buf);
      std::fflush(stderr);
      shown_ = true;
    } else if (phase != phase_) {
      if (n > 0)
        std::fprintf(stderr, "[%s %6.1f s] %s %lld/%lld\n", kProg, elapsed, phase.c_str(), static_cast<long long>(i),
                     static_cast<long long>(n));
      else
        std::fprintf(stderr, "[%s %6.1f s] %s\n", kProg, elapsed, phase.c_str());
    }
    phase_ = phase;
    last_ = now;
  }
  void done() {
    if (shown_) std::fprintf(stderr, "\r%-78s\r", "");
    shown_ = false;
  }

 private:
  using clock = std::chrono::steady_clock;
  static double secs(clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
  bool tty_;
  bool shown_ = false;
  clock::time_point start_, last_;
  std::string phase_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ------------------------------------------------------------------------------------------------ errors

struct ErrAcc {
  const char* name;
  double diff2 = 0, ref2 = 0;
  int64_t nonfinite = 0;
  bool used = false;
  double value() const { return ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2); }
};

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse_args(argc, argv);
  std::FILE* notes = opt.out == OutFormat::Text ? stdout : stderr;

  // ---- device
  bool use_cuda = false;
  std::string device_desc, first_line;
  int cuda_devices = 0;
  [[maybe_unused]] int64_t l2_bytes = 0;  // CUDA: the device's L2 cache size
  std::string cuda_reason;
#if TFLA_BENCH_WITH_CUDA
  if (tfla_has_cuda()) {
    const cudaError_t e = cudaGetDeviceCount(&cuda_devices);
    if (e != cudaSuccess) {
      cuda_reason = std::string("no CUDA device found: ") + cudaGetErrorString(e);
      cuda_devices = 0;
      (void)cudaGetLastError();
    } else if (cuda_devices == 0) {
      cuda_reason = "no CUDA device found";
    }
  } else {
    cuda_reason = "this build of tfla has no CUDA backend";
  }
#else
  cuda_reason = tfla_has_cuda() ? "tfla-bench was built without the CUDA runtime"
                                : "this build of tfla has no CUDA backend";
#endif
  if (opt.device == "cuda") {
    if (cuda_devices == 0) {
      if (tfla_has_cuda()) runtime_error("--device cuda: %s", cuda_reason.c_str());
      runtime_error("--device cuda: %s. Build with the cuda preset on a machine with a GPU (scripts/bench.sh "
                    "does this when it finds nvcc and nvidia-smi lists a GPU).", cuda_reason.c_str());
    }
    if (opt.device_index >= cuda_devices)
      runtime_error("--device-index %lld: only %d CUDA device(s) present", static_cast<long long>(opt.device_index), cuda_devices);
    use_cuda = true;
  } else if (opt.device == "auto") {
    use_cuda = cuda_devices > opt.device_index;
  }
#if TFLA_BENCH_WITH_CUDA
  if (use_cuda) {
    cuda_check(cudaSetDevice(static_cast<int>(opt.device_index)), "cudaSetDevice");
    cudaDeviceProp prop;
    cuda_check(cudaGetDeviceProperties(&prop, static_cast<int>(opt.device_index)), "cudaGetDeviceProperties");
    char buf[300];
    std::snprintf(buf, sizeof buf, "CUDA device %lld: %s (sm_%d%d, %d SMs)", static_cast<long long>(opt.device_index),
                  prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    device_desc = buf;
    l2_bytes = prop.l2CacheSize;
  }
#endif
  if (!use_cuda) {
    char buf[200];
    const char* omp = std::getenv("OMP_NUM_THREADS");
    std::snprintf(buf, sizeof buf, "CPU, %u hardware threads%s%s", std::thread::hardware_concurrency(),
                  omp ? ", OMP_NUM_THREADS=" : "", omp ? omp : "");
    device_desc = buf;
  }
  if (use_cuda) {
    first_line = "tfla-bench: CUDA backend on " + device_desc;
  } else if (opt.device == "cpu") {
    first_line = "tfla-bench: CPU backend (--device cpu): exact fp64 math, not a GPU speed figure";
  } else {
    first_line = "tfla-bench: no usable GPU (" + cuda_reason + "), so this runs the CPU backend on the small "
                 "default shape. The CPU backend computes in fp64: exact, but not a GPU speed figure.";
  }
  std::fprintf(notes, "%s\n", first_line.c_str());
  std::fflush(notes);

  // ---- defaults per device
  const int64_t B = opt.B > 0 ? opt.B : (use_cuda ? 8 : 1);
  const int64_t H = opt.H > 0 ? opt.H : (use_cuda ? 8 : 2);
  const int64_t S = opt.S > 0 ? opt.S : (use_cuda ? 8192 : 2048);
  const int64_t Dk = opt.Dk > 0 ? opt.Dk : (use_cuda ? 256 : 64);
  const int64_t Dv = opt.Dv > 0 ? opt.Dv : (use_cuda ? 512 : 128);
  const int64_t chunk_opt = opt.chunk >= 0 ? opt.chunk : (use_cuda ? 0 : 64);
  const int dtype = opt.dtype >= 0 ? opt.dtype : (use_cuda ? TFLA_DTYPE_BF16 : TFLA_DTYPE_F32);
  const int gdtype = opt.gate_dtype;
  const int64_t reps = opt.reps > 0 ? opt.reps : (use_cuda ? 20 : 3);
  const int64_t warmup = opt.warmup >= 0 ? opt.warmup : (use_cuda ? 3 : 1);
  const bool seq_major = opt.bshd;
  const bool sig = opt.variant == TFLA_VARIANT_SIG;

  {  // sizes must not overflow the element counts
    const double big = static_cast<double>(B) * H * S * std::max(Dk, Dv) + static_cast<double>(B) * H * Dk * Dv;
    if (big > 9.0e15) usage_error("the shape is too large (%.3g elements per tensor)", big);
  }

  tfla_mlstm_problem prob = tfla::make_problem(B, H, S, Dk, Dv, opt.variant, opt.normalize != 0);
  prob.chunk_size = chunk_opt;
  prob.device_type = use_cuda ? TFLA_DEVICE_CUDA : TFLA_DEVICE_CPU;
  prob.device_index = static_cast<int32_t>(opt.device_index);
  int64_t chunk = chunk_opt;
  if (chunk == 0) lib_check(tfla_mlstm_default_chunk_size(&prob, &chunk), "tfla_mlstm_default_chunk_size");

  // ---- buffers
  Progress progress;
  std::vector<Buf*> all;
  Buf q, k, v, ig, fg, c0, n0, m0, h, c_last, n_last, m_last, m_tok, den_tok;
  Buf dh, dc_last, dn_last, dq, dk, dv, dig, dfg, dc0, dn0;
  try {
    progress.update("generating inputs");
    const int F32 = TFLA_DTYPE_F32;
    q = make_buf("q", dtype, {B, H, S, Dk}, seq_major, false);
    k = make_buf("k", dtype, {B, H, S, Dk}, seq_major, false);
    v = make_buf("v", dtype, {B, H, S, Dv}, seq_major, false);
    ig = make_buf("igate", gdtype, {B, H, S}, seq_major, false);
    fg = make_buf("fgate", gdtype, {B, H, S}, seq_major, false);
    h = make_buf("h", dtype, {B, H, S, Dv}, seq_major, true);
    m_tok = make_buf("m_token", F32, {B, H, S}, seq_major, true);
    den_tok = make_buf("den_token", F32, {B, H, S}, seq_major, true);
    dh = make_buf("dh", dtype, {B, H, S, Dv}, seq_major, false);
    dq = make_buf("dq", dtype, {B, H, S, Dk}, seq_major, true);
    dk = make_buf("dk", dtype, {B, H, S, Dk}, seq_major, true);
    dv = make_buf("dv", dtype, {B, H, S, Dv}, seq_major, true);
    dig = make_buf("digate", gdtype, {B, H, S}, seq_major, true);
    dfg = make_buf("dfgate", gdtype, {B, H, S}, seq_major, true);
    fill_normal(q, opt.seed, 1, 0.f, 1.f);
    fill_normal(k, opt.seed, 2, 0.f, 1.f);
    fill_normal(v, opt.seed, 3, 0.f, 1.f);
    fill_normal(ig, opt.seed, 4, 0.f, 1.f);
    fill_normal(fg, opt.seed, 5, 3.f, 1.f);
    fill_normal(dh, opt.seed, 6, 0.f, 1.f);
    all = {&q, &k, &v, &ig, &fg, &h, &m_tok, &den_tok, &dh, &dq, &dk, &dv, &dig, &dfg};
    if (opt.state) {
      c0 = make_buf("c0", F32, {B, H, Dk, Dv}, false, false);
      n0 = make_buf("n0", F32, {B, H, Dk}, false, false);
      m0 = make_buf("m0", F32, {B, H}, false, false);
      c_last = make_buf("c_last", F32, {B, H, Dk, Dv}, false, true);
      n_last = make_buf("n_last", F32, {B, H, Dk}, false, true);
      m_last = make_buf("m_last", F32, {B, H}, false, true);
      dc_last = make_buf("dc_last", F32, {B, H, Dk, Dv}, false, false);
      dn_last = make_buf("dn_last", F32, {B, H, Dk}, false, false);
      dc0 = make_buf("dc0", F32, {B, H, Dk, Dv}, false, true);
      dn0 = make_buf("dn0", F32, {B, H, Dk}, false, true);
      fill_normal(c0, opt.seed, 7, 0.f, 1.f);
      fill_normal(n0, opt.seed, 8, 0.f, 1.f);
      fill_normal(m0, opt.seed, 9, 0.f, 1.f);
      fill_normal(dc_last, opt.seed, 10, 0.f, 1.f);
      fill_normal(dn_last, opt.seed, 11, 0.f, 1.f);
      for (Buf* b : {&c0, &n0, &m0, &c_last, &n_last, &m_last, &dc_last, &dn_last, &dc0, &dn0}) all.push_back(b);
    }
  } catch (const std::bad_alloc&) {
    progress.done();
    runtime_error("out of host memory allocating the tensors for B=%lld H=%lld S=%lld Dk=%lld Dv=%lld",
                  static_cast<long long>(B), static_cast<long long>(H), static_cast<long long>(S),
                  static_cast<long long>(Dk), static_cast<long long>(Dv));
  }
  size_t tensor_bytes = 0;
  for (const Buf* b : all) tensor_bytes += b->bytes();

  void* stream = nullptr;
#if TFLA_BENCH_WITH_CUDA
  cudaStream_t cstream = nullptr;
  size_t free_before = 0;  // cudaMemGetInfo before tfla-bench's allocations (a cross-check of its own sum)
  if (use_cuda) {
    progress.update("copying inputs to the GPU");
    {
      size_t total = 0;
      cuda_check(cudaMemGetInfo(&free_before, &total), "cudaMemGetInfo");
    }
    cuda_check(cudaStreamCreateWithFlags(&cstream, cudaStreamNonBlocking), "cudaStreamCreate");
    stream = cstream;
    for (Buf* b : all) {
      cuda_check(cudaMalloc(&b->dev, b->bytes()), (std::string("cudaMalloc of ") + b->name).c_str());
      cuda_check(cudaMemcpy(b->dev, b->host.data(), b->bytes(), cudaMemcpyHostToDevice), "cudaMemcpy to the GPU");
    }
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }
#endif

  // ---- params
  tfla_mlstm_fwd_params fp{};
  fp.problem = prob;
  fp.q = q.view(), fp.k = k.view(), fp.v = v.view(), fp.igate = ig.view(), fp.fgate = fg.view();
  fp.h = h.view();
  fp.m_token = m_tok.view(), fp.den_token = den_tok.view();
  if (opt.state) {
    fp.c0 = c0.view(), fp.n0 = n0.view(), fp.m0 = m0.view();
    fp.c_last = c_last.view(), fp.n_last = n_last.view(), fp.m_last = m_last.view();
  }
  tfla_mlstm_bwd_params bp{};
  bp.problem = prob;
  bp.q = fp.q, bp.k = fp.k, bp.v = fp.v, bp.igate = fp.igate, bp.fgate = fp.fgate;
  bp.c0 = fp.c0, bp.n0 = fp.n0, bp.m0 = fp.m0;
  bp.m_token = fp.m_token, bp.den_token = fp.den_token;
  bp.dh = dh.view();
  bp.dq = dq.view(), bp.dk = dk.view(), bp.dv = dv.view(), bp.digate = dig.view(), bp.dfgate = dfg.view();
  if (opt.state) {
    bp.dc_last = dc_last.view(), bp.dn_last = dn_last.view();
    bp.dc0 = dc0.view(), bp.dn0 = dn0.view();
  }

  size_t fws = 0, bws = 0;
  lib_check(tfla_mlstm_fwd_workspace_size(&fp, &fws), "tfla_mlstm_fwd_workspace_size");
  lib_check(tfla_mlstm_bwd_workspace_size(&bp, &bws), "tfla_mlstm_bwd_workspace_size");
  const size_t ws_bytes = std::max(fws, bws);
  void* ws = nullptr;
  if (ws_bytes > 0) {
    if (use_cuda) {
#if TFLA_BENCH_WITH_CUDA
      cuda_check(cudaMalloc(&ws, ws_bytes), "cudaMalloc of the workspace");
#endif
    } else {
      ws = std::aligned_alloc(256, (ws_bytes + 255) / 256 * 256);
      if (ws == nullptr) runtime_error("out of host memory allocating a %zu-byte workspace", ws_bytes);
    }
  }

  // ---- memory: tfla-bench's own device allocations for the run (see --help)
  size_t io_bytes = 0, fwd_out_bytes = 0, grad_bytes = 0;
  for (const Buf* b : {&q, &k, &v, &ig, &fg, &dh, &c0, &n0, &m0, &dc_last, &dn_last}) io_bytes += b->bytes();
  for (const Buf* b : {&h, &m_tok, &den_tok, &c_last, &n_last, &m_last}) fwd_out_bytes += b->bytes();
  for (const Buf* b : {&dq, &dk, &dv, &dig, &dfg, &dc0, &dn0}) grad_bytes += b->bytes();
  const size_t peak_bytes = tensor_bytes + ws_bytes;
  const size_t fwd_extra_bytes = fwd_out_bytes + fws;
  const size_t fwdbwd_extra_bytes = fwd_out_bytes + grad_bytes + ws_bytes;
  long long memgetinfo_delta = -1;  // -1: not measured (CPU)
  [[maybe_unused]] void* flush_buf = nullptr;
  size_t flush_bytes = 0;
#if TFLA_BENCH_WITH_CUDA
  if (use_cuda) {
    size_t free_after = 0, total = 0;
    cuda_check(cudaMemGetInfo(&free_after, &total), "cudaMemGetInfo");
    memgetinfo_delta = static_cast<long long>(free_before) - static_cast<long long>(free_after);
    if (opt.flush_l2) {
      // Twice the L2 size (at least 16 MiB), rounded up to 1 MiB; allocated after the measurement above.
      const size_t want = std::max<size_t>(2 * static_cast<size_t>(std::max<int64_t>(l2_bytes, 0)), size_t{16} << 20);
      flush_bytes = (want + (size_t{1} << 20) - 1) / (size_t{1} << 20) * (size_t{1} << 20);
      cuda_check(cudaMalloc(&flush_buf, flush_bytes), "cudaMalloc of the L2-flush buffer");
    }
  }
#endif

  // ---- timing
  auto time_calls = [&](bool backward, int64_t n, bool timed) -> std::vector<double> {
    std::vector<double> ms;
    const char* what = backward ? "tfla_mlstm_bwd" : "tfla_mlstm_fwd";
    const std::string phase = std::string(timed ? "timing " : "warm-up ") + (backward ? "backward" : "forward");
    for (int64_t r = 0; r < n; ++r) {
      progress.update(phase, r + 1, n);
      if (use_cuda) {
#if TFLA_BENCH_WITH_CUDA
        cudaEvent_t e0, e1;
        cuda_check(cudaEventCreate(&e0), "cudaEventCreate");
        cuda_check(cudaEventCreate(&e1), "cudaEventCreate");
        if (flush_buf != nullptr)  // evict the previous call's data from L2; stream-ordered before e0
          cuda_check(cudaMemsetAsync(flush_buf, static_cast<int>(r & 0xff), flush_bytes, cstream), "cudaMemsetAsync (L2 flush)");
        cuda_check(cudaEventRecord(e0, cstream), "cudaEventRecord");
        lib_check(backward ? tfla_mlstm_bwd(&bp, ws, ws_bytes, stream) : tfla_mlstm_fwd(&fp, ws, ws_bytes, stream), what);
        cuda_check(cudaEventRecord(e1, cstream), "cudaEventRecord");
        cuda_check(cudaEventSynchronize(e1), (std::string(what) + " (kernel execution)").c_str());
        float t = 0;
        cuda_check(cudaEventElapsedTime(&t, e0, e1), "cudaEventElapsedTime");
        ms.push_back(t);
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
#endif
      } else {
        const auto t0 = std::chrono::steady_clock::now();
        lib_check(backward ? tfla_mlstm_bwd(&bp, ws, ws_bytes, stream) : tfla_mlstm_fwd(&fp, ws, ws_bytes, stream), what);
        const auto t1 = std::chrono::steady_clock::now();
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
    }
    return ms;
  };
  // Every forward runs before the first backward, so the backward always reads m_token/den_token that a
  // finished forward wrote.
  time_calls(false, warmup, false);
  const std::vector<double> fwd_ms = time_calls(false, reps, true);
  time_calls(true, warmup, false);
  const std::vector<double> bwd_ms = time_calls(true, reps, true);
  const double t_fwd = median(fwd_ms), t_bwd = median(bwd_ms), t_all = t_fwd + t_bwd;

#if TFLA_BENCH_WITH_CUDA
  if (use_cuda) {
    progress.update("copying results from the GPU");
    cuda_check(cudaStreamSynchronize(cstream), "cudaStreamSynchronize");
    if (opt.check)
      for (Buf* b : all)
        cuda_check(cudaMemcpy(b->host.data(), b->dev, b->bytes(), cudaMemcpyDeviceToHost), "cudaMemcpy from the GPU");
  }
#endif

  // ---- FLOP model (see --help)
  const double L = static_cast<double>(std::min(chunk, S));
  const double N = static_cast<double>(S), dK = static_cast<double>(Dk), dV = static_cast<double>(Dv);
  const double BH = static_cast<double>(B) * static_cast<double>(H);
  const double fwd_flops = BH * N * (4.0 * dK * dV + L * (dK + dV));
  const double bwd_flops = BH * N * (8.0 * dK * dV + L * (3.0 * dK + 2.0 * dV));
  const double tokens = static_cast<double>(B) * N;

  // ---- check against the fp64 reference
  std::vector<ErrAcc> errs;
  int64_t checked_pairs = 0;
  bool check_ran = false;
  std::string check_note;
  bool check_failed = false;
#if TFLA_BENCH_WITH_REFERENCE
  if (opt.check) {
    check_ran = true;
    const int64_t pairs = B * H;
    int64_t npairs = opt.check_heads;
    if (npairs == 0) npairs = static_cast<double>(pairs) * N * dK * dV <= static_cast<double>(1 << 27) ? pairs : 1;
    npairs = std::min(npairs, pairs);
    const char* names[] = {"h", "c_last", "n_last", "m_last", "dq", "dk", "dv", "digate", "dfgate", "dc0", "dn0"};
    for (const char* nm : names) errs.push_back(ErrAcc{nm});
    auto acc = [&](int slot, const Buf& buf, int64_t b, int64_t hh, const std::vector<double>& ref) {
      ErrAcc& e = errs[static_cast<size_t>(slot)];
      e.used = true;
      // Walk the (b, hh) slice of buf in logical row-major order, the order of the reference's vectors.
      int64_t n = 1;
      for (int d = 2; d < buf.rank; ++d) n *= buf.dims[d];
      if (static_cast<int64_t>(ref.size()) != n) {
        check_note += std::string(" reference returned ") + std::to_string(ref.size()) + " values for " + buf.name +
                      " (expected " + std::to_string(n) + ");";
        e.nonfinite += 1;
        return;
      }
      int64_t idx[4] = {b, hh, 0, 0};
      for (int64_t j = 0; j < n; ++j) {
        int64_t rest = j;
        for (int d = buf.rank - 1; d >= 2; --d) {
          idx[d] = rest % buf.dims[d];
          rest /= buf.dims[d];
        }
        const double x = buf.load(buf.offset(idx)), r = ref[static_cast<size_t>(j)];
        if (!std::isfinite(x)) {
          e.nonfinite++;
          continue;
        }
        e.diff2 += (x - r) * (x - r);
        e.ref2 += r * r;
      }
    };
    auto slice = [&](const Buf& buf, int64_t b, int64_t hh) {
      int64_t n = 1;
      for (int d = 2; d < buf.rank; ++d) n *= buf.dims[d];
      std::vector<double> out(static_cast<size_t>(n));
      int64_t idx[4] = {b, hh, 0, 0};
      for (int64_t j = 0; j < n; ++j) {
        int64_t rest = j;
        for (int d = buf.rank - 1; d >= 2; --d) {
          idx[d] = rest % buf.dims[d];
          rest /= buf.dims[d];
        }
        out[static_cast<size_t>(j)] = buf.load(buf.offset(idx));
      }
      return out;
    };
    tfla::ref::Problem rp;
    rp.B = 1, rp.H = 1, rp.S = S, rp.Dk = Dk, rp.Dv = Dv;
    rp.variant = opt.variant;
    rp.normalize = opt.normalize != 0;
    rp.scale = static_cast<double>(static_cast<float>(1.0 / std::sqrt(dK)));  // as the library resolves it (f32)
    rp.eps = static_cast<double>(prob.eps);
    // The recurrent reference backward keeps every state C_t of a head: (S+1)*Dk*Dv doubles.
    const double ref_bwd_bytes = (N + 1.0) * dK * dV * 8.0;
    const double phys_bytes = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
    const bool ref_bwd_fits = phys_bytes <= 0 || ref_bwd_bytes <= 0.5 * phys_bytes;
    if (!ref_bwd_fits) {
      char buf[200];
      std::snprintf(buf, sizeof buf, " gradients not checked: the fp64 reference backward needs %.1f GiB per (b,h) pair, "
                    "more than half of this machine's memory (use a smaller -S/--dk/--dv to check them);",
                    ref_bwd_bytes / 1073741824.0);
      check_note += buf;
    }
    try {
      for (int64_t j = 0; j < npairs; ++j) {
        const int64_t p = npairs == 1 ? 0 : j * (pairs - 1) / (npairs - 1);
        const int64_t b = p / H, hh = p % H;
        tfla::ref::Inputs x;
        x.q = slice(q, b, hh), x.k = slice(k, b, hh), x.v = slice(v, b, hh);
        x.i = slice(ig, b, hh), x.f = slice(fg, b, hh);
        if (opt.state) x.c0 = slice(c0, b, hh), x.n0 = slice(n0, b, hh), x.m0 = slice(m0, b, hh);
        progress.update("fp64 reference forward, (b,h) pair", j + 1, npairs);
        const tfla::ref::Outputs ro = tfla::ref::forward_recurrent(rp, x);
        acc(0, h, b, hh, ro.h);
        if (opt.state) {
          acc(1, c_last, b, hh, ro.c_last);
          acc(2, n_last, b, hh, ro.n_last);
          acc(3, m_last, b, hh, ro.m_last);
        }
        checked_pairs++;
        if (!ref_bwd_fits) continue;
        tfla::ref::OutputGrads g;
        g.dh = slice(dh, b, hh);
        if (opt.state) g.dc_last = slice(dc_last, b, hh), g.dn_last = slice(dn_last, b, hh);
        progress.update("fp64 reference backward, (b,h) pair", j + 1, npairs);
        const tfla::ref::InputGrads rg = tfla::ref::backward_recurrent(rp, x, g);
        acc(4, dq, b, hh, rg.dq);
        acc(5, dk, b, hh, rg.dk);
        acc(6, dv, b, hh, rg.dv);
        acc(7, dig, b, hh, rg.di);
        acc(8, dfg, b, hh, rg.df);
        if (opt.state) {
          acc(9, dc0, b, hh, rg.dc0);
          acc(10, dn0, b, hh, rg.dn0);
        }
      }
    } catch (const std::exception& ex) {
      progress.done();
      runtime_error("the fp64 reference failed: %s", ex.what());
    }
    for (const ErrAcc& e : errs) {
      if (!e.used) continue;
      if (e.nonfinite > 0 || !std::isfinite(e.value())) check_failed = true;
      if (opt.tol >= 0 && e.value() > opt.tol) check_failed = true;
    }
  }
#else
  if (opt.check) check_note = "not checked: tfla-bench was built without the tfla_reference library";
#endif
  progress.done();

  // ---- report
  auto tok_s = [&](double ms) { return ms > 0 ? tokens / (ms * 1e-3) : 0.0; };
  auto tflops = [&](double flops, double ms) { return ms > 0 ? flops / (ms * 1e-3) / 1e12 : 0.0; };
  const char* variant_name = sig ? "sig" : "exp";
  const char* layout_name = seq_major ? "bshd" : "bhsd";
  const char* dev_name = use_cuda ? "cuda" : "cpu";

  if (opt.out == OutFormat::Text) {
    std::printf("tfla %s | %s\n", tfla_version_string(), device_desc.c_str());
    std::printf("problem  mLSTM%s normalize=%d  B=%lld H=%lld S=%lld Dk=%lld Dv=%lld  chunk=%lld%s  x=%s gates=%s  "
                "layout=%s  state=%s\n",
                variant_name, static_cast<int>(opt.normalize), static_cast<long long>(B), static_cast<long long>(H),
                static_cast<long long>(S), static_cast<long long>(Dk), static_cast<long long>(Dv),
                static_cast<long long>(chunk), chunk_opt == 0 ? " (library default)" : "", dtype_name(dtype),
                dtype_name(gdtype), layout_name, opt.state ? "yes" : "no");
    std::printf("memory   tensors %.1f MiB, workspace fwd %.1f MiB / bwd %.1f MiB; peak %.1f MiB (all device buffers), "
                "above the inputs: fwd %.1f MiB, fwd+bwd %.1f MiB\n", tensor_bytes / 1048576.0,
                fws / 1048576.0, bws / 1048576.0, peak_bytes / 1048576.0, fwd_extra_bytes / 1048576.0,
                fwdbwd_extra_bytes / 1048576.0);
    std::printf("timing   median of %lld call%s after %lld warm-up (%s)\n", static_cast<long long>(reps),
                reps == 1 ? "" : "s", static_cast<long long>(warmup), use_cuda ? "cudaEvent" : "wall clock");
    std::printf("           %14s %14s %12s\n", "time/call", "tokens/s", "TFLOP/s");
    std::printf("  fwd      %11.3f ms %14.4g %12.4g\n", t_fwd, tok_s(t_fwd), tflops(fwd_flops, t_fwd));
    std::printf("  bwd      %11.3f ms %14.4g %12.4g\n", t_bwd, tok_s(t_bwd), tflops(bwd_flops, t_bwd));
    std::printf("  fwd+bwd  %11.3f ms %14.4g %12.4g\n", t_all, tok_s(t_all), tflops(fwd_flops + bwd_flops, t_all));
    std::printf("  (TFLOP/s from a model count per (b,h), N=S, L=min(chunk,S), c=1/2: fwd N*[4*Dk*Dv + 2*c*L*(Dk+Dv)],\n"
                "   bwd N*[8*Dk*Dv + 2*c*L*(3*Dk+2*Dv)]; see --help)\n");
    if (check_ran) {
      char tol_note[64] = "";
      if (opt.tol >= 0) std::snprintf(tol_note, sizeof tol_note, ", tolerance %g", opt.tol);
      std::printf("check    rel. L2 error vs the fp64 recurrent reference, %lld of %lld (b,h) pairs%s:\n",
                  static_cast<long long>(checked_pairs), static_cast<long long>(B * H), tol_note);
      std::string line = "  ";
      int on_line = 0;
      for (const ErrAcc& e : errs) {
        if (!e.used) continue;
        char buf[80];
        if (e.nonfinite > 0)
          std::snprintf(buf, sizeof buf, "%s NaN/Inf x%lld", e.name, static_cast<long long>(e.nonfinite));
        else
          std::snprintf(buf, sizeof buf, "%s %.2e", e.name, e.value());
        line += buf;
        line += "   ";
        if (++on_line == 5) {
          std::printf("%s\n", line.c_str());
          line = "  ";
          on_line = 0;
        }
      }
      if (on_line) std::printf("%s\n", line.c_str());
      if (!check_note.empty()) std::printf("  note:%s\n", check_note.c_str());
      std::printf("  %s\n", check_failed ? "FAILED" : "ok");
    } else if (!check_note.empty()) {
      std::printf("check    %s\n", check_note.c_str());
    } else {
      std::printf("check    skipped (--no-check)\n");
    }
  } else {
    const char* err_cols[] = {"h", "c_last", "n_last", "m_last", "dq", "dk", "dv", "digate", "dfgate", "dc0", "dn0"};
    auto err_of = [&](const char* nm, bool& present) -> double {
      present = false;
      for (const ErrAcc& e : errs)
        if (e.used && std::strcmp(e.name, nm) == 0) {
          present = true;
          return e.nonfinite > 0 ? std::numeric_limits<double>::quiet_NaN() : e.value();
        }
      return 0;
    };
    if (opt.out == OutFormat::Csv) {
      if (opt.header) {
        std::printf("device,device_name,variant,normalize,B,H,S,Dk,Dv,chunk,dtype,gate_dtype,layout,state,reps,warmup,"
                    "fwd_ms,bwd_ms,fwdbwd_ms,fwd_tokens_per_s,bwd_tokens_per_s,fwdbwd_tokens_per_s,fwd_tflops,"
                    "bwd_tflops,fwdbwd_tflops,checked_pairs");
        for (const char* c : err_cols) std::printf(",err_%s", c);
        std::printf(",check\n");
      }
      std::string dn = device_desc;
      std::replace(dn.begin(), dn.end(), ',', ';');
      std::printf("%s,%s,%s,%d,%lld,%lld,%lld,%lld,%lld,%lld,%s,%s,%s,%d,%lld,%lld,%.6f,%.6f,%.6f,%.6g,%.6g,%.6g,%.6g,"
                  "%.6g,%.6g,%lld",
                  dev_name, dn.c_str(), variant_name, static_cast<int>(opt.normalize), static_cast<long long>(B),
                  static_cast<long long>(H), static_cast<long long>(S), static_cast<long long>(Dk),
                  static_cast<long long>(Dv), static_cast<long long>(chunk), dtype_name(dtype), dtype_name(gdtype),
                  layout_name, opt.state ? 1 : 0, static_cast<long long>(reps), static_cast<long long>(warmup), t_fwd,
                  t_bwd, t_all, tok_s(t_fwd), tok_s(t_bwd), tok_s(t_all), tflops(fwd_flops, t_fwd),
                  tflops(bwd_flops, t_bwd), tflops(fwd_flops + bwd_flops, t_all), static_cast<long long>(checked_pairs));
      for (const char* c : err_cols) {
        bool present;
        const double e = err_of(c, present);
        if (present) std::printf(",%.3e", e);
        else std::printf(",");
      }
      std::printf(",%s\n", !check_ran ? "skipped" : (check_failed ? "failed" : "ok"));
    } else {
      // TFLA_CUDA_FORWARD=materialized / portable-walk, TFLA_CUDA_BACKWARD=separate and TFLA_CUDA_STATES=portable
      // (src/cuda/dispatch.cu) force the CUDA forward's materialized path / the mma.sync walk instead of the wgmma walk /
      // the backward's per-role kernels / its state recurrences on mma.sync instead of wgmma.
      const char* env_path = std::getenv("TFLA_CUDA_FORWARD");
      const char* forward_path = !env_path                                    ? "auto"
                                 : std::strcmp(env_path, "materialized") == 0  ? "materialized"
                                 : std::strcmp(env_path, "portable-walk") == 0 ? "portable-walk"
                                                                               : "auto";
      const char* env_bpath = std::getenv("TFLA_CUDA_BACKWARD");
      // TFLA_CUDA_STATES=portable: the backward's state recurrences on mma.sync instead of wgmma
      const char* env_spath = std::getenv("TFLA_CUDA_STATES");
      std::string backward_path = env_bpath && std::strcmp(env_bpath, "separate") == 0 ? "separate" : "auto";
      if (env_spath && *env_spath) backward_path += std::string(" states=") + env_spath;
      // TFLA_CUDA_INTER=states / inter: dq's and dk's inter-chunk terms from stored states / inter_chunk_grads.cuh
      const char* env_inter = std::getenv("TFLA_CUDA_INTER");
      if (env_inter && *env_inter) backward_path += std::string(" inter=") + env_inter;
      std::string dn;
      for (char ch : device_desc) {
        if (ch == '"' || ch == '\\') dn += '\\';
        dn += ch;
      }
      std::printf("{\"tool\":\"tfla-bench\",\"tfla_version\":\"%s\",\"device\":\"%s\",\"device_name\":\"%s\","
                  "\"variant\":\"%s\",\"normalize\":%d,\"B\":%lld,\"H\":%lld,\"S\":%lld,\"Dk\":%lld,\"Dv\":%lld,"
                  "\"chunk\":%lld,\"dtype\":\"%s\",\"gate_dtype\":\"%s\",\"layout\":\"%s\",\"forward_path\":\"%s\","
                  "\"backward_path\":\"%s\","
                  "\"state\":%s,\"reps\":%lld,"
                  "\"warmup\":%lld,\"fwd_ms\":%.6f,\"bwd_ms\":%.6f,\"fwdbwd_ms\":%.6f,\"fwd_ms_all\":[",
                  tfla_version_string(), dev_name, dn.c_str(), variant_name, static_cast<int>(opt.normalize),
                  static_cast<long long>(B), static_cast<long long>(H), static_cast<long long>(S),
                  static_cast<long long>(Dk), static_cast<long long>(Dv), static_cast<long long>(chunk),
                  dtype_name(dtype), dtype_name(gdtype), layout_name, forward_path, backward_path.c_str(), opt.state ? "true" : "false",
                  static_cast<long long>(reps), static_cast<long long>(warmup), t_fwd, t_bwd, t_all);
      for (size_t i = 0; i < fwd_ms.size(); ++i) std::printf("%s%.6f", i ? "," : "", fwd_ms[i]);
      std::printf("],\"bwd_ms_all\":[");
      for (size_t i = 0; i < bwd_ms.size(); ++i) std::printf("%s%.6f", i ? "," : "", bwd_ms[i]);
      std::printf("],\"fwd_tokens_per_s\":%.6g,\"bwd_tokens_per_s\":%.6g,\"fwdbwd_tokens_per_s\":%.6g,"
                  "\"fwd_tflops\":%.6g,\"bwd_tflops\":%.6g,\"fwdbwd_tflops\":%.6g,\"fwd_flops\":%.6g,\"bwd_flops\":%.6g,"
                  "\"flop_model\":\"per (b,h): fwd N*[4*Dk*Dv + 2*c*L*(Dk+Dv)], bwd N*[8*Dk*Dv + 2*c*L*(3*Dk+2*Dv)], "
                  "c=1/2, L=min(chunk,S)\",\"tensor_bytes\":%zu,\"io_bytes\":%zu,\"workspace_fwd_bytes\":%zu,"
                  "\"workspace_bwd_bytes\":%zu,\"workspace_bytes\":%zu,\"peak_bytes\":%zu,\"fwd_extra_bytes\":%zu,"
                  "\"fwdbwd_extra_bytes\":%zu,\"memgetinfo_delta_bytes\":",
                  tok_s(t_fwd), tok_s(t_bwd), tok_s(t_all), tflops(fwd_flops, t_fwd), tflops(bwd_flops, t_bwd),
                  tflops(fwd_flops + bwd_flops, t_all), fwd_flops, bwd_flops, tensor_bytes, io_bytes, fws, bws,
                  ws_bytes, peak_bytes, fwd_extra_bytes, fwdbwd_extra_bytes);
      if (memgetinfo_delta >= 0) std::printf("%lld", memgetinfo_delta);
      else std::printf("null");
      std::printf(",\"mem_method\":\"sum of tfla-bench's own device allocations (inputs, outputs, gradients, "
                  "max(fwd,bwd) workspace); L2-flush scratch excluded\",\"l2_flush_bytes\":%zu,"
                  "\"fresh_inputs\":false,\"checked_pairs\":%lld,\"errors\":{",
                  flush_bytes, static_cast<long long>(checked_pairs));
      bool first = true;
      for (const char* c : err_cols) {
        bool present;
        const double e = err_of(c, present);
        if (!present) continue;
        if (std::isfinite(e)) std::printf("%s\"%s\":%.3e", first ? "" : ",", c, e);
        else std::printf("%s\"%s\":null", first ? "" : ",", c);
        first = false;
      }
      std::printf("},\"check\":\"%s\"}\n", !check_ran ? "skipped" : (check_failed ? "failed" : "ok"));
    }
    if (!check_note.empty()) std::fprintf(stderr, "%s: %s\n", kProg, check_note.c_str());
  }
  std::fflush(stdout);

  // ---- cleanup
#if TFLA_BENCH_WITH_CUDA
  if (use_cuda) {
    for (Buf* b : all) cudaFree(b->dev);
    if (ws) cudaFree(ws);
    if (flush_buf) cudaFree(flush_buf);
    cudaStreamDestroy(cstream);
    ws = nullptr;
  }
#endif
  if (ws) std::free(ws);
  return check_failed ? 1 : 0;
}
