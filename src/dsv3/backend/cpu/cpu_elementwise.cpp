// cpu_elementwise.cpp: RMSNorm (+ fused residual add), embedding, RoPE, SwiGLU, add (backend/cpu).
// The arithmetic is backend/ref_math.h's (exp, sin/cos, every multiply and add, the bf16 rounding), which the CUDA
// backend's reference numerics run too (backend/cuda/reference.cu); threads split rows or elements, never a sum.
#include <cmath>
#include <cstring>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/ref_math.h"
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
      const uint16_t* xr = &x[t * xs].bits;
      if (res) {  // residual <- bf16(residual + x); the norm reads the new residual
        uint16_t* rr = &res[t * dim].bits;
        for (int64_t i = 0; i < dim; ++i) rr[i] = ref::add_bf16(rr[i], xr[i]);
        xr = rr;
      }
      const float r = ref::inv_rms(ref::sum_squares(xr, dim), dim, p.eps);
      bf16* o = out + t * os;
      for (int64_t i = 0; i < dim; ++i) o[i].bits = ref::rms_out(xr[i], r, w[i].bits);
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
        float sn, cs;
        ref::sincos(ref::rope_theta(pos[t], f[i]), &sn, &cs);  // θ = fp32(p · f_i), §3.6 step 5
        for (int64_t h = 0; h < heads; ++h) {
          bf16* v = x + (t * heads + h) * stride + p.offset + 2 * i;
          ref::rope_pair(&v[0].bits, &v[1].bits, cs, sn);
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
    for (int64_t i = b; i < e; ++i) o[i].bits = ref::silu_mul(g[i].bits, u[i].bits);
  }, 4096);
}

void CpuBackend::add(const AddParams& p) {
  const int64_t n = p.a.numel();
  for (int64_t i = 0; i < n; ++i)
    p.out.as<bf16>()[i].bits = ref::add_bf16(p.a.as<const bf16>()[i].bits, p.b.as<const bf16>()[i].bits);
}

}  // namespace dsv3
