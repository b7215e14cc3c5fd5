// cpu_sample.cpp: CpuBackend::sample — next-token sampling of logits rows by base/sampling.h, the same code as the
// engine's Sampler (backend/cpu). The reference of the CUDA kernel (backend/cuda/sample.cu, tests/ops "sample").
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

}  // namespace dsv3
