// bench_percentiles.cpp: nearest-rank percentile statistics (tools/common); see bench_percentiles.h.
#include "common/bench_percentiles.h"

#include <algorithm>

#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

template <typename T>
PercentileStats stats_of(const std::vector<T>& values, double average) {
  std::vector<T> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  PercentileStats s;
  s.p50 = static_cast<double>(sorted[nearest_rank_index(n, 0.50)]);
  s.p90 = static_cast<double>(sorted[nearest_rank_index(n, 0.90)]);
  s.p95 = static_cast<double>(sorted[nearest_rank_index(n, 0.95)]);
  s.p99 = static_cast<double>(sorted[nearest_rank_index(n, 0.99)]);
  s.minimum = static_cast<double>(sorted.front());
  s.maximum = static_cast<double>(sorted.back());
  s.average = average;
  return s;
}

}  // namespace

size_t nearest_rank_index(size_t n, double q) {
  CHECK(n > 0 && q >= 0.0 && q < 1.0, "nearest_rank_index(%zu, %g)", n, q);
  return static_cast<size_t>(static_cast<double>(n) * q);  // truncation, like Python's int()
}

PercentileStats percentile_stats(const std::vector<double>& values) {
  EXPECT(!values.empty(), "no values to compute percentiles over (were all requests warm-up?)");
  double sum = 0.0;
  for (double v : values) sum += v;
  return stats_of(values, sum / static_cast<double>(values.size()));
}

PercentileStats percentile_stats(const std::vector<int64_t>& values) {
  EXPECT(!values.empty(), "no values to compute percentiles over (were all requests warm-up?)");
  int64_t sum = 0;
  for (int64_t v : values) sum += v;
  return stats_of(values, static_cast<double>(sum) / static_cast<double>(values.size()));
}

PercentileStats scaled(const PercentileStats& s, double f) {
  return {s.p50 * f, s.p90 * f, s.p95 * f, s.p99 * f, s.minimum * f, s.maximum * f, s.average * f};
}

}  // namespace dsv3
