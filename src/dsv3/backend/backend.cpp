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

OpNumerics parse_op_numerics(const std::string& s, const char* what) {
  if (s.empty()) return OpNumerics::kFromEnv;
  if (s == "fast") return OpNumerics::kFast;
  if (s == "reference") return OpNumerics::kReference;
  FAIL("{}={}: expected fast (the default) or reference (every CUDA op bit for bit the CPU reference's; slow)", what,
       s);
}

}  // namespace dsv3
