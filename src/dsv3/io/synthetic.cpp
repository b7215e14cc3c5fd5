// synthetic.cpp: the deterministic weight generator (io).
#include "dsv3/io/synthetic.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "dsv3/base/numeric.h"
#include "dsv3/base/thread_pool.h"

namespace dsv3 {

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

namespace {
// Uniform with the given standard deviation.
inline float u_std(uint64_t key, uint64_t i, float std) { return synth_uniform(key, i) * std * 1.7320508f; }

float linear_std(const TensorSpec& s) { return 1.0f / std::sqrt(static_cast<float>(s.shape[1])); }
}  // namespace

void synth_fill(const TensorSpec& spec, uint64_t seed, void* out) {
  const uint64_t key = splitmix64(seed ^ hash_name(spec.name));
  const int64_t n = spec.shape.numel();
  auto gen = [&](int64_t i) -> float {
    switch (spec.role) {
      case TensorRole::kEmbedding: return u_std(key, i, 1.0f);
      case TensorRole::kNorm: return 1.0f + 0.1f * synth_uniform(key, i);
      case TensorRole::kLinear:
      case TensorRole::kLinearBf16: return u_std(key, i, linear_std(spec));
      case TensorRole::kBias: return 0.025f * (synth_uniform(key, i) + 1.0f);
      case TensorRole::kScaleInv: break;
    }
    CHECK(false, "synth_fill: tensor {} has no direct generator", spec.name);
    return 0;
  };
  parallel_for(n, [&](int64_t b, int64_t e) {
    if (spec.dtype == DType::kBF16) {
      bf16* o = static_cast<bf16*>(out);
      for (int64_t i = b; i < e; ++i) o[i] = f32_to_bf16(gen(i));
    } else {
      CHECK(spec.dtype == DType::kF32, "synth_fill: dtype {} for {}", dtype_name(spec.dtype), spec.name);
      float* o = static_cast<float*>(out);
      for (int64_t i = b; i < e; ++i) o[i] = gen(i);
    }
  }, 4096);
}

void synth_fp8_linear(const TensorSpec& w, uint64_t seed, uint8_t* codes, float* scale_inv) {
  CHECK(w.role == TensorRole::kLinear && w.dtype == DType::kFP8E4M3, "synth_fp8_linear on {}", w.name);
  const uint64_t key = splitmix64(seed ^ hash_name(w.name));
  const int64_t rows = w.shape[0], cols = w.shape[1];
  const int64_t br = ceil_div(rows, 128), bc = ceil_div(cols, 128);
  const float std = linear_std(w);
  parallel_for(br * bc, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t bi = blk / bc, bj = blk % bc;
      const int64_t r0 = bi * 128, r1 = std::min(rows, r0 + 128), c0 = bj * 128, c1 = std::min(cols, c0 + 128);
      // Per-block amplitude varies a little so that scales differ between blocks.
      const float amp = 1.0f + 0.25f * synth_uniform(key ^ 0x5ca1e, blk);
      float amax = 0.f;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(amp * u_std(key, r * cols + c, std)));
      const float s = std::max(amax, 1e-12f) / 448.0f;
      scale_inv[blk] = s;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) codes[r * cols + c] = f32_to_fp8e4m3(amp * u_std(key, r * cols + c, std) / s);
    }
  });
}

}  // namespace dsv3
