// cpu_linear.cpp: linear layers on the CPU — bf16 GEMM and the exact FP8 block-scaled emulation (backend/cpu).
// FP8: activations quantized per token per 128 channels (model-spec §5.3), then for every output
// C[m,n] = Σ_kb (Σ_{k∈kb} qa·qw) · sa[m,kb] · sw[n/128,kb] in fp32, cast once (§5.4). The per-output arithmetic is
// backend/ref_math.h's (ref::dot, ref::linear_fp8, ref::quantize_group), shared with the CUDA reference numerics;
// threads split the outputs (or rows), so no sum depends on the split.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/ref_math.h"
#include "dsv3/base/thread_pool.h"

namespace dsv3 {
namespace {

const float* fp8_lut() {
  static float lut[256];
  static bool init = [] {
    for (int i = 0; i < 256; ++i) lut[i] = ref::e4m3_to_f32(static_cast<uint8_t>(i));
    return true;
  }();
  (void)init;
  return lut;
}

void store(const TensorView& out, int64_t i, float v) {
  if (out.dtype == DType::kF32) out.as<float>()[i] = v;
  else out.as<bf16>()[i].bits = ref::f32_to_bf16(v);
}

}  // namespace

void quantize_row_fp8(const float* x, int64_t k, bool ue8m0, uint8_t* codes, float* scales) {
  for (int64_t g = 0; g * 128 < k; ++g) {
    const int64_t b = g * 128, e = std::min(k, b + 128);
    scales[g] = ref::quantize_group(x + b, e - b, ue8m0, codes + b);
  }
}

void CpuBackend::linear(const LinearParams& p) {
  validate(p);
  if (p.out2) {  // each column's sum depends only on its own weight row: the two halves are the stacked op
    const auto [a, b] = split_stacked_linear(p);
    linear(a);
    linear(b);
    return;
  }
  const int64_t n = p.x.dim(0), k = p.x.dim(1), m = p.w.weight.dim(0);
  const int64_t xs = p.x_stride ? p.x_stride : k;
  const int64_t kb = (k + 127) / 128;
  const bf16* x = p.x.as<const bf16>();
  if (p.w.fp8()) {
    // Quantize activations once.
    std::vector<float> xq(static_cast<size_t>(n * k));
    std::vector<float> sa(static_cast<size_t>(n * kb));
    parallel_for(n, [&](int64_t b, int64_t e) {
      std::vector<float> row(static_cast<size_t>(k));
      std::vector<uint8_t> codes(static_cast<size_t>(k));
      for (int64_t t = b; t < e; ++t) {
        for (int64_t i = 0; i < k; ++i) row[i] = bf16_to_f32(x[t * xs + i]);
        quantize_row_fp8(row.data(), k, p.ue8m0, codes.data(), &sa[t * kb]);
        const float* lut = fp8_lut();
        for (int64_t i = 0; i < k; ++i) xq[t * k + i] = lut[codes[i]];
      }
    });
    const uint8_t* w = p.w.weight.as<const uint8_t>();
    const float* sw = p.w.scale_inv.as<const float>();
    parallel_for(m, [&](int64_t b, int64_t e) {
      const float* lut = fp8_lut();
      std::vector<float> wrow(static_cast<size_t>(k));
      for (int64_t j = b; j < e; ++j) {
        for (int64_t i = 0; i < k; ++i) wrow[i] = lut[w[j * k + i]];
        const float* swr = sw + (j / 128) * kb;
        for (int64_t t = 0; t < n; ++t)
          store(p.out, t * m + j, ref::linear_fp8(&xq[t * k], wrow.data(), &sa[t * kb], swr, k));
      }
    });
    return;
  }
  std::vector<float> xf(static_cast<size_t>(n * k));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < k; ++i) xf[t * k + i] = bf16_to_f32(x[t * xs + i]);
  const bf16* w = p.w.weight.as<const bf16>();
  parallel_for(m, [&](int64_t b, int64_t e) {
    std::vector<float> wrow(static_cast<size_t>(k));
    for (int64_t j = b; j < e; ++j) {
      for (int64_t i = 0; i < k; ++i) wrow[i] = bf16_to_f32(w[j * k + i]);
      for (int64_t t = 0; t < n; ++t) store(p.out, t * m + j, ref::dot(&xf[t * k], wrow.data(), k));
    }
  }, 16);
}

}  // namespace dsv3
