// Layout of the C ABI structs as this compiler laid them out, for the Python binding's ctypes mirror
// (python/tfla/_lib.py checks itself against this string when it loads the library). Built into libtfla only
// for the Python package (CMake: SKBUILD). SPDX-License-Identifier: Apache-2.0
#include <cstddef>
#include <string>

#include "tfla/tfla.h"

namespace {

template <class T>
void add(std::string& s, const char* name, size_t value) {
  (void)sizeof(T);
  s += name;
  s += '=';
  s += std::to_string(value);
  s += ';';
}

std::string build() {
  std::string s;
#define TFLA_SIZE(T) add<T>(s, #T, sizeof(T))
#define TFLA_OFF(T, f) add<T>(s, #T "." #f, offsetof(T, f))
  TFLA_SIZE(tfla_tensor);
  TFLA_OFF(tfla_tensor, data);
  TFLA_OFF(tfla_tensor, dtype);
  TFLA_OFF(tfla_tensor, stride);
  TFLA_SIZE(tfla_mlstm_problem);
  TFLA_OFF(tfla_mlstm_problem, batch);
  TFLA_OFF(tfla_mlstm_problem, heads);
  TFLA_OFF(tfla_mlstm_problem, seq_len);
  TFLA_OFF(tfla_mlstm_problem, dim_qk);
  TFLA_OFF(tfla_mlstm_problem, dim_v);
  TFLA_OFF(tfla_mlstm_problem, variant);
  TFLA_OFF(tfla_mlstm_problem, normalize);
  TFLA_OFF(tfla_mlstm_problem, scale);
  TFLA_OFF(tfla_mlstm_problem, eps);
  TFLA_OFF(tfla_mlstm_problem, chunk_size);
  TFLA_OFF(tfla_mlstm_problem, device_type);
  TFLA_OFF(tfla_mlstm_problem, device_index);
  TFLA_SIZE(tfla_mlstm_fwd_params);
#define F(f) TFLA_OFF(tfla_mlstm_fwd_params, f)
  F(problem); F(q); F(k); F(v); F(igate); F(fgate); F(c0); F(n0); F(m0); F(h); F(c_last); F(n_last); F(m_last);
  F(m_token); F(den_token);
#undef F
  TFLA_SIZE(tfla_mlstm_bwd_params);
#define F(f) TFLA_OFF(tfla_mlstm_bwd_params, f)
  F(problem); F(q); F(k); F(v); F(igate); F(fgate); F(c0); F(n0); F(m0); F(m_token); F(den_token); F(dh);
  F(dc_last); F(dn_last); F(dq); F(dk); F(dv); F(digate); F(dfgate); F(dc0); F(dn0);
#undef F
#undef TFLA_SIZE
#undef TFLA_OFF
  return s;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const char* tfla_py_abi_layout(void) {
  static const std::string layout = build();
  return layout.c_str();
}
