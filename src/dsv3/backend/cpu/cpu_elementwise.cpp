// cpu_elementwise.cpp: RMSNorm (+ fused residual add), embedding, RoPE, SwiGLU, add (backend/cpu).
#include <cmath>
#include <cstring>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/base/thread_pool.h"

namespace dsv3 {

void CpuBackend::copy(const TensorView& dst, const TensorView& src) {
  CHECK(dst.nbytes() == src.nbytes(), "copy: {} bytes to {} bytes", src.nbytes(), dst.nbytes());
  std::memcpy(dst.data, src.data, src.nbytes());
}

void CpuBackend::rms_norm(const RmsNormParams& p) {
  validate(p);
  const int64_t dim = p.weight.dim(0);
  const int64_t xs = p.x_stride ? p.x_stride : dim, os = p.out_stride ? p.out_stride : dim;
  const int64_t n = p.x.numel() / (p.x_stride ? p.x_stride : dim);
  const bf16* x = p.x.as<const bf16>();
  const bf16* w = p.weight.as<const bf16>();
  bf16* out = p.out.as<bf16>();
  bf16* res = p.residual ? p.residual.as<bf16>() : nullptr;
  parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const bf16* xr = x + t * xs;
      if (res) {  // residual <- bf16(residual + x); the norm reads the new residual
        bf16* rr = res + t * dim;
        for (int64_t i = 0; i < dim; ++i) rr[i] = f32_to_bf16(bf16_to_f32(rr[i]) + bf16_to_f32(xr[i]));
        xr = rr;
      }
      float ss = 0.f;
      for (int64_t i = 0; i < dim; ++i) {
        float v = bf16_to_f32(xr[i]);
        ss += v * v;
      }
      const float r = 1.0f / std::sqrt(ss / static_cast<float>(dim) + p.eps);
      bf16* o = out + t * os;
      for (int64_t i = 0; i < dim; ++i) o[i] = f32_to_bf16(bf16_to_f32(xr[i]) * r * bf16_to_f32(w[i]));
    }
  });
}

void CpuBackend::embedding(const EmbeddingParams& p) {
  const int64_t n = p.ids.numel(), d = p.table.dim(1), vocab = p.table.dim(0);
  const int32_t* ids = p.ids.as<const int32_t>();
  for (int64_t t = 0; t < n; ++t) {
    EXPECT(ids[t] >= 0 && ids[t] < vocab, "embedding: token id {} outside the vocabulary [0, {})", ids[t], vocab);
    std::memcpy(p.out.as<bf16>() + t * d, p.table.as<const bf16>() + static_cast<int64_t>(ids[t]) * d, d * 2);
  }
}

void CpuBackend::rope(const RopeParams& p) {
  const int64_t n = p.x.dim(0), heads = p.x.dim(1), stride = p.x.dim(2);
  const int64_t half = p.inv_freq.numel();
  EXPECT(p.offset + 2 * half <= stride, "rope: dims [{}, {}) outside head width {}", p.offset, p.offset + 2 * half,
         stride);
  const int32_t* pos = p.positions.as<const int32_t>();
  const float* f = p.inv_freq.as<const float>();
  bf16* x = p.x.as<bf16>();
  parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      for (int64_t i = 0; i < half; ++i) {
        const float theta = static_cast<float>(pos[t]) * f[i];  // fp32(p · f_i), §3.6 step 5
        const float c = std::cos(theta), s = std::sin(theta);
        for (int64_t h = 0; h < heads; ++h) {
          bf16* v = x + (t * heads + h) * stride + p.offset + 2 * i;
          const float x0 = bf16_to_f32(v[0]), x1 = bf16_to_f32(v[1]);
          v[0] = f32_to_bf16(x0 * c - x1 * s);
          v[1] = f32_to_bf16(x0 * s + x1 * c);
        }
      }
    }
  });
}

void CpuBackend::silu_mul(const SiluMulParams& p) {
  const int64_t n = p.gate.numel();
  const bf16* g = p.gate.as<const bf16>();
  const bf16* u = p.up.as<const bf16>();
  bf16* o = p.out.as<bf16>();
  parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) o[i] = f32_to_bf16(silu(bf16_to_f32(g[i])) * bf16_to_f32(u[i]));
  }, 4096);
}

void CpuBackend::add(const AddParams& p) {
  const int64_t n = p.a.numel();
  for (int64_t i = 0; i < n; ++i)
    p.out.as<bf16>()[i] = f32_to_bf16(bf16_to_f32(p.a.as<const bf16>()[i]) + bf16_to_f32(p.b.as<const bf16>()[i]));
}

}  // namespace dsv3
