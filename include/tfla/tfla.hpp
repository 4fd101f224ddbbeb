// tfla C++ convenience layer over the C ABI in tfla.h: exceptions instead of status codes, and helpers
// that build strided tensor views for the common layouts. Header-only; no allocation.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "tfla/tfla.h"

namespace tfla {

class Error : public std::runtime_error {
 public:
  Error(tfla_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  tfla_status status() const { return status_; }

 private:
  tfla_status status_;
};

// Throw tfla::Error carrying the library's message when `status` is not TFLA_SUCCESS.
inline void check(tfla_status status) {
  if (status != TFLA_SUCCESS)
    throw Error(status, std::string(tfla_status_string(status)) + ": " + tfla_last_error());
}

// A view of a densely packed row-major tensor of the given shape (rank <= 4).
inline tfla_tensor contiguous(void* data, tfla_dtype dtype, std::initializer_list<int64_t> shape) {
  tfla_tensor t{};
  t.data = data;
  t.dtype = dtype;
  const int rank = static_cast<int>(shape.size());
  int64_t stride = 1;
  const int64_t* dims = shape.begin();
  for (int d = rank - 1; d >= 0; --d) {
    t.stride[d] = stride;
    stride *= dims[d];
  }
  return t;
}

// q/k/v/h-like view (B, H, S, D) whose memory is (B, S, H, D): the "sequence-major" layout.
inline tfla_tensor bshd(void* data, tfla_dtype dtype, int64_t B, int64_t H, int64_t S, int64_t D) {
  (void)B;
  tfla_tensor t{};
  t.data = data;
  t.dtype = dtype;
  t.stride[0] = S * H * D;
  t.stride[1] = D;
  t.stride[2] = H * D;
  t.stride[3] = 1;
  return t;
}

// Gate view (B, H, S) whose memory is (B, S, H).
inline tfla_tensor bsh(void* data, tfla_dtype dtype, int64_t B, int64_t H, int64_t S) {
  (void)B;
  tfla_tensor t{};
  t.data = data;
  t.dtype = dtype;
  t.stride[0] = S * H;
  t.stride[1] = 1;
  t.stride[2] = H;
  return t;
}

inline tfla_mlstm_problem make_problem(int64_t B, int64_t H, int64_t S, int64_t Dk, int64_t Dv,
                                       tfla_variant variant = TFLA_VARIANT_EXP, bool normalize = true) {
  tfla_mlstm_problem p;
  tfla_mlstm_problem_init(&p);
  p.batch = B;
  p.heads = H;
  p.seq_len = S;
  p.dim_qk = Dk;
  p.dim_v = Dv;
  p.variant = variant;
  p.normalize = normalize ? 1 : 0;
  return p;
}

}  // namespace tfla
