// ops_perf.h: test_ops --perf (tests/ops): the timing loop, the H200 ceilings the tables print shares of, and the
// perf tables main runs (perf_linear.cpp, perf_attention.cpp, perf_moe.cpp, perf_sample_upload.cpp).
#pragma once

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "dsv3/backend/backend.h"
#include "dsv3/base/timer.h"
#include "ops_env.h"

namespace dsv3::ops_test {

// ------------------------------------------------------------------------------------------------- perf

inline double time_it(Backend& gpu, const std::function<void(int)>& fn) {
  fn(0);
  gpu.synchronize();
  double t0 = now_seconds();
  fn(1);
  gpu.synchronize();
  const double one = now_seconds() - t0;
  const int iters = std::clamp(static_cast<int>(0.02 / std::max(one, 1e-6)), 3, 200);
  std::vector<double> samples;
  for (int rep = 0; rep < 5; ++rep) {
    t0 = now_seconds();
    for (int i = 0; i < iters; ++i) fn(i);
    gpu.synchronize();
    samples.push_back((now_seconds() - t0) / iters);
  }
  std::sort(samples.begin(), samples.end());
  return samples[2];
}

// Ceilings measured on the H200 (shared/docs/performance.md).
constexpr double kHbmRead = 4.54e12, kFp8BlockTflops = 1320e12, kBf16Tflops = 810e12;

// perf_linear.cpp
void perf_linear(Env& env);
void perf_linear_stacked(Env& env);
void perf_gemv2_sweep(Env& env, const std::string& pattern);
// perf_attention.cpp
void perf_decode(Env& env, Backend& gpu, const char* label, const std::vector<int>& ctxs,
                 const std::vector<int>& batches, int table_blocks = 0);
void perf_prefill(Env& env);
void perf_absorb(Env& env);
// perf_moe.cpp
void perf_moe(Env& env);
void perf_router(Env& env);
// perf_sample_upload.cpp
void perf_sample(Env& env);
void perf_staged_upload(Env& env);

}  // namespace dsv3::ops_test
