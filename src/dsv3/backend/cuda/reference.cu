// reference.cu: reference-numerics kernels of the elementwise ops, the FP8 activation quantization, the linears and
// the MLA absorptions (backend/cuda; DSV3_NUMERICS=reference). Every output comes from backend/ref_math.h's functions
// in CpuBackend's order, so it is CpuBackend's bit for bit for any input; bf16 tensors are read as uint16_t bits.
// Parallelisation: rms_norm one block per row (thread 0 sums the squares in order, the outputs in parallel); rope one
// thread per (token, pair); silu_mul, add, linear, absorb_q/v one thread per output element (grid-stride); the
// quantization one thread per (row, 128-group). Slow by design (tiny models); built with --fmad=false as well.
// Reference: CpuBackend (cpu_elementwise.cpp, cpu_linear.cpp, cpu_attention.cpp); tests/ops cases "refnum ...".
#include "dsv3/backend/cuda/common.cuh"
#include "dsv3/backend/ref_math.h"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ const uint16_t* u16(const bf16_t* p) { return reinterpret_cast<const uint16_t*>(p); }
__device__ __forceinline__ uint16_t* u16(bf16_t* p) { return reinterpret_cast<uint16_t*>(p); }

// NOTE: out may alias x (the same row, same stride): each thread reads x[i] before it writes out[i], and thread 0's
// sum has read the whole row before the barrier that precedes every write.
__global__ void ref_rms_norm_kernel(const RmsNormArgs a) {
  __shared__ float r_row;
  const int t = blockIdx.x;
  const uint16_t* xr = u16(a.x) + static_cast<int64_t>(t) * a.x_stride;
  if (a.residual) {  // residual <- bf16(residual + x); the norm reads the new residual
    uint16_t* rr = u16(a.residual) + static_cast<int64_t>(t) * a.dim;
    for (int i = threadIdx.x; i < a.dim; i += blockDim.x) rr[i] = ref::add_bf16(rr[i], xr[i]);
    xr = rr;
    __syncthreads();
  }
  if (threadIdx.x == 0) r_row = ref::inv_rms(ref::sum_squares(xr, a.dim), a.dim, a.eps);
  __syncthreads();
  const float r = r_row;
  uint16_t* o = u16(a.out) + static_cast<int64_t>(t) * a.out_stride;
  for (int i = threadIdx.x; i < a.dim; i += blockDim.x) o[i] = ref::rms_out(xr[i], r, u16(a.weight)[i]);
}

__global__ void ref_rope_kernel(const RopeArgs a) {
  const int64_t job = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (job >= static_cast<int64_t>(a.n) * a.half) return;
  const int t = static_cast<int>(job / a.half), i = static_cast<int>(job % a.half);
  float sn, cs;
  ref::sincos(ref::rope_theta(a.positions[t], a.inv_freq[i]), &sn, &cs);
  for (int h = 0; h < a.heads; ++h) {
    uint16_t* v = u16(a.x) + (static_cast<int64_t>(t) * a.heads + h) * a.head_stride + a.offset + 2 * i;
    ref::rope_pair(v, v + 1, cs, sn);
  }
}

__global__ void ref_silu_mul_kernel(const SiluMulArgs a) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    u16(a.out)[i] = ref::silu_mul(u16(a.gate)[i], u16(a.up)[i]);
}

__global__ void ref_add_kernel(const AddArgs a) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    u16(a.out)[i] = ref::add_bf16(u16(a.a)[i], u16(a.b)[i]);
}

__global__ void ref_quantize_kernel(const RefQuantArgs a) {
  const int kb = (a.k + 127) / 128;
  const int64_t job = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (job >= static_cast<int64_t>(a.n) * kb) return;
  const int t = static_cast<int>(job / kb), g = static_cast<int>(job % kb), lo = g * 128;
  a.scales[job] = ref::quantize_group(u16(a.x) + static_cast<int64_t>(t) * a.x_stride + lo, min(128, a.k - lo),
                                      a.ue8m0, a.codes + static_cast<int64_t>(t) * a.k + lo);
}

// Output o = t·m + j: consecutive threads take consecutive weight rows of one activation row.
__global__ void ref_linear_kernel(const RefLinearArgs a) {
  const int64_t total = static_cast<int64_t>(a.n) * a.m;
  const int kb = (a.k + 127) / 128;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < total;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int t = static_cast<int>(o / a.m), j = static_cast<int>(o % a.m);
    float v;
    if (a.fp8) {
      v = ref::linear_fp8(static_cast<const uint8_t*>(a.a) + static_cast<int64_t>(t) * a.k,
                          static_cast<const uint8_t*>(a.w) + static_cast<int64_t>(j) * a.k,
                          a.sa + static_cast<int64_t>(t) * kb, a.sw + static_cast<int64_t>(j / 128) * kb, a.k);
    } else {
      v = ref::dot(static_cast<const uint16_t*>(a.a) + static_cast<int64_t>(t) * a.a_stride,
                   static_cast<const uint16_t*>(a.w) + static_cast<int64_t>(j) * a.k, a.k);
    }
    if (a.out_f32) static_cast<float*>(a.out)[o] = v;
    else static_cast<uint16_t*>(a.out)[o] = ref::f32_to_bf16(v);
  }
}

