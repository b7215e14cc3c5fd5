// elementwise.cu: RMSNorm (+ fused residual add), embedding, RoPE, SwiGLU and add (backend/cuda).
// Parallelisation: rms_norm one block per row, each thread holding 8..32 elements of it in registers (16-byte
// loads, all issued before the first use: a decode step's rows are single, so the kernel is latency-bound and one
// round trip per operand is what it costs; rows that are not 16-byte aligned or wider than 32,768 take the
// shared-memory kernel); embedding one block per token; rope one thread per (token, head, pair); silu_mul/add
// grid-stride over elements.
// Precision: fp32 math with the CPU reference's operation order and rounding points (explicit _rn intrinsics;
// RoPE's sin/cos and SiLU's exp are backend/ref_math.h's, the functions the CPU reference calls).
// Reference: CpuBackend (cpu_elementwise.cpp); checked by tests/ops cases rms_norm, embedding, rope, silu_mul, add.
#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {
namespace {

// One block per row. The row (after the optional residual add) is staged in shared memory as fp32, so out may
// alias x (the row is fully read before it is written).
__global__ void rms_norm_kernel(const RmsNormArgs a) {
  extern __shared__ float row[];  // [dim]
  __shared__ float scratch[32];
  const int t = blockIdx.x;
  const bf16_t* xr = a.x + static_cast<int64_t>(t) * a.x_stride;
  bf16_t* rr = a.residual ? a.residual + static_cast<int64_t>(t) * a.dim : nullptr;
  float ss = 0.f;
  for (int i = threadIdx.x; i < a.dim; i += blockDim.x) {
    float v = ld_bf16(xr + i);
    if (rr) {  // residual <- bf16(residual + x); the norm reads the new residual
      const bf16_t nv = to_bf16(__fadd_rn(ld_bf16(rr + i), v));
      rr[i] = nv;
      v = __bfloat162float(nv);
    }
    row[i] = v;
    ss = __fmaf_rn(v, v, ss);
  }
  ss = block_sum(ss, scratch);
  const float r = 1.0f / sqrtf(__fadd_rn(__fdiv_rn(ss, static_cast<float>(a.dim)), a.eps));
  bf16_t* o = a.out + static_cast<int64_t>(t) * a.out_stride;
  for (int i = threadIdx.x; i < a.dim; i += blockDim.x)
    o[i] = to_bf16(__fmul_rn(__fmul_rn(row[i], r), ld_bf16(a.weight + i)));
}

// The register-resident variant: thread j owns the 16-byte vectors j, j + blockDim.x, ... (kVpt of them) of the row.
// Every load (x, residual, weight) is issued before the first arithmetic; the row is fully read before the block
// sum's barrier, so out may alias x. Same fp32 operations per element as rms_norm_kernel.
template <int kVpt>
__global__ void rms_norm_vec_kernel(const RmsNormArgs a) {
  __shared__ float scratch[32];
  const int t = blockIdx.x, nv = a.dim / 8;
  const bf16_t* xr = a.x + static_cast<int64_t>(t) * a.x_stride;
  bf16_t* rr = a.residual ? a.residual + static_cast<int64_t>(t) * a.dim : nullptr;
  uint4 xv[kVpt], rv[kVpt], wv[kVpt];
#pragma unroll
  for (int u = 0; u < kVpt; ++u) {
    const int j = threadIdx.x + u * blockDim.x;
    if (j < nv) {
      xv[u] = reinterpret_cast<const uint4*>(xr)[j];
      if (rr) rv[u] = reinterpret_cast<const uint4*>(rr)[j];
      wv[u] = reinterpret_cast<const uint4*>(a.weight)[j];
    }
  }
  float v[kVpt][8];
  float ss = 0.f;
#pragma unroll
  for (int u = 0; u < kVpt; ++u) {
    const int j = threadIdx.x + u * blockDim.x;
    if (j >= nv) continue;
    const bf16_t* xe = reinterpret_cast<const bf16_t*>(&xv[u]);
    bf16_t* re = reinterpret_cast<bf16_t*>(&rv[u]);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      float f = __bfloat162float(xe[e]);
      if (rr) {  // residual <- bf16(residual + x); the norm reads the new residual
        re[e] = to_bf16(__fadd_rn(__bfloat162float(re[e]), f));
        f = __bfloat162float(re[e]);
      }
      v[u][e] = f;
      ss = __fmaf_rn(f, f, ss);
    }
    if (rr) reinterpret_cast<uint4*>(rr)[j] = rv[u];
  }
  ss = block_sum(ss, scratch);
  const float r = 1.0f / sqrtf(__fadd_rn(__fdiv_rn(ss, static_cast<float>(a.dim)), a.eps));
  bf16_t* o = a.out + static_cast<int64_t>(t) * a.out_stride;
#pragma unroll
  for (int u = 0; u < kVpt; ++u) {
    const int j = threadIdx.x + u * blockDim.x;
    if (j >= nv) continue;
    const bf16_t* we = reinterpret_cast<const bf16_t*>(&wv[u]);
    uint4 ov;
    bf16_t* oe = reinterpret_cast<bf16_t*>(&ov);
#pragma unroll
    for (int e = 0; e < 8; ++e) oe[e] = to_bf16(__fmul_rn(__fmul_rn(v[u][e], r), __bfloat162float(we[e])));
    reinterpret_cast<uint4*>(o)[j] = ov;
  }
}

