// op_profiler.cpp: OpProfiler — event pairs per op, resolved per synchronize window (backend/cuda).
#include "dsv3/backend/cuda/op_profiler.h"

#include <algorithm>
#include <cstdio>

namespace dsv3::cuda {

size_t OpProfiler::record() {
  if (used_ == pool_.size()) pool_.push_back(make_event());
  CUDA_CHECK(cudaEventRecord(pool_[used_].get(), stream_));
  return used_++;
}

void OpProfiler::begin(const char* op) {
  open_.push_back({op, op, record(), static_cast<int>(open_.size())});
}

void OpProfiler::label(const char* what) {
  if (!open_.empty()) open_.back().label = what;
}

void OpProfiler::end() {
  CHECK(!open_.empty(), "op profiler: end without begin");
  Open o = std::move(open_.back());
  open_.pop_back();
  // Nested ops are keyed under their outermost op's name ("moe_experts |  > linear (fp8 gemv)").
  std::string key = o.depth > 0 ? open_.front().op + " |  > " + o.label : o.label;
  done_.push_back({std::move(key), o.start, record(), o.depth});
}

void OpProfiler::collect() {
  if (!open_.empty()) return;  // inside an op (a nested synchronize): resolve later
  float first_last = 0;
  size_t first = SIZE_MAX, last = 0;
  for (const Done& d : done_) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, pool_[d.start].get(), pool_[d.end].get()));
    Total& t = totals_[d.label];
    ++t.calls;
    t.ms += ms;
    if (d.depth == 0) {
      busy_ms_ += ms;
      first = std::min(first, d.start);
      last = std::max(last, d.end);
    }
  }
  if (first != SIZE_MAX) {
    CUDA_CHECK(cudaEventElapsedTime(&first_last, pool_[first].get(), pool_[last].get()));
    span_ms_ += first_last;
  }
  done_.clear();
  used_ = 0;
}

void OpProfiler::print() const {
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  // Parents by time; a parent's nested rows follow it (their keys start with the parent's label and " |").
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  std::fprintf(stderr, "\n[dsv3 profile] GPU time per op (CUDA events; DSV3_PROFILE=1)\n");
  std::fprintf(stderr, "%-58s %9s %11s %10s %7s\n", "op", "calls", "total ms", "mean us", "share");
  for (const auto& [key, t] : rows) {
    if (key.find(" |") != std::string::npos) continue;
    std::fprintf(stderr, "%-58s %9lld %11.3f %10.2f %6.1f%%\n", key.c_str(), static_cast<long long>(t.calls), t.ms,
                 1e3 * t.ms / static_cast<double>(t.calls), busy_ms_ > 0 ? 100 * t.ms / busy_ms_ : 0.0);
    const std::string parent = key.substr(0, key.find(' ')) + " |";  // the op name of "op (path)"
    for (const auto& [k2, t2] : rows) {
      if (k2.rfind(parent, 0) != 0) continue;
      std::fprintf(stderr, "%-58s %9lld %11.3f %10.2f\n", k2.substr(parent.size()).c_str(),
                   static_cast<long long>(t2.calls), t2.ms, 1e3 * t2.ms / static_cast<double>(t2.calls));
    }
  }
  std::fprintf(stderr, "GPU busy in ops %.3f ms of a %.3f ms span between synchronizations (gpu idle %.3f ms)\n",
               busy_ms_, span_ms_, std::max(0.0, span_ms_ - busy_ms_));
}

}  // namespace dsv3::cuda
