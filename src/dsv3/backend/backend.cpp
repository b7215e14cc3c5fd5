// backend.cpp: the defaults of Backend's optional members (backend).
#include "dsv3/backend/backend.h"

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

}  // namespace dsv3
