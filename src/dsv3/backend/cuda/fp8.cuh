// fp8.cuh: FP8 device code shared by linear.cu, gemv_fp8.cu, moe_grouped.cu and moe_decode.cu (backend/cuda): the
// 1x128 activation quantization arithmetic (bitwise quantize_row_fp8) and the decode GEMV's warp core — 16-byte
// streaming weight loads, optional L2 prefetch ahead of them, and tensor-core mma.m16n8k32 e4m3 products over 1..16
// activation rows, block scales applied in fp32. The core is one function so that the dense GEMV (linear, 1..16 rows)
// and the MoE kernels (every expert's rows in one launch) share the same arithmetic; each caller maps warps to weight
// rows and reduces across warps.
#pragma once

#include <cuda_fp8.h>

#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {

// ---- activation quantization (model-spec §5.3), bitwise equal to quantize_row_fp8 ----

// The scale of one 128-group from its absolute maximum: amax/448 with a 1e-4 floor on amax; ue8m0 rounds it up to a
// power of two from the fp32 bits (§5.3 step 4).
__device__ __forceinline__ float fp8_group_scale(float amax, bool ue8m0) {
  amax = fmaxf(amax, 1e-4f);
  float s = __fdiv_rn(amax, 448.0f);
  if (ue8m0) {
    const uint32_t u = __float_as_uint(s);
    const int e = static_cast<int>((u >> 23) & 0xff) - 127 + ((u & 0x7fffff) != 0);
    s = ldexpf(1.0f, e);
  }
  return s;
}

// x / s rounded to nearest even, saturated to ±448 (e4m3).
__device__ __forceinline__ uint8_t fp8_encode(float x, float s) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(__fdiv_rn(x, s), __NV_SATFINITE, __NV_E4M3));
}

__device__ __forceinline__ float fp8_to_float(uint8_t code) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(code), __NV_E4M3);
  return __half2float(__half(h));
}

// One warp quantizes one 1x128 group x[lo, hi) of a row (hi - lo <= 128): codes[lo, hi) and the group's scale
// (returned to every lane). Lane l holds elements lo + l + 32·i: the order-free max, then the same division as
// quantize_row_fp8 — bitwise its codes and scale.
__device__ __forceinline__ float fp8_quantize_group_warp(const bf16_t* x_row, uint8_t* codes_row, int lo, int hi,
                                                         bool ue8m0) {
  const int lane = threadIdx.x & 31;
  float v[4];
  float amax = 0.f;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const int i = lo + lane + 32 * q;
    v[q] = i < hi ? ld_bf16(x_row + i) : 0.f;
    amax = fmaxf(amax, fabsf(v[q]));
  }
  amax = warp_max(amax);
  const float s = fp8_group_scale(amax, ue8m0);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const int i = lo + lane + 32 * q;
    if (i < hi) codes_row[i] = fp8_encode(v[q], s);
  }
  return s;
}

