// synthetic.cpp: the deterministic weight generator on the host (io). The element rules are base/synth_rules.h;
// the conversions are numeric.h's reference ones (f32_to_bf16, f32_to_fp8e4m3), independent of the device's.
#include "dsv3/io/synthetic.h"

#include <algorithm>
#include <cmath>

#include "dsv3/base/numeric.h"
#include "dsv3/base/thread_pool.h"

namespace dsv3 {

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

SynthRule synth_rule(const TensorSpec& spec, uint64_t seed) {
  SynthRule r;
  r.key = synth_key(seed, hash_name(spec.name));
  switch (spec.role) {
    case TensorRole::kEmbedding: r.kind = SynthKind::kUniform; r.std = 1.0f; return r;
    case TensorRole::kNorm: r.kind = SynthKind::kNorm; return r;
    case TensorRole::kLinear:
    case TensorRole::kLinearBf16:
      r.kind = SynthKind::kUniform;
      r.std = 1.0f / std::sqrt(static_cast<float>(spec.shape[1]));
      return r;
    case TensorRole::kBias: r.kind = SynthKind::kBias; return r;
    case TensorRole::kScaleInv: break;
  }
  CHECK(false, "synth_rule: tensor {} has no direct generator (scale_inv comes with its weight)", spec.name);
  return r;
}

void synth_fill(const TensorSpec& spec, uint64_t seed, void* out) {
  const SynthRule rule = synth_rule(spec, seed);
  const int64_t n = spec.shape.numel();
  parallel_for(n, [&](int64_t b, int64_t e) {
    if (spec.dtype == DType::kBF16) {
      bf16* o = static_cast<bf16*>(out);
      for (int64_t i = b; i < e; ++i) o[i] = f32_to_bf16(synth_value(rule, i));
    } else {
      CHECK(spec.dtype == DType::kF32, "synth_fill: dtype {} for {}", dtype_name(spec.dtype), spec.name);
      float* o = static_cast<float*>(out);
      for (int64_t i = b; i < e; ++i) o[i] = synth_value(rule, i);
    }
  }, 4096);
}

void synth_fp8_linear(const TensorSpec& w, uint64_t seed, uint8_t* codes, float* scale_inv) {
  CHECK(w.role == TensorRole::kLinear && w.dtype == DType::kFP8E4M3, "synth_fp8_linear on {}", w.name);
  const SynthRule rule = synth_rule(w, seed);
  const int64_t rows = w.shape[0], cols = w.shape[1], B = kSynthFp8Block;
  const int64_t br = ceil_div(rows, B), bc = ceil_div(cols, B);
  parallel_for(br * bc, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t bi = blk / bc, bj = blk % bc;
      const int64_t r0 = bi * B, r1 = std::min(rows, r0 + B), c0 = bj * B, c1 = std::min(cols, c0 + B);
      const float amp = synth_block_amp(rule.key, blk);
      float amax = 0.f;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(synth_fp8_prequant(rule, amp, r * cols + c)));
      const float s = synth_fp8_scale(amax);
      scale_inv[blk] = s;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c)
          codes[r * cols + c] = f32_to_fp8e4m3(synth_div(synth_fp8_prequant(rule, amp, r * cols + c), s));
    }
  });
}

}  // namespace dsv3
