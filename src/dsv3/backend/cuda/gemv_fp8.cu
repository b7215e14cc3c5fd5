// gemv_fp8.cu: the decode-size FP8 block-scaled GEMM, 1..16 tokens against an e4m3 weight (backend/cuda).
// Decode reads every weight once per step and cuBLASLt refuses M = 1, so this kernel is built for HBM bandwidth:
// out[t, j] = Σ_g (Σ_{i∈g} a[t,i]·w[j,i]) · sa[g,t] · sw[j/128, g], g over the 128-wide K blocks (model-spec §5.4).
// Parallelisation: one warp per (tile of 8·R output rows, every wpt-th 128-K block); the wpt warps of a tile sit in
//   one 256-thread block and add their partial sums through shared memory in a fixed order (deterministic).
//   Each lane streams 16-byte weight vectors (2·R per 128-K block, U blocks in flight) and the matching 16 bytes
//   of the tokens' codes; a tensor-core mma.m16n8k32 (tokens = M rows, padded with zero codes to 16; weight rows
//   = N) forms the products. A and B take their K slots from the same 16-byte vector, so the kernel depends only
//   on the fragment layout's pairing of rows and columns, not on which k each register slot holds.
// Precision: e4m3 x e4m3 products on the tensor cores, each 32-wide partial sum started from zero (the cores add
//   with reduced precision inside one mma) and added in fp32; per 128-K block the sum is scaled by sa·sw in fp32
//   as the reference does; one rounding to bf16 (or none for f32). Summation order differs from the reference.
// The warp core (loads, mma, scales) lives in fp8.cuh, shared with the grouped MoE kernels (moe_grouped.cu).
// Reference: CpuBackend::linear (FP8); checked by tests/ops cases linear(... path=gemv).
#include "dsv3/backend/cuda/fp8.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kWarps = 8, kThreads = kWarps * 32;

// R: 8-row tiles per warp (2 halves the codes re-read per weight byte at 16 tokens). kVec: 16-byte loads.
// kHi: tokens 8..15 exist (otherwise the mma's upper A rows are constant zero). The warp's arithmetic is
// fp8_gemv_warp (fp8.cuh); lane (g = lane/4, q = lane%4) ends with token rows g and g + 8 against output columns
// n0 + 8r + 2q + i%2.
template <int R, bool kVec, bool kHi>
__global__ void __launch_bounds__(kThreads, 2) linear_fp8_gemv_kernel(const LinearFp8GemvArgs a, int wpt) {
  __shared__ float red[kWarps][R * 4][32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int part = warp & (wpt - 1);
  const int n0 = (blockIdx.x * (kWarps / wpt) + warp / wpt) * 8 * R;
  const int kb = (a.k + 127) / 128;
  float acc[R][4];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0.f;
  if (n0 < a.m) {
    const uint8_t* wrow[R];
#pragma unroll
    for (int r = 0; r < R; ++r)  // rows past m read row m-1; their columns are never stored
      wrow[r] = a.w + static_cast<int64_t>(min(n0 + 8 * r + g, a.m - 1)) * a.k;
    // Token rows past n read row n-1 (fp8_gemv_warp zeroes their scales).
    const int tlo = min(g, a.n - 1), thi = min(g + 8, a.n - 1);
    const float* swr = a.sw + static_cast<int64_t>(n0 / 128) * kb;  // 8·R divides 128: one scale row per tile
    fp8_gemv_warp<R, kVec, kHi>(acc, wrow, swr, a.codes + static_cast<int64_t>(tlo) * a.k,
                                a.codes + static_cast<int64_t>(thi) * a.k, a.sa + tlo, a.sa + thi, a.n, g < a.n,
                                kHi && g + 8 < a.n, a.k, part, wpt);
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < 4; ++i) red[warp][r * 4 + i][lane] = acc[r][i];
  __syncthreads();
  if (part != 0 || n0 >= a.m) return;
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float v = 0.f;
      for (int p = 0; p < wpt; ++p) v += red[warp + p][r * 4 + i][lane];
      const int t = g + 8 * (i / 2), j = n0 + 8 * r + 2 * q + (i % 2);
      if (t >= a.n || j >= a.m) continue;
      const int64_t o = static_cast<int64_t>(t) * a.m + j;
      if (a.out_f32) static_cast<float*>(a.out)[o] = v;
      else static_cast<bf16_t*>(a.out)[o] = to_bf16(v);
    }
  }
}

template <int R, bool kVec, bool kHi>
void launch(const LinearFp8GemvArgs& a, int wpt, cudaStream_t s) {
  const int64_t tiles = (a.m + 8 * R - 1) / (8 * R), per_block = kWarps / wpt;
  linear_fp8_gemv_kernel<R, kVec, kHi><<<static_cast<unsigned>((tiles + per_block - 1) / per_block), kThreads, 0, s>>>(a, wpt);
}

}  // namespace

void launch_linear_fp8_gemv(const LinearFp8GemvArgs& a, cudaStream_t s) {
  if (a.n == 0 || a.m == 0) return;
  const int kb = (a.k + 127) / 128;
  int wpt = kWarps;  // warps sharing one tile's K blocks: all 8 unless there are fewer blocks than warps
  while (wpt > 1 && wpt > kb) wpt /= 2;
  const bool vec = a.k % 16 == 0 && reinterpret_cast<uintptr_t>(a.w) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(a.codes) % 16 == 0;
  if (!vec) return launch<1, false, true>(a, wpt, s);
  if (a.n <= 8) return launch<1, true, false>(a, wpt, s);
  // 9..16 tokens: the codes re-read per weight byte double; two tiles per warp halve that where N leaves enough warps.
  if (a.m >= 4096) return launch<2, true, true>(a, wpt, s);
  launch<1, true, true>(a, wpt, s);
}

}  // namespace dsv3::cuda