// ---- the GEMV core ----

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
// kCg (activations written earlier in the same kernel by other blocks): ld.global.cg, served by L2, never by a
// stale L1 line or the read-only path.
template <bool kVec, bool kStream, bool kCg = false>
__device__ __forceinline__ uint4 load16(const uint8_t* row, int k, int len) {
  if constexpr (kVec) {
    const uint8_t* p = row + min(k, len - 16);
    uint4 v;
    if constexpr (kStream) v = ld_stream16(p);
    else if constexpr (kCg) v = __ldcg(reinterpret_cast<const uint4*>(p));
    else v = __ldg(reinterpret_cast<const uint4*>(p));
    const bool in = k < len;
    return make_uint4(in ? v.x : 0u, in ? v.y : 0u, in ? v.z : 0u, in ? v.w : 0u);
  } else {
    uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
    for (int i = 0; i < 16; ++i)
      if (k + i < len) {
        const uint8_t b = kCg ? __ldcg(row + k + i) : __ldg(row + k + i);
        w[i / 4] |= static_cast<uint32_t>(b) << (8 * (i % 4));
      }
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// A hint: bring the 128-byte line at p into L2 (no register, no completion; the later 16-byte loads then hit L2).
__device__ __forceinline__ void prefetch_l2(const uint8_t* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

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

// One warp's share of out[t, j] = Σ_b (Σ_{i∈b} a[t,i]·w[j,i]) · sa[b,t] · sw[j/128, b] for R 8-row groups of weight
// rows and up to 16 activation rows, over the 128-K blocks b = part, part + wpt, ... (the caller adds the wpt parts
// in a fixed order). Adds into acc, which the caller zeroes.
// Lane (g = lane/4, q = lane%4) supplies weight row 8r + g of each group (wrow[r]) and activation rows g (alo) and
// g + 8 (ahi); it reads K bytes 64j + 16q .. +16 of each 128-K block (j = 0, 1). Accumulator entry acc[r][i] is
// activation row g + 8·(i/2) against weight row 8r + 2q + i%2 of the warp's tile. A and B take their K slots from
// the same 16-byte vector, so the result depends only on the fragment layout's pairing of rows and columns, not on
// which k each register slot holds.
//   swr: the weight scale row of the tile (its 8·R rows share one 128-row scale block): swr[b].
//   sa_lo / sa_hi: the activation scales of rows g / g + 8: sa_lo[b · sa_stride].
//   lo_ok / hi_ok: whether rows g / g + 8 exist. Rows that do not exist must still point at readable codes (the
//   caller clamps them to a real row): the mma keeps A's rows apart, so they only reach accumulator entries that
//   are never stored, and their scales are zeroed here.
// kHi: activation rows 8..15 may exist (otherwise the mma's upper A rows are constant zero and ahi is not read).
// kVec: k % 16 == 0 and every row 16-byte aligned (16-byte loads); otherwise bytewise loads.
// kActCg: activation codes and scales are loaded with ld.global.cg (they were written by other blocks of the same
//   kernel: moe_decode.cu's down items read h that way).
// kb_end: only the 128-K blocks below kb_end (a K range [part, kb_end) with wpt = 1: split-K callers).
// pf (kVec only; 0 = off): each lane issues one L2 prefetch per iteration for the weights pf iterations ahead —
//   lane (g, q) takes row 8·(q % R) + g of block u = q / R, so the warp's 32 lanes cover the 8·R rows x kU blocks of
//   one iteration. Prefetches keep HBM reads in flight beyond what the registers hold.
template <int R, bool kVec, bool kHi, bool kActCg = false>
__device__ __forceinline__ void fp8_gemv_warp(float (&acc)[R][4], const uint8_t* const (&wrow)[R], const float* swr,
                                              const uint8_t* alo, const uint8_t* ahi, const float* sa_lo,
                                              const float* sa_hi, int64_t sa_stride, bool lo_ok, bool hi_ok, int k,
                                              int part, int wpt, int kb_end = 1 << 30, int pf = 0) {
  // 128-K blocks in flight per warp: 2·R·kU 16-byte weight loads per lane. Callers launch with (256, 2) or (512, 1)
  // bounds (128 registers), which hold them all; the bytewise path keeps one block.
  constexpr int kU = kVec ? 4 / R : 1;
  static_assert(R == 1 || R == 2 || R == 4, "fp8_gemv_warp: R in {1, 2, 4}");
  const int q = threadIdx.x & 3;
  const int kb = min((k + 127) / 128, kb_end);
  const uint8_t* pf_row = wrow[0];  // this lane's prefetch row: wrow[q % R]
#pragma unroll
  for (int r = 1; r < R; ++r)
    if (q % R == r) pf_row = wrow[r];
  const int pf_u = kVec ? (q / R) % kU : 0;
  if (kVec && pf > 0)  // the iterations 1 .. pf-1 ahead of the first (the loop then prefetches pf ahead)
    for (int it = 1; it < pf; ++it) {
      const int bp = part + (it * kU + pf_u) * wpt;
      if (bp < kb) prefetch_l2(pf_row + static_cast<int64_t>(bp) * 128);
    }
  for (int b0 = part; b0 < kb; b0 += wpt * kU) {
    if (kVec && pf > 0) {
      const int bp = b0 + (pf * kU + pf_u) * wpt;
      if (bp < kb) prefetch_l2(pf_row + static_cast<int64_t>(bp) * 128);
    }
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
        const int kk = b * 128 + 64 * j + 16 * q;
#pragma unroll
        for (int r = 0; r < R; ++r) wv[u][r][j] = load16<kVec, true>(wrow[r], kk, k);
        al[u][j] = load16<kVec, false, kActCg>(alo, kk, k);
        ah[u][j] = kHi ? load16<kVec, false, kActCg>(ahi, kk, k) : make_uint4(0, 0, 0, 0);
      }
      const float sw = __ldg(swr + b);
      const float* pl = sa_lo + static_cast<int64_t>(b) * sa_stride;
      const float* ph = sa_hi + static_cast<int64_t>(b) * sa_stride;
      const float sl = (kActCg ? __ldcg(pl) : __ldg(pl)) * sw;
      const float sh = kHi ? (kActCg ? __ldcg(ph) : __ldg(ph)) * sw : 0.f;
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

}  // namespace dsv3::cuda
