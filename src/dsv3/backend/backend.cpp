// backend.cpp: the defaults of Backend's optional members, and the OpNumerics spelling (backend).
#include "dsv3/backend/backend.h"

#include "dsv3/base/error.h"

namespace dsv3 {

namespace {
// A fence for backends without events: waiting synchronizes the whole backend.
class SyncFence final : public BackendFence {
 public:
  explicit SyncFence(Backend& b) : backend_(b) {}
  void record() override {}
  void wait() override { backend_.synchronize(); }

 private:
  Backend& backend_;
};
}  // namespace

std::unique_ptr<BackendFence> Backend::make_fence() { return std::make_unique<SyncFence>(*this); }

std::pair<LinearParams, LinearParams> split_stacked_linear(const LinearParams& p) {
  const int64_t m = p.w.weight.dim(0), m1 = p.out.dim(1);
  CHECK(p.out2 && m1 > 0 && m1 < m && (!p.w.fp8() || m1 % 128 == 0), "split_stacked_linear: out {} of w {}",
        p.out.shape.str(), p.w.weight.shape.str());
  LinearParams a = p, b = p;
  a.out2 = b.out2 = {};
  a.w.weight = p.w.weight.rows(0, m1);
  b.w.weight = p.w.weight.rows(m1, m);
  if (p.w.fp8()) {
    a.w.scale_inv = p.w.scale_inv.rows(0, m1 / 128);
    b.w.scale_inv = p.w.scale_inv.rows(m1 / 128, p.w.scale_inv.dim(0));
  }
  b.out = p.out2;
  return {a, b};
}

OpNumerics parse_op_numerics(const std::string& s, const char* what) {
  if (s.empty()) return OpNumerics::kFromEnv;
  if (s == "fast") return OpNumerics::kFast;
  if (s == "reference") return OpNumerics::kReference;
  FAIL("{}={}: expected fast (the default) or reference (every CUDA op bit for bit the CPU reference's; slow)", what,
       s);
}

}  // namespace dsv3
