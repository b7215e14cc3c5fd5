// common.cuh: small device helpers shared by the kernels of backend/cuda (bf16 loads, reductions, grid sizes).
// Arithmetic that must match the CPU reference bit for bit uses the explicit _rn intrinsics: nvcc would otherwise
// contract a*b+c into one FMA, which the x86-64 reference (no -mfma) never does.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>

#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/ref_math.h"

namespace dsv3::cuda {

__device__ __forceinline__ float ld_bf16(const bf16_t* p) { return __bfloat162float(*p); }
__device__ __forceinline__ bf16_t to_bf16(float v) { return __float2bfloat16_rn(v); }

// silu(g)·u in fp32 as CpuBackend::silu_mul computes it before its bf16 rounding: the shared ref::silu (ref::exp,
// then g / (1 + e)) and the product, each rounded once.
__device__ __forceinline__ float silu_mul_f32(float g, float u) { return ref::mul(ref::silu(g), u); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; `scratch` holds >= 32 floats. Every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < n_warps ? scratch[lane] : 0.f;
  t = warp_sum(t);
  return t;
}

__device__ __forceinline__ void set_error(uint32_t* err, uint32_t bit) {
  if (err) atomicOr(err, bit);
}

inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535LL * 32) {
  int64_t g = (n + threads - 1) / threads;
  if (g < 1) g = 1;
  if (g > cap) g = cap;
  return static_cast<unsigned>(g);
}

}  // namespace dsv3::cuda
