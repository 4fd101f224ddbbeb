// The CUDA backend against the fp64 references, under the spec's accuracy rule, over the grid of the
// CUDA issue: every value of every axis (B, H, S, head dims, chunk size, dtype, gate dtype, states,
// layout, variant) and the risky pairs (S < L, S not divisible by L, with states). Outputs are poisoned
// with NaN before each run (on the host, then mirrored to the device), so an unwritten element fails.
// Needs a GPU: built when the CUDA backend is, run by scripts/gpu_check.sh (not by ctest in CI).
// SPDX-License-Identifier: Apache-2.0
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <vector>

#include "common/cases.hpp"
#include "common/harness.hpp"
#include "common/metrics.hpp"
#include "common/plain_lowp.hpp"
#include "reference/mlstm_reference.hpp"
#include "tfla/tfla.h"

namespace tfla::test {
namespace {

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr << ": " << cudaGetErrorString(cudaGetLastError())

// Device mirrors of HostTensors: allocated and filled from the host on first use, kept until destruction.
class DeviceMirror {
 public:
  ~DeviceMirror() {
    for (auto& [t, p] : map_) cudaFree(p);
  }
  void* get(HostTensor& t) {
    if (!t.present()) return nullptr;
    auto it = map_.find(&t);
    if (it != map_.end()) return it->second;
    void* p = nullptr;
    if (cudaMalloc(&p, t.bytes()) != cudaSuccess) return nullptr;
    cudaMemcpy(p, t.data(), t.bytes(), cudaMemcpyHostToDevice);
    map_[&t] = p;
    return p;
  }
  void copy_back(HostTensor& t) {
    auto it = map_.find(&t);
    if (it != map_.end()) cudaMemcpy(t.data(), it->second, t.bytes(), cudaMemcpyDeviceToHost);
  }

