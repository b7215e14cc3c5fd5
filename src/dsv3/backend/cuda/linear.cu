// linear.cu: FP8 activation quantization (1x128 groups) and the fallback GEMMs (backend/cuda).
// Parallelisation: quantize one warp per (token, 128-group); gemm_fallback 16 tokens x 64 outputs per block,
// 4 outputs per thread, K in chunks of 128 staged in shared memory; batched fallback one thread per output.
// Precision: quantization bitwise equal to quantize_row_fp8 (RNE, saturating e4m3); the fallbacks sum in the CPU
// reference's order with explicit _rn operations, so they are bitwise equal to CpuBackend::linear / mla_absorb_*.
// The fast paths are cuBLASLt (gemm.cpp); these kernels serve the shapes it rejects.
// Reference: CpuBackend::linear; checked by tests/ops cases linear_* and mla_absorb_*.
#include "dsv3/backend/cuda/fp8.cuh"

namespace dsv3::cuda {
namespace {

// One warp per (row t, group g).
__global__ void quantize_fp8_kernel(const QuantArgs a) {
  const int kb = (a.k + 127) / 128;
  const int64_t job = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
  if (job >= static_cast<int64_t>(a.n) * kb) return;
  const int t = static_cast<int>(job / kb), g = static_cast<int>(job % kb);
  const int lo = g * 128, hi = min(a.k, lo + 128);
  const float s = fp8_quantize_group_warp(a.x + static_cast<int64_t>(t) * a.x_stride,
                                          a.codes + static_cast<int64_t>(t) * a.k, lo, hi, a.ue8m0);
  if ((threadIdx.x & 31) == 0) a.scales[static_cast<int64_t>(g) * a.n + t] = s;
}

constexpr int kFbTokens = 16, kFbOut = 64, kFbK = 128, kFbThreads = 256;

__global__ void __launch_bounds__(kFbThreads) gemm_fallback_kernel(const GemmFallbackArgs a) {
  __shared__ float at[kFbTokens][kFbK];
  __shared__ float wt[kFbOut][kFbK + 1];
  const int t0 = blockIdx.y * kFbTokens, j0 = blockIdx.x * kFbOut;
  const int tl = threadIdx.x / 16, jl = threadIdx.x % 16;
  const int kb = (a.k + kFbK - 1) / kFbK;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int g = 0; g < kb; ++g) {
    const int lo = g * kFbK, len = min(kFbK, a.k - lo);
    __syncthreads();
    for (int e = threadIdx.x; e < kFbTokens * kFbK; e += kFbThreads) {
      const int r = e / kFbK, c = e % kFbK, t = t0 + r;
      float v = 0.f;
      if (t < a.n && c < len) {
        if (a.fp8) v = fp8_to_float(static_cast<const uint8_t*>(a.a)[static_cast<int64_t>(t) * a.k + lo + c]);
        else v = ld_bf16(static_cast<const bf16_t*>(a.a) + static_cast<int64_t>(t) * a.a_stride + lo + c);
      }
      at[r][c] = v;
    }
    for (int e = threadIdx.x; e < kFbOut * kFbK; e += kFbThreads) {
      const int r = e / kFbK, c = e % kFbK, j = j0 + r;
      float v = 0.f;
      if (j < a.m && c < len) {
        const int64_t idx = static_cast<int64_t>(j) * a.k + lo + c;
        v = a.fp8 ? fp8_to_float(static_cast<const uint8_t*>(a.w)[idx]) : ld_bf16(static_cast<const bf16_t*>(a.w) + idx);
      }
      wt[r][c] = v;
    }
    __syncthreads();
    const int t = t0 + tl;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int jr = jl + 16 * q, j = j0 + jr;
      if (a.fp8) {
        float blk = 0.f;
        for (int c = 0; c < len; ++c) blk = __fadd_rn(blk, __fmul_rn(at[tl][c], wt[jr][c]));
        if (t < a.n && j < a.m) {
          const float sc = __fmul_rn(a.sa[static_cast<int64_t>(g) * a.n + t], a.sw[static_cast<int64_t>(j / 128) * kb + g]);
          acc[q] = __fadd_rn(acc[q], __fmul_rn(blk, sc));
        }
      } else {
        for (int c = 0; c < len; ++c) acc[q] = __fadd_rn(acc[q], __fmul_rn(at[tl][c], wt[jr][c]));
      }
    }
  }
  const int t = t0 + tl;
  if (t >= a.n) return;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const int j = j0 + jl + 16 * q;
    if (j >= a.m) continue;
    const int64_t o = static_cast<int64_t>(t) * a.m + j;
    if (a.out_f32) static_cast<float*>(a.out)[o] = acc[q];
    else static_cast<bf16_t*>(a.out)[o] = to_bf16(acc[q]);
  }
}

__global__ void batched_gemm_fallback_kernel(const BatchedGemmArgs a) {
  const int64_t total = static_cast<int64_t>(a.batch) * a.rows * a.cols;
  for (int64_t job = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; job < total;
       job += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(job % a.cols);
    const int i = static_cast<int>((job / a.cols) % a.rows);
    const int b = static_cast<int>(job / (static_cast<int64_t>(a.cols) * a.rows));
    const bf16_t* ar = a.a + b * a.a_batch + i * a.a_row;
    const bf16_t* bc = a.b + b * a.b_batch + j * a.b_col;
    float acc = 0.f;
    for (int l = 0; l < a.inner; ++l) acc = __fadd_rn(acc, __fmul_rn(ld_bf16(ar + l * a.a_col), ld_bf16(bc + l * a.b_row)));
    a.c[b * a.c_batch + i * a.c_row + j] = to_bf16(acc);
  }
}

}  // namespace

void launch_quantize_fp8(const QuantArgs& a, cudaStream_t s) {
  const int64_t warps = static_cast<int64_t>(a.n) * ((a.k + 127) / 128);
  if (warps == 0) return;
  quantize_fp8_kernel<<<static_cast<unsigned>((warps + 3) / 4), 128, 0, s>>>(a);
}

void launch_gemm_fallback(const GemmFallbackArgs& a, cudaStream_t s) {
  if (a.n == 0 || a.m == 0) return;
  const dim3 grid((a.m + kFbOut - 1) / kFbOut, (a.n + kFbTokens - 1) / kFbTokens);
  gemm_fallback_kernel<<<grid, kFbThreads, 0, s>>>(a);
}

void launch_batched_gemm_fallback(const BatchedGemmArgs& a, cudaStream_t s) {
  const int64_t total = static_cast<int64_t>(a.batch) * a.rows * a.cols;
  if (total == 0) return;
  batched_gemm_fallback_kernel<<<grid_for(total, 256, 132 * 32), 256, 0, s>>>(a);
}

}  // namespace dsv3::cuda
