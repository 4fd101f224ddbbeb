// SPDX-License-Identifier: Apache-2.0
#include "common/host_tensor.hpp"

#include <cstring>
#include <stdexcept>

#include "common/dtype_util.hpp"

namespace tfla::test {

const char* layout_str(Layout l) { return l == Layout::kDense ? "dense" : "seqmajor"; }

HostTensor::HostTensor(tfla_dtype dtype, std::vector<int64_t> shape, Layout layout)
    : dtype_(dtype), shape_(std::move(shape)), layout_(layout) {
  const int rank = static_cast<int>(shape_.size());
  if (rank < 1 || rank > 4) throw std::invalid_argument("HostTensor: rank must be 1..4");
  if (layout_ == Layout::kSeqMajor && rank < 3) layout_ = Layout::kDense;  // nothing to swap
  // Memory order of the logical dims, outermost first.
  std::array<int, 4> order{0, 1, 2, 3};
  if (layout_ == Layout::kSeqMajor) std::swap(order[1], order[2]);
  int64_t s = 1;
  for (int a = rank - 1; a >= 0; --a) {
    strides_[order[a]] = s;
    s *= shape_[order[a]];
  }
  storage_.assign((bytes() + 7) / 8, 0);
}

int64_t HostTensor::numel() const {
  if (!present()) return 0;
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

size_t HostTensor::bytes() const { return static_cast<size_t>(numel()) * dtype_bytes(dtype_); }

tfla_tensor HostTensor::view_at(void* data) const {
  tfla_tensor t{};
  t.dtype = dtype_;
  if (!present()) return t;
  t.data = data;
  for (int d = 0; d < 4; ++d) t.stride[d] = strides_[d];
  return t;
}

int64_t HostTensor::mem_offset(int64_t idx) const {
  int64_t off = 0;
  for (int d = static_cast<int>(shape_.size()) - 1; d >= 0; --d) {
    off += (idx % shape_[d]) * strides_[d];
    idx /= shape_[d];
  }
  return off;
}

double HostTensor::at(int64_t idx) const {
  const int64_t o = mem_offset(idx);
  const void* base = data();
  switch (dtype_) {
    case TFLA_DTYPE_F32: return static_cast<const float*>(base)[o];
    case TFLA_DTYPE_BF16: return bf16_to_float(static_cast<const uint16_t*>(base)[o]);
    default: return f16_to_float(static_cast<const uint16_t*>(base)[o]);
  }
}

void HostTensor::set(const std::vector<double>& logical) {
  if (static_cast<int64_t>(logical.size()) != numel())
    throw std::invalid_argument("HostTensor::set: " + std::to_string(logical.size()) + " values for " +
                                std::to_string(numel()) + " elements");
  void* base = data();
  for (int64_t i = 0; i < numel(); ++i) {
    const int64_t o = mem_offset(i);
    const float f = static_cast<float>(logical[i]);
    switch (dtype_) {
      case TFLA_DTYPE_F32: static_cast<float*>(base)[o] = f; break;
      case TFLA_DTYPE_BF16: static_cast<uint16_t*>(base)[o] = float_to_bf16(f); break;
      default: static_cast<uint16_t*>(base)[o] = float_to_f16(f); break;
    }
  }
}

std::vector<double> HostTensor::get() const {
  std::vector<double> out(numel());
  for (int64_t i = 0; i < numel(); ++i) out[i] = at(i);
  return out;
}

void HostTensor::poison() {
  void* base = data();
  const int64_t n = numel();
  if (dtype_ == TFLA_DTYPE_F32) {
    const uint32_t nan = 0x7fc00000u;
    for (int64_t i = 0; i < n; ++i) std::memcpy(static_cast<char*>(base) + 4 * i, &nan, 4);
  } else {
    const uint16_t nan = dtype_ == TFLA_DTYPE_BF16 ? 0x7fc0u : 0x7e00u;
    for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(base)[i] = nan;
  }
}

}  // namespace tfla::test