 private:
  std::map<HostTensor*, void*> map_;
};

struct GpuResult {
  ref::Outputs out;
  ref::InputGrads grads;
};

// Forward then backward on the GPU; every output copied back into its (poisoned) host tensor.
void run_cuda(const Case& c, const ref::Inputs& x, const ref::OutputGrads& g, GpuResult* r) {
  FwdBuffers fb = make_fwd_buffers(c, x);
  BwdBuffers bb = make_bwd_buffers(c, g);
  DeviceMirror dm;
  DataPtr ptr = [&](HostTensor& t) { return dm.get(t); };
  const tfla_mlstm_problem prob = lib_problem(c, TFLA_DEVICE_CUDA);

  tfla_mlstm_fwd_params fp = make_fwd_params(prob, fb, ptr);
  size_t ws_bytes = 0;
  ASSERT_EQ(tfla_mlstm_fwd_workspace_size(&fp, &ws_bytes), TFLA_SUCCESS) << tfla_last_error();
  void* ws = nullptr;
  CUDA_OK(cudaMalloc(&ws, ws_bytes + 1));
  CUDA_OK(cudaMemset(ws, 0xff, ws_bytes + 1));  // NaN-poisoned workspace: no read before write
  ASSERT_EQ(tfla_mlstm_fwd(&fp, ws, ws_bytes, nullptr), TFLA_SUCCESS) << tfla_last_error();
  CUDA_OK(cudaDeviceSynchronize());
  CUDA_OK(cudaFree(ws));
  for (auto& [name, t] : fb.outputs()) dm.copy_back(*t);

  tfla_mlstm_bwd_params bp = make_bwd_params(prob, fb, bb, ptr);
  ASSERT_EQ(tfla_mlstm_bwd_workspace_size(&bp, &ws_bytes), TFLA_SUCCESS) << tfla_last_error();
  CUDA_OK(cudaMalloc(&ws, ws_bytes + 1));
  CUDA_OK(cudaMemset(ws, 0xff, ws_bytes + 1));
  ASSERT_EQ(tfla_mlstm_bwd(&bp, ws, ws_bytes, nullptr), TFLA_SUCCESS) << tfla_last_error();
  CUDA_OK(cudaDeviceSynchronize());
  CUDA_OK(cudaFree(ws));
  for (auto& [name, t] : bb.outputs()) dm.copy_back(*t);

  EXPECT_TRUE(outputs_written(fb.outputs()));
  EXPECT_TRUE(outputs_written(bb.outputs()));
  r->out = read_outputs(fb);
  r->grads = read_grads(bb);
}

void check_rule(const char* name, const std::vector<double>& got, const std::vector<double>& plain,
                const std::vector<double>& ref) {
  if (ref.empty() && got.empty()) return;
  ASSERT_EQ(got.size(), ref.size()) << name;
  ASSERT_EQ(plain.size(), ref.size()) << name;
  EXPECT_TRUE(accuracy_rule(name, got, plain, ref));
}

void check_case(const Case& c) {
  const ref::Inputs x = random_inputs(c);
  const ref::OutputGrads g = random_output_grads(c);
  GpuResult r;
  ASSERT_NO_FATAL_FAILURE(run_cuda(c, x, g, &r));
  const ref::Problem rp = ref_problem(c);
  const ref::Outputs ro = ref::forward_recurrent(rp, x);
  const ref::InputGrads rg = ref::backward_recurrent(rp, x, g);
  const ref::Outputs po = plain_forward(rp, x, c.x, c.g);
  const ref::InputGrads pg = plain_backward(rp, x, g, c.x, c.g);
  check_rule("h", r.out.h, po.h, ro.h);
  if (c.final_state) {
    check_rule("c_last", r.out.c_last, po.c_last, ro.c_last);
    check_rule("n_last", r.out.n_last, po.n_last, ro.n_last);
    check_rule("m_last", r.out.m_last, po.m_last, ro.m_last);
  }
  check_rule("dq", r.grads.dq, pg.dq, rg.dq);
  check_rule("dk", r.grads.dk, pg.dk, rg.dk);
  check_rule("dv", r.grads.dv, pg.dv, rg.dv);
  check_rule("digate", r.grads.di, pg.di, rg.di);
  check_rule("dfgate", r.grads.df, pg.df, rg.df);
  if (c.init) {
    check_rule("dc0", r.grads.dc0, pg.dc0, rg.dc0);
    check_rule("dn0", r.grads.dn0, pg.dn0, rg.dn0);
  }
}

// ---- the grid --------------------------------------------------------------------------------------
std::vector<Case> grid() {
  std::vector<Case> cs;
  uint64_t seed = 1000;
  auto add = [&](Case c) {
    c.seed = seed++;
    cs.push_back(c);
  };
  const tfla_variant V[3] = {TFLA_VARIANT_EXP, TFLA_VARIANT_SIG, TFLA_VARIANT_SIG};
  const bool N[3] = {true, true, false};
  const tfla_dtype X[3] = {TFLA_DTYPE_BF16, TFLA_DTYPE_F16, TFLA_DTYPE_F32};
  // variants x dtypes x layouts, with and without states (B=3, H=5: the batch/head indexing)
  for (int v = 0; v < 3; ++v)
    for (int d = 0; d < 3; ++d) {
      Case c;
      c.B = 3; c.H = 5; c.S = 100; c.Dk = 64; c.Dv = 64; c.chunk = 64;
      c.variant = V[v]; c.normalize = N[v]; c.x = X[d];
      c.g = (d == 1) ? X[d] : TFLA_DTYPE_F32;  // gates in the input dtype too
      c.layout = (v + d) % 2 ? Layout::kSeqMajor : Layout::kDense;
      c.init = c.final_state = (v + d) % 3 != 0;
      add(c);
    }
  // sequence lengths (S < L, S not divisible by L, exact multiples), exp and sig, with states
  for (int64_t S : {1, 17, 64, 100, 1000, 4096})
    for (int v = 0; v < 3; v += 1) {
      Case c;
      c.S = S; c.Dk = 64; c.Dv = 128; c.chunk = 128;
      c.variant = V[v]; c.normalize = N[v]; c.x = TFLA_DTYPE_BF16;
      c.init = c.final_state = true;
      c.layout = S % 2 ? Layout::kSeqMajor : Layout::kDense;
      add(c);
    }
  // head dims
  const int64_t dims[4][2] = {{64, 64}, {96, 192}, {128, 256}, {256, 512}};
  for (auto& d : dims)
    for (int v = 0; v < 3; v += 2) {
      Case c;
      c.S = 300; c.Dk = d[0]; c.Dv = d[1]; c.chunk = 128;
      c.variant = V[v]; c.normalize = N[v]; c.x = TFLA_DTYPE_BF16;
      c.init = c.final_state = d[0] != 64;
      add(c);
    }
  // chunk sizes, including L > S and L not dividing S
  for (int64_t L : {64, 128, 256, 1024})
    for (int v = 0; v < 2; ++v) {
      Case c;
      c.B = 1; c.H = 5; c.S = 1000; c.Dk = 96; c.Dv = 192; c.chunk = L;
      c.variant = V[v]; c.normalize = N[v]; c.x = v ? TFLA_DTYPE_F16 : TFLA_DTYPE_BF16;
      c.init = c.final_state = true;
      c.layout = Layout::kSeqMajor;
      add(c);
    }
  // extreme gates, fp32 and bf16
  for (Gates gt : {Gates::kExtreme50, Gates::kExtreme1e4})
    for (int v = 0; v < 2; ++v) {
      Case c;
      c.S = 200; c.Dk = 64; c.Dv = 64; c.chunk = 64; c.gates = gt;
      c.variant = V[v]; c.normalize = N[v]; c.x = v ? TFLA_DTYPE_F32 : TFLA_DTYPE_BF16;
      c.init = c.final_state = true;
      add(c);
    }
  // the forward walk without sequence segments (B*H*ceil(Dv/128) >= #SMs / 2 on an H100: the start state is
  // c0 itself); the smaller cases above run it with segments (segment_states -> segment_start_states)
  for (int v = 0; v < 3; v += 1) {
    Case c;
    c.B = 4; c.H = 9; c.S = 300; c.Dk = 128; c.Dv = 256; c.chunk = v == 1 ? 64 : 128;
    c.variant = V[v]; c.normalize = N[v]; c.x = v == 2 ? TFLA_DTYPE_F16 : TFLA_DTYPE_BF16;
    c.init = c.final_state = v != 1;
    c.layout = v == 1 ? Layout::kSeqMajor : Layout::kDense;
    add(c);
  }
  // the fused chunk backward (chunk_gradients.cuh: 16-bit, L = 64, Dk <= 128, Dv <= 256) at the main head dims
  // with states, at S < L, S = L, and at head dims that leave partial 64-column state slices and Dk halves
  {
    const int64_t shapes[4][4] = {{300, 128, 256, 0}, {17, 64, 128, 1}, {64, 128, 256, 2}, {150, 72, 200, 1}};
    for (const auto& sh : shapes) {
      Case c;
      c.B = 2; c.H = 3; c.S = sh[0]; c.Dk = sh[1]; c.Dv = sh[2]; c.chunk = 64;
      const int v = static_cast<int>(sh[3]);
      c.variant = V[v]; c.normalize = N[v]; c.x = v == 1 ? TFLA_DTYPE_F16 : TFLA_DTYPE_BF16;
      c.init = c.final_state = sh[0] != 64;
      c.layout = v == 1 ? Layout::kSeqMajor : Layout::kDense;
      add(c);
    }
  }
  // a longer fp32 case (the FMA path) and a B=3,H=5 large-chunk case
  {
    Case c;
    c.B = 3; c.H = 5; c.S = 1000; c.Dk = 128; c.Dv = 128; c.chunk = 256; c.x = TFLA_DTYPE_F32;
    c.init = c.final_state = true;
    add(c);
  }
  return cs;
}

class CudaGrid : public ::testing::TestWithParam<Case> {};
TEST_P(CudaGrid, MatchesFp64ReferenceUnderAccuracyRule) { check_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, CudaGrid, ::testing::ValuesIn(grid()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name(); });

// Two runs on the same inputs give bit-identical outputs (no atomics, fixed reduction orders); chunk 64 runs
// the forward walk and the fused chunk backward, 128 the walk and the per-role backward kernels, 256 the
// materialized forward.
class CudaRepeat : public ::testing::TestWithParam<int64_t> {};
INSTANTIATE_TEST_SUITE_P(Chunk, CudaRepeat, ::testing::Values(64, 128, 256));
TEST_P(CudaRepeat, BitIdenticalOnRepeat) {
  Case c;
  c.B = 2; c.H = 3; c.S = 777; c.Dk = 128; c.Dv = 256; c.chunk = GetParam(); c.x = TFLA_DTYPE_BF16;
  c.init = c.final_state = true;
  c.seed = 77;
  const ref::Inputs x = random_inputs(c);
  const ref::OutputGrads g = random_output_grads(c);
  GpuResult a, b;
  ASSERT_NO_FATAL_FAILURE(run_cuda(c, x, g, &a));
  ASSERT_NO_FATAL_FAILURE(run_cuda(c, x, g, &b));
  auto same = [](const std::vector<double>& u, const std::vector<double>& w) {
    return u.size() == w.size() && std::memcmp(u.data(), w.data(), u.size() * sizeof(double)) == 0;
  };
  EXPECT_TRUE(same(a.out.h, b.out.h));
  EXPECT_TRUE(same(a.out.c_last, b.out.c_last));
  EXPECT_TRUE(same(a.grads.dq, b.grads.dq));
  EXPECT_TRUE(same(a.grads.dk, b.grads.dk));
  EXPECT_TRUE(same(a.grads.dv, b.grads.dv));
  EXPECT_TRUE(same(a.grads.di, b.grads.di));
  EXPECT_TRUE(same(a.grads.df, b.grads.df));
}

// The portable path's own limits give clear errors, not crashes.
TEST(CudaBackend, RejectsWhatItCannotRun) {
  Case c;
  c.S = 100; c.Dk = 64; c.Dv = 64; c.chunk = 48;  // not a multiple of 64
  const ref::Inputs x = random_inputs(c);
  FwdBuffers fb = make_fwd_buffers(c, x);
  DeviceMirror dm;
  DataPtr ptr = [&](HostTensor& t) { return dm.get(t); };
  tfla_mlstm_fwd_params fp = make_fwd_params(lib_problem(c, TFLA_DEVICE_CUDA), fb, ptr);
  size_t ws = 0;
  EXPECT_EQ(tfla_mlstm_fwd_workspace_size(&fp, &ws), TFLA_ERROR_NOT_SUPPORTED);
  EXPECT_NE(std::strstr(tfla_last_error(), "chunk_size"), nullptr) << tfla_last_error();
  // host pointers passed as CUDA tensors
  fp = make_fwd_params(lib_problem(c, TFLA_DEVICE_CUDA), fb);
  fp.problem.chunk_size = 64;
  ASSERT_EQ(tfla_mlstm_fwd_workspace_size(&fp, &ws), TFLA_SUCCESS) << tfla_last_error();
  void* w = nullptr;
  CUDA_OK(cudaMalloc(&w, ws));
  EXPECT_EQ(tfla_mlstm_fwd(&fp, w, ws, nullptr), TFLA_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(tfla_last_error(), "host memory"), nullptr) << tfla_last_error();
  cudaFree(w);
}

}  // namespace
}  // namespace tfla::test
