// Host-side dtype helpers for the tests: bit-exact round-to-nearest-even conversions between float and the
// 16-bit types of tfla_dtype, and "round a double to what a tensor of this dtype can hold".
// Written for the tests (no code shared with src/), usable from CUDA tests on host copies.
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "tfla/tfla.h"

namespace tfla::test {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16_to_float(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  const uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;  // nearest, ties to even (overflow to inf is the correct rounding)
  return static_cast<uint16_t>(u >> 16);
}

inline float f16_to_float(uint16_t h) {
  const bool neg = (h & 0x8000u) != 0;
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  float v;
  if (e == 0) v = std::ldexp(static_cast<float>(m), -24);
  else if (e == 31) v = m ? std::nanf("") : INFINITY;
  else v = std::ldexp(static_cast<float>(m | 0x400), e - 25);
  return neg ? -v : v;
}

inline uint16_t float_to_f16(float f) {
  const uint16_t sign = (float_bits(f) >> 31) ? 0x8000u : 0u;
  if (std::isnan(f)) return static_cast<uint16_t>(sign | 0x7e00u);
  const float a = std::fabs(f);
  if (a >= 65520.0f) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to infinity
  if (a < 0x1p-14f) {                                              // subnormal range: units of 2^-24
    const float units = std::nearbyint(a * 0x1p24f);               // exact scaling; RNE (default mode)
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(units));  // 1024 encodes the smallest normal
  }
  int e;
  const float fr = std::frexp(a, &e);            // a = fr * 2^e, fr in [0.5, 1)
  float mant = std::nearbyint(std::ldexp(fr, 11));  // 11 significant bits, RNE
  if (mant >= 2048.0f) {
    mant /= 2.0f;
    ++e;
  }
  const int biased = e - 1 + 15;  // exponent of 1.xxx form
  if (biased >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  return static_cast<uint16_t>(sign | (biased << 10) | (static_cast<int>(mant) - 1024));
}

inline size_t dtype_bytes(int32_t dt) { return dt == TFLA_DTYPE_F32 ? 4 : 2; }

inline const char* dtype_str(int32_t dt) {
  switch (dt) {
    case TFLA_DTYPE_F32: return "f32";
    case TFLA_DTYPE_BF16: return "bf16";
    case TFLA_DTYPE_F16: return "f16";
    default: return "bad";
  }
}

// The value a tensor of dtype `dt` holds after storing `x` (double -> f32 -> RNE to 16 bits).
inline float round_float(float x, int32_t dt) {
  switch (dt) {
    case TFLA_DTYPE_BF16: return bf16_to_float(float_to_bf16(x));
    case TFLA_DTYPE_F16: return f16_to_float(float_to_f16(x));
    default: return x;
  }
}
inline double round_to(double x, int32_t dt) { return round_float(static_cast<float>(x), dt); }

}  // namespace tfla::test
