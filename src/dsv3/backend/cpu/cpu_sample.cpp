// cpu_sample.cpp: CpuBackend::sample — next-token sampling of logits rows by base/sampling.h, the same code as the
// engine's Sampler (backend/cpu). The reference of the CUDA kernel (backend/cuda/sample.cu, tests/ops "sample").
// Also fill_token_ids, the hand-off of sampled ids to the next step's input (reference of backend/cuda/token_ids.cu).
#include <span>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/base/sampling.h"
#include "dsv3/base/thread_pool.h"

namespace dsv3 {

void CpuBackend::sample(const SampleParams& p) {
  validate(p);
  const int64_t r = p.logits.dim(0), vocab = p.logits.dim(1);
  const int64_t stride = p.logits_stride ? p.logits_stride : vocab;
  const float* logits = p.logits.as<const float>();
  int32_t* tokens = p.tokens.as<int32_t>();
  float* logprobs = p.logprobs ? p.logprobs.as<float>() : nullptr;
  parallel_for(r, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const std::span<const float> row(logits + i * stride, static_cast<size_t>(vocab));
      tokens[i] = sampling::sample_row(row, p.rows[i], logprobs ? logprobs + i : nullptr);
    }
  });
}

void CpuBackend::fill_token_ids(const FillTokenIdsParams& p) {
  validate(p);
  const int64_t m = p.map.dim(0), n = p.ids.dim(0), k = p.src.dim(0);
  const int32_t* map = p.map.as<const int32_t>();
  const int32_t* src = p.src.as<const int32_t>();
  int32_t* ids = p.ids.as<int32_t>();
  for (int64_t j = 0; j < m; ++j) {
    const int32_t row = map[2 * j], idx = map[2 * j + 1];
    CHECK(row >= 0 && row < n && idx >= 0 && idx < k, "fill_token_ids: pair {} = ({}, {}) outside ids [{}] / src [{}]",
          j, row, idx, n, k);
    ids[row] = src[idx] < 0 ? 0 : src[idx];
  }
}

}  // namespace dsv3
