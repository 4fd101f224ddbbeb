// A host tensor of one tfla dtype with a logical shape (the documented shape of a tfla tensor) and a
// memory order: dense row-major, or "sequence-major" (logical dims 1 and 2 swapped in memory, i.e.
// (B,S,H,D) memory for a (B,H,S,D) tensor and (B,S,H) memory for a (B,H,S) gate). It builds the
// tfla_tensor view (element strides), fills itself from / reads itself back into logical row-major
// doubles, and can be poisoned with NaN. A CUDA test copies bytes() of data() to a device buffer of the
// same size and uses view_at(device_ptr): the strides describe the same memory.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "tfla/tfla.h"

namespace tfla::test {

enum class Layout {
  kDense,     // row-major in the logical order
  kSeqMajor,  // dims 1 and 2 swapped in memory (tfla::bshd / tfla::bsh); rank >= 3 only
};

const char* layout_str(Layout l);

class HostTensor {
 public:
  HostTensor() = default;  // absent (a NULL view)
  HostTensor(tfla_dtype dtype, std::vector<int64_t> shape, Layout layout = Layout::kDense);

  bool present() const { return !shape_.empty(); }
  tfla_dtype dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  Layout layout() const { return layout_; }
  int64_t numel() const;
  size_t bytes() const;  // memory size (numel * element size): what a device mirror must hold
  void* data() { return present() ? static_cast<void*>(storage_.data()) : nullptr; }
  const void* data() const { return present() ? static_cast<const void*>(storage_.data()) : nullptr; }
  const std::array<int64_t, 4>& strides() const { return strides_; }

  tfla_tensor view() { return view_at(data()); }
  // The same view over another copy of the memory (a device buffer of bytes()); NULL when absent.
  tfla_tensor view_at(void* data) const;

  // Fill from logical row-major values, rounding each to the dtype. Size must be numel().
  void set(const std::vector<double>& logical);
  // Read back in logical row-major order.
  std::vector<double> get() const;
  // Overwrite every element with a quiet NaN of the dtype.
  void poison();
  // Raw access by logical index.
  double at(int64_t logical_index) const;

 private:
  int64_t mem_offset(int64_t logical_index) const;
  tfla_dtype dtype_ = TFLA_DTYPE_F32;
  std::vector<int64_t> shape_;
  Layout layout_ = Layout::kDense;
  std::array<int64_t, 4> strides_{0, 0, 0, 0};
  std::vector<uint64_t> storage_;  // 8-byte aligned
};

}  // namespace tfla::test
