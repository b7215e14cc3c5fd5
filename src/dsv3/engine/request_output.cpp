// request_output.cpp: the handle's blocking queue (engine).
#include "dsv3/engine/request_output.h"

namespace dsv3 {

bool RequestHandle::next(RequestOutput& out) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || done_; });
  if (queue_.empty()) return false;
  out = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

RequestOutput RequestHandle::wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_; });
  return *last_;
}

bool RequestHandle::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

void RequestHandle::push(RequestOutput out) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;
    done_ = out.finished;
    last_ = out;
    queue_.push_back(std::move(out));
  }
  cv_.notify_all();
}

}  // namespace dsv3
