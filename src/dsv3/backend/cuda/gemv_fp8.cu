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
// Reference: CpuBackend::linear (FP8); checked by tests/ops cases linear(... path=gemv).
#include <cuda_fp8.h>

#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kWarps = 8, kThreads = kWarps * 32;

// Weights are read once: keep them out of L1 so that the tokens' codes (re-read by every warp) stay there.
__device__ __forceinline__ uint4 ld_stream16(const uint8_t* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// 16 bytes row[k .. k+16) with zeros past `len` (the partial last K block must add nothing).
// kVec: len % 16 == 0 and the row 16-byte aligned, so a chunk is either wholly inside or wholly outside; the load
// is unconditional (from a clamped address) and the zeros are a select, so no branch separates the loads in flight.
template <bool kVec, bool kStream>
__device__ __forceinline__ uint4 load16(const uint8_t* row, int k, int len) {
  if constexpr (kVec) {
    const uint8_t* p = row + min(k, len - 16);
    uint4 v;
    if constexpr (kStream) v = ld_stream16(p);
    else v = __ldg(reinterpret_cast<const uint4*>(p));
    const bool in = k < len;
    return make_uint4(in ? v.x : 0u, in ? v.y : 0u, in ? v.z : 0u, in ? v.w : 0u);
  } else {
    uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
    for (int i = 0; i < 16; ++i)
      if (k + i < len) w[i / 4] |= static_cast<uint32_t>(__ldg(row + k + i)) << (8 * (i % 4));
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// d = A(16x32 e4m3) · B(32x8 e4m3), fp32 out, from a zero accumulator.
__device__ __forceinline__ void mma_e4m3(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %10, %10, %10};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(0.f));
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// R: 8-row tiles per warp (2 halves the codes re-read per weight byte at 16 tokens). kVec: 16-byte loads.
// kHi: tokens 8..15 exist (otherwise the mma's upper A rows are constant zero).
// Lane (g = lane/4, q = lane%4): weight row n0 + 8r + g; token rows g and g + 8; K bytes 64j + 16q .. +16 of
// each 128-K block (j = 0, 1); the accumulator entries i: token g + 8·(i/2), output column n0 + 8r + 2q + i%2.
template <int R, bool kVec, bool kHi>
__global__ void __launch_bounds__(kThreads, 2) linear_fp8_gemv_kernel(const LinearFp8GemvArgs a, int wpt) {
  // 128-K blocks in flight per warp: 2·R·kU 16-byte weight loads per lane. (256, 2) caps the registers at 128, which
  // holds them all (ptxas -v: no spills) and leaves 16 warps per SM; the bytewise path keeps one block.
  constexpr int kU = kVec ? 4 / R : 1;
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
    // Token rows past n read row n-1: the mma keeps A's rows apart, so they only reach accumulator rows that are
    // never stored (and their scales are zero).
    const bool lo_ok = g < a.n, hi_ok = kHi && g + 8 < a.n;
    const uint8_t* alo = a.codes + static_cast<int64_t>(min(g, a.n - 1)) * a.k;
    const uint8_t* ahi = a.codes + static_cast<int64_t>(min(g + 8, a.n - 1)) * a.k;
    const float* swr = a.sw + static_cast<int64_t>(n0 / 128) * kb;  // 8·R divides 128: one scale row per tile
    for (int b0 = part; b0 < kb; b0 += wpt * kU) {
      uint4 wv[kU][R][2], al[kU][2], ah[kU][2];
      float s_lo[kU], s_hi[kU];
      // Issue every load of the kU blocks before the first mma. Blocks past kb re-read block kb-1 (finite codes)
      // with zero scales, which keeps the loads unconditional.
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const bool ok = b0 + u * wpt < kb;
        const int b = min(b0 + u * wpt, kb - 1);
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int k = b * 128 + 64 * j + 16 * q;
#pragma unroll
          for (int r = 0; r < R; ++r) wv[u][r][j] = load16<kVec, true>(wrow[r], k, a.k);
          al[u][j] = load16<kVec, false>(alo, k, a.k);
          ah[u][j] = kHi ? load16<kVec, false>(ahi, k, a.k) : make_uint4(0, 0, 0, 0);
        }
        const float sw = __ldg(swr + b);
        const float sl = __ldg(a.sa + static_cast<int64_t>(b) * a.n + min(g, a.n - 1)) * sw;
        const float sh = kHi ? __ldg(a.sa + static_cast<int64_t>(b) * a.n + min(g + 8, a.n - 1)) * sw : 0.f;
        s_lo[u] = ok && lo_ok ? sl : 0.f;
        s_hi[u] = ok && hi_ok ? sh : 0.f;
      }
#pragma unroll
      for (int u = 0; u < kU; ++u) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float blk[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
          for (int j = 0; j < 2; ++j) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {  // K bytes 8h .. 8h+8 of the lane's 16: slots a0/b0 and a2/b1
              float d[4];
              const uint32_t hi0 = kHi ? word(ah[u][j], 2 * h) : 0u, hi1 = kHi ? word(ah[u][j], 2 * h + 1) : 0u;
              mma_e4m3(d, word(al[u][j], 2 * h), hi0, word(al[u][j], 2 * h + 1), hi1, word(wv[u][r][j], 2 * h),
                       word(wv[u][r][j], 2 * h + 1));
#pragma unroll
              for (int i = 0; i < 4; ++i) blk[i] += d[i];
            }
          }
          acc[r][0] += blk[0] * s_lo[u];
          acc[r][1] += blk[1] * s_lo[u];
          acc[r][2] += blk[2] * s_hi[u];
          acc[r][3] += blk[3] * s_hi[u];
        }
      }
    }
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
