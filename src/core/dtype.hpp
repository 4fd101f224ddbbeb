// Host-side element conversions for the dtypes of tfla_dtype (bit-exact, round-to-nearest-even).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <cstring>
#include <cmath>

#include "tfla/tfla.h"

namespace tfla {

inline float bf16_bits_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

inline float f16_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: value = man * 2^-24
      float f = std::ldexp(static_cast<float>(man), -24);
      return sign ? -f : f;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 112u) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_f16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(f)) return static_cast<uint16_t>(sign | 0x7e00u);
  if (a >= 65520.0f) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (a < 6.103515625e-05f) {  // subnormal or zero: units of 2^-24, nearest even
    const float units = a * 16777216.0f;
    const float r = std::nearbyint(units);  // default rounding mode: to nearest even
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(r));
  }
  uint32_t au = u & 0x7fffffffu;
  au += 0xfffu + ((au >> 13) & 1u);  // round mantissa to 10 bits, nearest even
  const uint32_t exp = (au >> 23) - 112u;
  const uint32_t man = (au >> 13) & 0x3ffu;
  return static_cast<uint16_t>(sign | (exp << 10) | man);
}

inline size_t dtype_size(int32_t dtype) { return dtype == TFLA_DTYPE_F32 ? 4 : 2; }

inline bool dtype_valid(int32_t dtype) {
  return dtype == TFLA_DTYPE_F32 || dtype == TFLA_DTYPE_BF16 || dtype == TFLA_DTYPE_F16;
}

inline const char* dtype_name(int32_t dtype) {
  switch (dtype) {
    case TFLA_DTYPE_F32: return "f32";
    case TFLA_DTYPE_BF16: return "bf16";
    case TFLA_DTYPE_F16: return "f16";
    default: return "invalid";
  }
}

// Read element `offset` (in elements) of a buffer of `dtype` as double.
inline double load_as_double(const void* base, int32_t dtype, int64_t offset) {
  switch (dtype) {
    case TFLA_DTYPE_F32: return static_cast<const float*>(base)[offset];
    case TFLA_DTYPE_BF16: return bf16_bits_to_float(static_cast<const uint16_t*>(base)[offset]);
    default: return f16_bits_to_float(static_cast<const uint16_t*>(base)[offset]);
  }
}

// Write `value` rounded to `dtype` (via f32, then RNE to the 16-bit types).
inline void store_from_double(void* base, int32_t dtype, int64_t offset, double value) {
  const float f = static_cast<float>(value);
  switch (dtype) {
    case TFLA_DTYPE_F32: static_cast<float*>(base)[offset] = f; break;
    case TFLA_DTYPE_BF16: static_cast<uint16_t*>(base)[offset] = float_to_bf16_bits(f); break;
    default: static_cast<uint16_t*>(base)[offset] = float_to_f16_bits(f); break;
  }
}

}  // namespace tfla