__global__ void embedding_kernel(const EmbeddingArgs a) {
  const int t = blockIdx.x;
  const int id = a.ids[t];
  bf16_t* o = a.out + static_cast<int64_t>(t) * a.d;
  if (id < 0 || id >= a.vocab) {
    if (threadIdx.x == 0) set_error(a.err, kErrEmbeddingId);
    for (int i = threadIdx.x; i < a.d; i += blockDim.x) o[i] = to_bf16(0.f);
    return;
  }
  const bf16_t* src = a.table + static_cast<int64_t>(id) * a.d;
  for (int i = threadIdx.x; i < a.d; i += blockDim.x) o[i] = src[i];
}

// One thread per (token, head, pair i): independent read-modify-writes (a loop over the heads in one thread was a
// chain of 128 round trips to memory at one token). The angle's sincos is recomputed per head: cheap next to the load.
__global__ void rope_kernel(const RopeArgs a) {
  const int64_t job = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (job >= static_cast<int64_t>(a.n) * a.heads * a.half) return;
  const int i = static_cast<int>(job % a.half);
  const int64_t th = job / a.half;  // t * heads + h
  const int t = static_cast<int>(th / a.heads);
  bf16_t* v = a.x + th * a.head_stride + a.offset + 2 * i;
  const float x0 = ld_bf16(v), x1 = ld_bf16(v + 1);
  float c, s;  // the reference's sin/cos (backend/ref_math.h) of θ = fp32(p · f_i), §3.6
  ref::sincos(ref::rope_theta(a.positions[t], a.inv_freq[i]), &s, &c);
  v[0] = to_bf16(__fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)));
  v[1] = to_bf16(__fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c)));
}

__global__ void silu_mul_kernel(const SiluMulArgs a) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    a.out[i] = to_bf16(silu_mul_f32(ld_bf16(a.gate + i), ld_bf16(a.up + i)));
  }
}

__global__ void add_kernel(const AddArgs a) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    a.out[i] = to_bf16(__fadd_rn(ld_bf16(a.a + i), ld_bf16(a.b + i)));
}

}  // namespace

void launch_rms_norm(const RmsNormArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  const auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const int nv = a.dim / 8;
  if (a.dim % 8 == 0 && a.x_stride % 8 == 0 && a.out_stride % 8 == 0 && a16(a.x) && a16(a.out) && a16(a.weight) &&
      (!a.residual || a16(a.residual)) && nv <= 4 * 1024) {
    // ~one vector per thread up to 1024 threads, then 2 or 4 per thread
    const int vpt = nv <= 1024 ? 1 : nv <= 2048 ? 2 : 4;
    const int threads = ((nv + vpt - 1) / vpt + 31) / 32 * 32;
    if (vpt == 1) rms_norm_vec_kernel<1><<<a.n, threads, 0, s>>>(a);
    else if (vpt == 2) rms_norm_vec_kernel<2><<<a.n, threads, 0, s>>>(a);
    else rms_norm_vec_kernel<4><<<a.n, threads, 0, s>>>(a);
    return;
  }
  const size_t smem = static_cast<size_t>(a.dim) * sizeof(float);
  if (smem > 48 * 1024)
    cudaFuncSetAttribute(rms_norm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  rms_norm_kernel<<<a.n, 256, smem, s>>>(a);
}

void launch_embedding(const EmbeddingArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  embedding_kernel<<<a.n, 256, 0, s>>>(a);
}

void launch_rope(const RopeArgs& a, cudaStream_t s) {
  const int64_t jobs = static_cast<int64_t>(a.n) * a.heads * a.half;
  if (jobs == 0) return;
  rope_kernel<<<static_cast<unsigned>((jobs + 127) / 128), 128, 0, s>>>(a);
}

void launch_silu_mul(const SiluMulArgs& a, cudaStream_t s) {
  if (a.count == 0) return;
  silu_mul_kernel<<<grid_for(a.count, 256, 132 * 16), 256, 0, s>>>(a);
}

void launch_add(const AddArgs& a, cudaStream_t s) {
  if (a.count == 0) return;
  add_kernel<<<grid_for(a.count, 256, 132 * 16), 256, 0, s>>>(a);
}

}  // namespace dsv3::cuda
