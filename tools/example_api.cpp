// mLSTMexp forward on the CPU backend through the C ABI (tfla.h) and its C++ helpers (tfla.hpp).
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "tfla/tfla.hpp"

int main() {
  const int64_t B = 1, H = 2, S = 256, Dk = 64, Dv = 128;
  std::vector<float> q(B * H * S * Dk, 0.1f), k(q.size(), 0.2f), v(B * H * S * Dv, 0.3f);
  std::vector<float> ig(B * H * S, 0.0f), fg(B * H * S, 3.0f);  // gate pre-activations (logits)
  std::vector<float> h(v.size()), m_tok(ig.size()), den_tok(ig.size());
  const tfla_dtype F32 = TFLA_DTYPE_F32;

  tfla_mlstm_fwd_params p{};  // absent optional tensors: data == NULL
  p.problem = tfla::make_problem(B, H, S, Dk, Dv, TFLA_VARIANT_EXP);  // defaults: CPU, scale Dk^-1/2
  p.q = tfla::contiguous(q.data(), F32, {B, H, S, Dk});
  p.k = tfla::contiguous(k.data(), F32, {B, H, S, Dk});
  p.v = tfla::contiguous(v.data(), F32, {B, H, S, Dv});
  p.igate = tfla::contiguous(ig.data(), F32, {B, H, S});
  p.fgate = tfla::contiguous(fg.data(), F32, {B, H, S});
  p.h = tfla::contiguous(h.data(), F32, {B, H, S, Dv});
  p.m_token = tfla::contiguous(m_tok.data(), F32, {B, H, S});  // per-token m and den:
  p.den_token = tfla::contiguous(den_tok.data(), F32, {B, H, S});  // the backward needs them

  size_t bytes = 0;  // the workspace: query, allocate (256-byte aligned, on the problem's device), pass
  tfla_status st = tfla_mlstm_fwd_workspace_size(&p, &bytes);
  if (st == TFLA_SUCCESS) {
    void* ws = bytes ? std::aligned_alloc(256, (bytes + 255) / 256 * 256) : nullptr;
    st = tfla_mlstm_fwd(&p, ws, bytes, /*stream=*/nullptr);
    std::free(ws);
  }
  if (st != TFLA_SUCCESS) {  // C style: a status, and a message that names the offending argument
    std::fprintf(stderr, "tfla: %s: %s\n", tfla_status_string(st), tfla_last_error());
    return 1;
  }
  std::printf("h[0][0][0][0] = %f\n", h[0]);

  p.problem.dim_v = 0;  // C++ style: tfla::check throws tfla::Error carrying the same message
  try {
    tfla::check(tfla_mlstm_fwd_workspace_size(&p, &bytes));
  } catch (const tfla::Error& e) {
    std::printf("expected error: %s\n", e.what());
  }
  return 0;
}
