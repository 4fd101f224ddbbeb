// SPDX-License-Identifier: Apache-2.0
#include "common/harness.hpp"

#include <cmath>
#include <cstdlib>
#include <memory>

#include "common/metrics.hpp"

namespace tfla::test {

Named FwdBuffers::inputs() {
  return {{"q", &q}, {"k", &k}, {"v", &v}, {"igate", &i}, {"fgate", &f}, {"c0", &c0}, {"n0", &n0}, {"m0", &m0}};
}
Named FwdBuffers::outputs() {
  Named all{{"h", &h},           {"c_last", &c_last},   {"n_last", &n_last},
            {"m_last", &m_last}, {"m_token", &m_token}, {"den_token", &den_token}};
  Named out;
  for (auto& e : all)
    if (e.second->present()) out.push_back(e);
  return out;
}
Named BwdBuffers::inputs() { return {{"dh", &dh}, {"dc_last", &dc_last}, {"dn_last", &dn_last}}; }
Named BwdBuffers::outputs() {
  Named all{{"dq", &dq}, {"dk", &dk}, {"dv", &dv}, {"digate", &di}, {"dfgate", &df}, {"dc0", &dc0}, {"dn0", &dn0}};
  Named out;
  for (auto& e : all)
    if (e.second->present()) out.push_back(e);
  return out;
}

namespace {
HostTensor filled(tfla_dtype dt, std::vector<int64_t> shape, Layout l, const std::vector<double>& v) {
  HostTensor t(dt, std::move(shape), l);
  t.set(v);
  return t;
}
HostTensor poisoned(tfla_dtype dt, std::vector<int64_t> shape, Layout l = Layout::kDense) {
  HostTensor t(dt, std::move(shape), l);
  t.poison();
  return t;
}
constexpr tfla_dtype F32 = TFLA_DTYPE_F32;
}  // namespace

FwdBuffers make_fwd_buffers(const Case& c, const ref::Inputs& x) {
  FwdBuffers b;
  const Layout L = c.layout;
  b.q = filled(c.x, {c.B, c.H, c.S, c.Dk}, L, x.q);
  b.k = filled(c.x, {c.B, c.H, c.S, c.Dk}, L, x.k);
  b.v = filled(c.x, {c.B, c.H, c.S, c.Dv}, L, x.v);
  b.i = filled(c.g, {c.B, c.H, c.S}, L, x.i);
  b.f = filled(c.g, {c.B, c.H, c.S}, L, x.f);
  if (!x.c0.empty()) b.c0 = filled(F32, {c.B, c.H, c.Dk, c.Dv}, Layout::kDense, x.c0);
  if (!x.n0.empty()) b.n0 = filled(F32, {c.B, c.H, c.Dk}, Layout::kDense, x.n0);
  if (!x.m0.empty()) b.m0 = filled(F32, {c.B, c.H}, Layout::kDense, x.m0);
  b.h = poisoned(c.x, {c.B, c.H, c.S, c.Dv}, L);
  if (c.final_state) {
    b.c_last = poisoned(F32, {c.B, c.H, c.Dk, c.Dv});
    b.n_last = poisoned(F32, {c.B, c.H, c.Dk});
    b.m_last = poisoned(F32, {c.B, c.H});
  }
  b.m_token = poisoned(F32, {c.B, c.H, c.S}, L);
  if (c.variant == TFLA_VARIANT_EXP || c.normalize) b.den_token = poisoned(F32, {c.B, c.H, c.S}, L);
  return b;
}

BwdBuffers make_bwd_buffers(const Case& c, const ref::OutputGrads& g, bool with_dstate0) {
  BwdBuffers b;
  const Layout L = c.layout;
  b.dh = filled(c.x, {c.B, c.H, c.S, c.Dv}, L, g.dh);
  if (!g.dc_last.empty()) b.dc_last = filled(F32, {c.B, c.H, c.Dk, c.Dv}, Layout::kDense, g.dc_last);
  if (!g.dn_last.empty()) b.dn_last = filled(F32, {c.B, c.H, c.Dk}, Layout::kDense, g.dn_last);
  b.dq = poisoned(c.x, {c.B, c.H, c.S, c.Dk}, L);
  b.dk = poisoned(c.x, {c.B, c.H, c.S, c.Dk}, L);
  b.dv = poisoned(c.x, {c.B, c.H, c.S, c.Dv}, L);
  b.di = poisoned(c.g, {c.B, c.H, c.S}, L);
  b.df = poisoned(c.g, {c.B, c.H, c.S}, L);
  if (c.init || with_dstate0) {
    b.dc0 = poisoned(F32, {c.B, c.H, c.Dk, c.Dv});
    b.dn0 = poisoned(F32, {c.B, c.H, c.Dk});
  }
  return b;
}

namespace {
tfla_tensor view(HostTensor& t, const DataPtr& ptr) {
  if (!t.present()) return t.view_at(nullptr);
  return t.view_at(ptr ? ptr(t) : t.data());
}
}  // namespace

tfla_mlstm_fwd_params make_fwd_params(const tfla_mlstm_problem& p, FwdBuffers& b, const DataPtr& ptr) {
  tfla_mlstm_fwd_params f{};
  f.problem = p;
  f.q = view(b.q, ptr);
  f.k = view(b.k, ptr);
  f.v = view(b.v, ptr);
  f.igate = view(b.i, ptr);
  f.fgate = view(b.f, ptr);
  f.c0 = view(b.c0, ptr);
  f.n0 = view(b.n0, ptr);
  f.m0 = view(b.m0, ptr);
  f.h = view(b.h, ptr);
  f.c_last = view(b.c_last, ptr);
  f.n_last = view(b.n_last, ptr);
  f.m_last = view(b.m_last, ptr);
  f.m_token = view(b.m_token, ptr);
  f.den_token = view(b.den_token, ptr);
  return f;
}

tfla_mlstm_bwd_params make_bwd_params(const tfla_mlstm_problem& p, FwdBuffers& fb, BwdBuffers& bb,
                                      const DataPtr& ptr) {
  tfla_mlstm_bwd_params g{};
  g.problem = p;
  g.q = view(fb.q, ptr);
  g.k = view(fb.k, ptr);
  g.v = view(fb.v, ptr);
  g.igate = view(fb.i, ptr);
  g.fgate = view(fb.f, ptr);
  g.c0 = view(fb.c0, ptr);
  g.n0 = view(fb.n0, ptr);
  g.m0 = view(fb.m0, ptr);
  g.m_token = view(fb.m_token, ptr);
  g.den_token = view(fb.den_token, ptr);
  g.dh = view(bb.dh, ptr);
  g.dc_last = view(bb.dc_last, ptr);
  g.dn_last = view(bb.dn_last, ptr);
  g.dq = view(bb.dq, ptr);
  g.dk = view(bb.dk, ptr);
  g.dv = view(bb.dv, ptr);
  g.digate = view(bb.di, ptr);
  g.dfgate = view(bb.df, ptr);
  g.dc0 = view(bb.dc0, ptr);
  g.dn0 = view(bb.dn0, ptr);
  return g;
}

namespace {
std::vector<double> get_or_empty(const HostTensor& t) { return t.present() ? t.get() : std::vector<double>{}; }
}  // namespace

ref::Outputs read_outputs(const FwdBuffers& b) {
  ref::Outputs o;
  o.h = get_or_empty(b.h);
  o.c_last = get_or_empty(b.c_last);
  o.n_last = get_or_empty(b.n_last);
  o.m_last = get_or_empty(b.m_last);
  o.m_token = get_or_empty(b.m_token);
  o.den_token = get_or_empty(b.den_token);
  return o;
}

ref::InputGrads read_grads(const BwdBuffers& b) {
  ref::InputGrads d;
  d.dq = get_or_empty(b.dq);
  d.dk = get_or_empty(b.dk);
  d.dv = get_or_empty(b.dv);
  d.di = get_or_empty(b.di);
  d.df = get_or_empty(b.df);
  d.dc0 = get_or_empty(b.dc0);
  d.dn0 = get_or_empty(b.dn0);
  return d;
}

::testing::AssertionResult outputs_written(Named outs) {
  for (auto& [name, t] : outs) {
    auto r = all_finite(name, t->get());
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult den_token_matches(const std::vector<double>& lib, const std::vector<double>& ref,
                                             double tol, double abs_floor) {
  if (lib.size() != ref.size())
    return ::testing::AssertionFailure() << "den_token: size " << lib.size() << " vs " << ref.size();
  std::vector<double> a = lib, b = ref;
  for (size_t e = 0; e < a.size(); ++e)
    if (b[e] > 3.4028234663852886e38) {
      if (!(std::isfinite(a[e]) && a[e] >= 1e30))
        return ::testing::AssertionFailure() << "den_token[" << e << "] = " << a[e] << " where the reference's is "
                                             << b[e] << " (beyond f32): expected a finite saturated value >= 1e30";
      a[e] = b[e] = 0.0;
    }
  return near_rel("den_token", a, b, tol, abs_floor);
}

namespace {
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
std::unique_ptr<void, FreeDeleter> aligned_workspace(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t rounded = (bytes + 255) / 256 * 256;
  return std::unique_ptr<void, FreeDeleter>(std::aligned_alloc(256, rounded));
}
}  // namespace

tfla_status run_fwd_cpu(const tfla_mlstm_fwd_params& p) {
  size_t bytes = 0;
  const tfla_status s = tfla_mlstm_fwd_workspace_size(&p, &bytes);
  if (s != TFLA_SUCCESS) return s;
  auto ws = aligned_workspace(bytes);
  return tfla_mlstm_fwd(&p, ws.get(), bytes, nullptr);
}

tfla_status run_bwd_cpu(const tfla_mlstm_bwd_params& p) {
  size_t bytes = 0;
  const tfla_status s = tfla_mlstm_bwd_workspace_size(&p, &bytes);
  if (s != TFLA_SUCCESS) return s;
  auto ws = aligned_workspace(bytes);
  return tfla_mlstm_bwd(&p, ws.get(), bytes, nullptr);
}

namespace {
class CpuExecutor final : public Executor {
 public:
  tfla_device_type device() const override { return TFLA_DEVICE_CPU; }
  tfla_status fwd(const tfla_mlstm_problem& p, FwdBuffers& fb) override { return run_fwd_cpu(make_fwd_params(p, fb)); }
  tfla_status bwd(const tfla_mlstm_problem& p, FwdBuffers& fb, BwdBuffers& bb) override {
    return run_bwd_cpu(make_bwd_params(p, fb, bb));
  }
};
}  // namespace

Executor& cpu_executor() {
  static CpuExecutor ex;
  return ex;
}

LibResult run_lib(Executor& ex, const Case& c, const ref::Inputs& x, const ref::OutputGrads& g, bool backward) {
  LibResult r;
  const tfla_mlstm_problem prob = lib_problem(c, ex.device());
  FwdBuffers fb = make_fwd_buffers(c, x);
  tfla_status s = ex.fwd(prob, fb);
  if (s != TFLA_SUCCESS) {
    ADD_FAILURE() << "tfla_mlstm_fwd: " << tfla_status_string(s) << ": " << tfla_last_error();
    return r;
  }
  r.out = read_outputs(fb);
  auto written = outputs_written(fb.outputs());
  if (!written) {
    ADD_FAILURE() << "forward: " << written.message();
    return r;
  }
  if (backward) {
    BwdBuffers bb = make_bwd_buffers(c, g);
    s = ex.bwd(prob, fb, bb);
    if (s != TFLA_SUCCESS) {
      ADD_FAILURE() << "tfla_mlstm_bwd: " << tfla_status_string(s) << ": " << tfla_last_error();
      return r;
    }
    r.grads = read_grads(bb);
    written = outputs_written(bb.outputs());
    if (!written) {
      ADD_FAILURE() << "backward: " << written.message();
      return r;
    }
  }
  r.ok = true;
  return r;
}

}  // namespace tfla::test