// q_abs[t, h, c] = Σ_d q[t, h, d] · W_UK^h[d, c] (d ascending) for c < rank; the rope part copied.
__global__ void ref_absorb_q_kernel(const AbsorbQArgs a) {
  const int out_w = a.rank + a.rope, qd = a.nope + a.rope;
  const int64_t total = static_cast<int64_t>(a.n) * a.heads * out_w;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < total;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int c = static_cast<int>(o % out_w);
    const int64_t th = o / out_w;  // t · heads + h
    const int h = static_cast<int>(th % a.heads);
    const uint16_t* q = u16(a.q) + th * qd;
    if (c >= a.rank) {
      u16(a.q_abs)[o] = q[a.nope + c - a.rank];
      continue;
    }
    const uint16_t* w = u16(a.kv_b) + static_cast<int64_t>(h) * a.per_head * a.rank + c;
    float acc = 0.f;
    for (int d = 0; d < a.nope; ++d) acc = ref::mac(acc, ref::bf16_to_f32(q[d]), ref::bf16_to_f32(w[static_cast<int64_t>(d) * a.rank]));
    u16(a.q_abs)[o] = ref::f32_to_bf16(acc);
  }
}

// out[t, h, v] = Σ_c W_UV^h[v, c] · o[t, h, c] (c ascending).
__global__ void ref_absorb_v_kernel(const AbsorbVArgs a) {
  const int64_t total = static_cast<int64_t>(a.n) * a.heads * a.vd;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < total;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int v = static_cast<int>(o % a.vd);
    const int64_t th = o / a.vd;
    const int h = static_cast<int>(th % a.heads);
    const uint16_t* w = u16(a.kv_b) + (static_cast<int64_t>(h) * a.per_head + a.nope + v) * a.rank;
    u16(a.out)[o] = ref::f32_to_bf16(ref::dot(w, u16(a.o) + th * a.rank, a.rank));
  }
}

unsigned grid_of(int64_t n) { return grid_for(n, kThreads, 132LL * 64); }

}  // namespace

void launch_ref_rms_norm(const RmsNormArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  ref_rms_norm_kernel<<<a.n, kThreads, 0, s>>>(a);
}

void launch_ref_rope(const RopeArgs& a, cudaStream_t s) {
  const int64_t jobs = static_cast<int64_t>(a.n) * a.half;
  if (jobs == 0) return;
  ref_rope_kernel<<<static_cast<unsigned>((jobs + 127) / 128), 128, 0, s>>>(a);
}

void launch_ref_silu_mul(const SiluMulArgs& a, cudaStream_t s) {
  if (a.count == 0) return;
  ref_silu_mul_kernel<<<grid_of(a.count), kThreads, 0, s>>>(a);
}

void launch_ref_add(const AddArgs& a, cudaStream_t s) {
  if (a.count == 0) return;
  ref_add_kernel<<<grid_of(a.count), kThreads, 0, s>>>(a);
}

void launch_ref_quantize_fp8(const RefQuantArgs& a, cudaStream_t s) {
  const int64_t jobs = static_cast<int64_t>(a.n) * ((a.k + 127) / 128);
  if (jobs == 0) return;
  ref_quantize_kernel<<<static_cast<unsigned>((jobs + 127) / 128), 128, 0, s>>>(a);
}

void launch_ref_linear(const RefLinearArgs& a, cudaStream_t s) {
  const int64_t total = static_cast<int64_t>(a.n) * a.m;
  if (total == 0) return;
  ref_linear_kernel<<<grid_of(total), kThreads, 0, s>>>(a);
}

void launch_ref_absorb_q(const AbsorbQArgs& a, cudaStream_t s) {
  const int64_t total = static_cast<int64_t>(a.n) * a.heads * (a.rank + a.rope);
  if (total == 0) return;
  ref_absorb_q_kernel<<<grid_of(total), kThreads, 0, s>>>(a);
}

void launch_ref_absorb_v(const AbsorbVArgs& a, cudaStream_t s) {
  const int64_t total = static_cast<int64_t>(a.n) * a.heads * a.vd;
  if (total == 0) return;
  ref_absorb_v_kernel<<<grid_of(total), kThreads, 0, s>>>(a);
}

}  // namespace dsv3::cuda
