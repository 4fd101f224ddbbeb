// SPDX-License-Identifier: Apache-2.0
#include "common/cases.hpp"

#include <cmath>
#include <random>
#include <sstream>

#include "common/dtype_util.hpp"

namespace tfla::test {

std::string Case::name() const {
  std::ostringstream s;
  s << (variant == TFLA_VARIANT_EXP ? "exp" : (normalize ? "sig" : "signonorm")) << "_B" << B << "H" << H << "S" << S
    << "K" << Dk << "V" << Dv << "_L" << chunk << "_" << layout_str(layout) << (init ? "_init" : "")
    << (final_state ? "_final" : "");
  if (x != TFLA_DTYPE_F32 || g != TFLA_DTYPE_F32) s << "_x" << dtype_str(x) << "_g" << dtype_str(g);
  if (gates == Gates::kExtreme50) s << "_gates50";
  if (gates == Gates::kExtreme1e4) s << "_gates1e4";
  s << "_seed" << seed;
  return s.str();
}

Case make_case(const Shape& s, const Variant& v, int64_t chunk, Layout layout, bool init, bool fin, uint64_t seed) {
  Case c;
  c.B = s.B;
  c.H = s.H;
  c.S = s.S;
  c.Dk = s.Dk;
  c.Dv = s.Dv;
  c.variant = v.v;
  c.normalize = v.normalize;
  c.chunk = chunk;
  c.layout = layout;
  c.init = init;
  c.final_state = fin;
  c.seed = seed;
  return c;
}

double lib_scale(const Case& c) {
  const float s = c.scale != 0.0f ? c.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.Dk)));
  return static_cast<double>(s);
}

ref::Problem ref_problem(const Case& c) {
  ref::Problem p;
  p.B = c.B;
  p.H = c.H;
  p.S = c.S;
  p.Dk = c.Dk;
  p.Dv = c.Dv;
  p.variant = c.variant;
  p.normalize = c.variant == TFLA_VARIANT_EXP ? true : c.normalize;
  p.scale = lib_scale(c);
  p.eps = static_cast<double>(c.eps);
  return p;
}

tfla_mlstm_problem lib_problem(const Case& c, tfla_device_type device) {
  tfla_mlstm_problem p;
  tfla_mlstm_problem_init(&p);
  p.batch = c.B;
  p.heads = c.H;
  p.seq_len = c.S;
  p.dim_qk = c.Dk;
  p.dim_v = c.Dv;
  p.variant = c.variant;
  p.normalize = (c.variant == TFLA_VARIANT_EXP || c.normalize) ? 1 : 0;
  p.scale = c.scale;
  p.eps = c.eps;
  p.chunk_size = c.chunk;
  p.device_type = device;
  return p;
}

namespace {

std::vector<double> normal(std::mt19937_64& rng, int64_t n, double mean, double sd, int32_t dt) {
  std::normal_distribution<double> d(mean, sd);
  std::vector<double> v(n);
  for (auto& x : v) x = round_to(d(rng), dt);
  return v;
}

std::vector<double> gates(std::mt19937_64& rng, int64_t n, Gates kind, double mean, double sd, int32_t dt) {
  if (kind == Gates::kNormal) return normal(rng, n, mean, sd, dt);
  const double a = kind == Gates::kExtreme50 ? 50.0 : 1e4;
  std::uniform_int_distribution<int> pick(0, 2);
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<double> v(n);
  for (auto& x : v) {
    const int w = pick(rng);
    x = round_to(w == 0 ? a : (w == 1 ? -a : d(rng)), dt);
  }
  return v;
}

}  // namespace

ref::Inputs random_inputs(const Case& c) {
  std::mt19937_64 rng(c.seed * 0x9E3779B97F4A7C15ull + 17);
  const int64_t BHS = c.B * c.H * c.S, BH = c.B * c.H;
  ref::Inputs x;
  x.q = normal(rng, BHS * c.Dk, 0.0, 1.0, c.x);
  x.k = normal(rng, BHS * c.Dk, 0.0, 1.0, c.x);
  x.v = normal(rng, BHS * c.Dv, 0.0, 1.0, c.x);
  x.i = gates(rng, BHS, c.gates, 0.0, 1.5, c.g);
  x.f = gates(rng, BHS, c.gates, 2.5, 1.5, c.g);
  if (c.init) {
    x.c0 = normal(rng, BH * c.Dk * c.Dv, 0.0, 0.5, TFLA_DTYPE_F32);
    x.n0 = normal(rng, BH * c.Dk, 0.0, 0.5, TFLA_DTYPE_F32);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    x.m0.resize(BH);
    for (auto& m : x.m0) m = round_to(u(rng), TFLA_DTYPE_F32);
  }
  return x;
}

ref::OutputGrads random_output_grads(const Case& c) {
  std::mt19937_64 rng(c.seed * 0xC2B2AE3D27D4EB4Full + 29);
  ref::OutputGrads g;
  g.dh = normal(rng, c.B * c.H * c.S * c.Dv, 0.0, 1.0, c.x);
  if (c.final_state) {
    g.dc_last = normal(rng, c.B * c.H * c.Dk * c.Dv, 0.0, 1.0, TFLA_DTYPE_F32);
    g.dn_last = normal(rng, c.B * c.H * c.Dk, 0.0, 1.0, TFLA_DTYPE_F32);
  }
  return g;
}

}  // namespace tfla::test
