// op_profiler.h: per-op GPU times of the CUDA backend from CUDA events (DSV3_PROFILE=1) (backend/cuda).
// Why: end-to-end step times say nothing about which op to fix. Each public op records an event before and after
// its launches; at synchronize() the pairs are resolved into per-label totals, and the table (calls, total ms, mean
// µs, share of the GPU time) is printed to stderr when the backend dies. Labels are the op's last launch label
// ("linear (fp8 gemv)"), so paths show separately; ops nested in another op (moe_experts' linears) are listed under
// their parent and not counted twice. "gpu idle" is the time between ops inside one synchronize window: host-bound.
// Events add a few µs per op: profile for where time goes, not for absolute step times.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "dsv3/backend/cuda/cuda_utils.h"

namespace dsv3::cuda {

class OpProfiler {
 public:
  explicit OpProfiler(cudaStream_t stream) : stream_(stream) {}

  class Scope {
   public:
    Scope(OpProfiler* p, const char* op) : p_(p) {
      if (p_) p_->begin(op);
    }
    ~Scope() {
      if (p_) p_->end();
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    OpProfiler* p_;
  };

  void label(const char* what);  // the current op's path (from launched())
  void collect();                // resolves finished events (the stream must be idle)
  void print() const;

 private:
  struct Open {
    std::string op, label;
    size_t start;  // event index
    int depth;
  };
  struct Done {
    std::string label;
    size_t start, end;
    int depth;
  };
  struct Total {
    int64_t calls = 0;
    double ms = 0;
  };
  void begin(const char* op);
  void end();
  size_t record();

  cudaStream_t stream_;
  std::vector<Event> pool_;    // events, reused after collect()
  size_t used_ = 0;
  std::vector<Open> open_;
  std::vector<Done> done_;
  std::map<std::string, Total> totals_;
  double busy_ms_ = 0, span_ms_ = 0;
};

}  // namespace dsv3::cuda
