// bench_percentiles.h: PercentileStats and the nearest-rank rule of trtllm-bench (tools/common).
// interfaces.md §2.4: sorted[int(n*q)] for q = 0.5, 0.9, 0.95, 0.99, no interpolation; average = sum / n over the
// values in their given order; min and max. Shared by the dataset block and every per-request metric.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv3 {

struct PercentileStats {
  double p50 = 0, p90 = 0, p95 = 0, p99 = 0;
  double minimum = 0, maximum = 0, average = 0;
  bool operator==(const PercentileStats&) const = default;
};

// The rank trtllm-bench reads for quantile q of n sorted values: int(n * q) in double arithmetic, as Python does.
size_t nearest_rank_index(size_t n, double q);

// Both throw dsv3::Error on an empty list (nothing to report).
PercentileStats percentile_stats(const std::vector<double>& values);
// Integer values are summed exactly (Python ints) before the one division.
PercentileStats percentile_stats(const std::vector<int64_t>& values);

// Every field multiplied by `factor` (ns -> ms is 1e-6, tokens/ns -> tokens/s is 1e9), as the report does per key.
PercentileStats scaled(const PercentileStats& s, double factor);

}  // namespace dsv3
