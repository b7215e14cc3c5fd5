// ref_math.h: the arithmetic of the reference ops, one definition compiled for the host (CpuBackend, backend/cpu)
// and the device (the CUDA backend's reference-numerics kernels, backend/cuda/reference*.cu), so both compute the
// same bits for any input (backend). Why: greedy tokens of a random tiny model flip on last-bit differences
// (docs/numerics.md). Rules: every multiply and add is written out (mul/add: the device uses the _rn intrinsics,
// which nvcc never contracts into an FMA; the host builds with -ffp-contract=off), exp and sin/cos are our own
// (range reduction + polynomial), bf16/e4m3 conversions are integer code, reductions are sequential loops.
// C++17 and <cmath>/<cstdint>/<cstring> only: nvcc compiles it; DSV3_HD marks functions for host and device.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "dsv3/base/host_device.h"

namespace dsv3::ref {

// ---- bits and IEEE operations with one rounding each (round to nearest even) ----

DSV3_HD inline uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
DSV3_HD inline float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

#if defined(__CUDA_ARCH__)
DSV3_HD inline float mul(float a, float b) { return __fmul_rn(a, b); }
DSV3_HD inline float add(float a, float b) { return __fadd_rn(a, b); }
DSV3_HD inline float sub(float a, float b) { return __fsub_rn(a, b); }
DSV3_HD inline float div(float a, float b) { return __fdiv_rn(a, b); }
DSV3_HD inline float sqrt(float a) { return __fsqrt_rn(a); }
DSV3_HD inline float fma(float a, float b, float c) { return __fmaf_rn(a, b, c); }
DSV3_HD inline float rint(float a) { return rintf(a); }
DSV3_HD inline double mul(double a, double b) { return __dmul_rn(a, b); }
DSV3_HD inline double add(double a, double b) { return __dadd_rn(a, b); }
DSV3_HD inline double sub(double a, double b) { return __dsub_rn(a, b); }
DSV3_HD inline double rint(double a) { return ::rint(a); }
DSV3_HD inline double floor(double a) { return ::floor(a); }
#else
DSV3_HD inline float mul(float a, float b) { return a * b; }
DSV3_HD inline float add(float a, float b) { return a + b; }
DSV3_HD inline float sub(float a, float b) { return a - b; }
DSV3_HD inline float div(float a, float b) { return a / b; }
DSV3_HD inline float sqrt(float a) { return std::sqrt(a); }                       // IEEE sqrtss
DSV3_HD inline float fma(float a, float b, float c) { return std::fma(a, b, c); }  // libm fmaf: one rounding
DSV3_HD inline float rint(float a) { return std::rint(a); }  // default rounding mode: to nearest even
DSV3_HD inline double mul(double a, double b) { return a * b; }
DSV3_HD inline double add(double a, double b) { return a + b; }
DSV3_HD inline double sub(double a, double b) { return a - b; }
DSV3_HD inline double rint(double a) { return std::rint(a); }
DSV3_HD inline double floor(double a) { return std::floor(a); }
#endif

DSV3_HD inline float mac(float acc, float a, float b) { return add(acc, mul(a, b)); }  // acc + a·b, two roundings
// std::max's rule ((a < b) ? b : a): a NaN in b is skipped, a NaN in a is kept.
DSV3_HD inline float max_f(float a, float b) { return a < b ? b : a; }
DSV3_HD inline float abs_f(float a) { return bits_f32(f32_bits(a) & 0x7fffffffu); }
DSV3_HD inline bool is_nan(float a) { return (f32_bits(a) & 0x7fffffffu) > 0x7f800000u; }
constexpr uint32_t kNanBits = 0x7fc00000u;  // the one NaN the functions below return (device NaNs differ in payload)
DSV3_HD inline float nan_f() { return bits_f32(kNanBits); }
// 2^e for e in [-149, 127] exactly; 0 below, +inf above.
DSV3_HD inline float pow2(int e) {
  if (e > 127) return bits_f32(0x7f800000u);
  if (e >= -126) return bits_f32(static_cast<uint32_t>(e + 127) << 23);
  if (e >= -149) return bits_f32(1u << (e + 149));
  return 0.f;
}

// ---- conversions ----

DSV3_HD inline float bf16_to_f32(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }
// Round to nearest even (as base/numeric.h f32_to_bf16), every NaN to the quiet NaN 0x7fc0.
DSV3_HD inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// e4m3fn (model-spec §5.1) code -> fp32, exact; the NaN codes (S.1111.111) give kNanBits.
DSV3_HD inline float e4m3_to_f32(uint8_t v) {
  const uint32_t sign = static_cast<uint32_t>(v & 0x80) << 24, exp = (v >> 3) & 0xfu, man = v & 7u;
  if (exp == 0xf && man == 7) return nan_f();
  if (exp == 0) return bits_f32(sign | f32_bits(mul(static_cast<float>(man), 0x1p-9f)));  // m/8 · 2^-6
  return bits_f32(sign | ((exp + 120u) << 23) | (man << 20));
}

// fp32 -> e4m3fn code, round to nearest even, saturating to ±448 (inf included); NaN -> 0x7f. Bit for bit
// base/numeric.h f32_to_fp8e4m3 (tests/unit/test_ref_math.cpp), in integer arithmetic.
DSV3_HD inline uint8_t f32_to_e4m3(float f) {
  const uint32_t u = f32_bits(f), a = u & 0x7fffffffu;
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  if (a > 0x7f800000u) return 0x7f;
  if (a >= 0x43e00000u) return sign | 0x7e;  // >= 448
  if (a <= 0x3a800000u) return sign;         // <= 2^-10: half the smallest subnormal or less (a tie rounds to 0)
  const int e = static_cast<int>(a >> 23) - 127;
  const uint32_t full = (a & 0x7fffffu) | 0x800000u;  // 1.m · 2^23
  if (e < -6) {  // subnormal: units of 2^-9; full · 2^(e - 23) / 2^-9 = full >> (14 - e), shift in [21, 24]
    const int shift = 14 - e;
    uint32_t m = full >> shift;
    const uint32_t rest = full & ((1u << shift) - 1u), half = 1u << (shift - 1);
    m += (rest > half || (rest == half && (m & 1u))) ? 1u : 0u;
    return sign | static_cast<uint8_t>(m);  // m == 8 is the code of 2^-6, the smallest normal
  }
  uint32_t m = full >> 20;  // 1mmm
  const uint32_t rest = full & 0xfffffu;
  m += (rest > 0x80000u || (rest == 0x80000u && (m & 1u))) ? 1u : 0u;
  int eb = e + 7;
  if (m == 16) {
    m = 8;
    ++eb;
  }
  if (eb > 15 || (eb == 15 && (m & 7u) == 7u)) return sign | 0x7e;  // not reached below 448; kept for safety
  return sign | static_cast<uint8_t>((eb << 3) | (m & 7u));
}

// Element loads for the loops below: fp32 as is, bf16 bits, or an e4m3 code (uint8_t always means e4m3 here).
DSV3_HD inline float val(float v) { return v; }
DSV3_HD inline float val(uint16_t bf16_bits) { return bf16_to_f32(bf16_bits); }
DSV3_HD inline float val(uint8_t e4m3_code) { return e4m3_to_f32(e4m3_code); }

// ---- exp ----

// e^x in fp32, within 1 ulp of the exact value over the whole range (tests/unit/test_ref_math.cpp states the
// measured bound against std::exp and against fp64). x = k·ln2 + r, |r| <= ln2/2 (Cody-Waite with ln2 = hi + lo,
// hi with 15 significant bits so k·hi is exact), e^r by its degree-7 Taylor polynomial (truncation < 0.1 ulp) in
// Horner form with explicit fma, then e^r · 2^k with exactly one rounding (two steps of exact scaling near the
// overflow and underflow ends). e^-inf = 0, e^+inf = +inf, NaN -> NaN, results below 2^-150 are 0 and above the
// largest float +inf, as correctly rounded.
DSV3_HD inline float exp(float x) {
  if (is_nan(x)) return nan_f();
  if (x > 88.72283172607421875f) return bits_f32(0x7f800000u);  // e^x >= the overflow threshold
  if (x < -104.0f) return 0.f;                                   // e^x < 2^-150: rounds to 0
  // Constants as hex literals: the same bits whatever compiler parses them.
  constexpr float kLog2e = 0x1.715476p+0f, kLn2Hi = 0x1.62e4p-1f, kLn2Lo = 0x1.7f7d1cp-20f;  // ln2 - kLn2Hi
  constexpr float kC7 = 0x1.a01a02p-13f, kC6 = 0x1.6c16c2p-10f, kC5 = 0x1.111112p-7f, kC4 = 0x1.555556p-5f,
                  kC3 = 0x1.555556p-3f;  // 1/7!, 1/6!, 1/5!, 1/4!, 1/3! rounded to fp32
  const float kf = rint(mul(x, kLog2e));  // |kf| <= 150
  const int k = static_cast<int>(kf);
  float r = fma(-kf, kLn2Hi, x);  // exact
  r = fma(-kf, kLn2Lo, r);
  float p = kC7;
  p = fma(p, r, kC6);
  p = fma(p, r, kC5);
  p = fma(p, r, kC4);
  p = fma(p, r, kC3);
  p = fma(p, r, 0.5f);
  const float q = fma(p, mul(r, r), r);  // e^r - 1
  const float e = add(1.f, q);           // e^r in [0.70, 1.42]
  if (k > 127) return mul(mul(e, pow2(127)), pow2(k - 127));
  if (k < -126) return mul(mul(e, pow2(k + 24)), pow2(-24));  // the first product is exact (normal)
  return mul(e, pow2(k));
}

// ---- sin and cos ----

// sin θ and cos θ of an fp32 θ: reduced in fp64 by θ - k·π/2 (π/2 in two parts, fdlibm's pio2_1 of 33 bits and its
// tail: k·pio2_1 is exact for |k| < 2^20), fdlibm's fp64 kernel polynomials on [-π/4, π/4], rounded once to fp32:
// within 1 ulp of std::sin/std::cos (tests/unit/test_ref_math.cpp). |θ| > kSinCosMax (far beyond any RoPE angle:
// positions < 163840 times inv_freq <= 1) would need a Payne-Hanek reduction: NaN there, as for inf and NaN.
constexpr float kSinCosMax = 1.6e6f;
DSV3_HD inline void sincos(float theta, float* s_out, float* c_out) {
  if (!(abs_f(theta) <= kSinCosMax)) {
    *s_out = *c_out = nan_f();
    return;
  }
  constexpr double kTwoOverPi = 0x1.45f306dc9c883p-1, kPio2Hi = 0x1.921fb544p+0, kPio2Lo = 0x1.0b4611a626331p-34;
  const double x = theta;
  const double kd = rint(mul(x, kTwoOverPi));
  const double r = sub(sub(x, mul(kd, kPio2Hi)), mul(kd, kPio2Lo));
  const double z = mul(r, r);
  // fdlibm __kernel_sin / __kernel_cos coefficients (|r| <= π/4; no tail terms: r is already rounded to fp64).
  constexpr double S1 = -0x1.5555555555549p-3, S2 = 0x1.111111110f8a6p-7, S3 = -0x1.a01a019c161d5p-13,
                   S4 = 0x1.71de357b1fe7dp-19, S5 = -0x1.ae5e68a2b9cebp-26, S6 = 0x1.5d93a5acfd57cp-33;
  constexpr double C1 = 0x1.555555555554cp-5, C2 = -0x1.6c16c16c15177p-10, C3 = 0x1.a01a019cb1590p-16,
                   C4 = -0x1.27e4f809c52adp-22, C5 = 0x1.1ee9ebdb4b1c4p-29, C6 = -0x1.8fae9be8838d4p-37;
  double ps = add(S5, mul(z, S6));
  ps = add(S4, mul(z, ps));
  ps = add(S3, mul(z, ps));
  ps = add(S2, mul(z, ps));
  ps = add(S1, mul(z, ps));
  const double sn = add(r, mul(mul(r, z), ps));  // r + r^3 (S1 + z S2 + ...)
  double pc = add(C5, mul(z, C6));
  pc = add(C4, mul(z, pc));
  pc = add(C3, mul(z, pc));
  pc = add(C2, mul(z, pc));
  pc = add(C1, mul(z, pc));
  const double cs = add(sub(1.0, mul(0.5, z)), mul(mul(z, z), pc));  // 1 - z/2 + z^2 (C1 + z C2 + ...)
  // Quadrant kd mod 4: kd is an integer below 2^20, so kd/4, its floor and kd - 4·floor are exact.
  const int quad = static_cast<int>(sub(kd, mul(4.0, floor(mul(kd, 0.25)))));
  const float sf = static_cast<float>(sn), cf = static_cast<float>(cs);  // one fp64 -> fp32 rounding (to nearest)
  switch (quad & 3) {
    case 0: *s_out = sf, *c_out = cf; break;
    case 1: *s_out = cf, *c_out = -sf; break;
    case 2: *s_out = -sf, *c_out = -cf; break;
    default: *s_out = -cf, *c_out = sf; break;
  }
}

// ---- per-element steps of the ops (backend.h), in CpuBackend's order ----

// Σ a[i]·b[i] for i ascending, added to acc: a product and a sum rounding per step.
template <class A, class B>
DSV3_HD inline float dot(const A* a, const B* b, int64_t n, float acc = 0.f) {
  for (int64_t i = 0; i < n; ++i) acc = mac(acc, val(a[i]), val(b[i]));
  return acc;
}

// One output of the FP8 block-scaled linear (model-spec §5.4): Σ_g (Σ_{i∈g} a_i·w_i) · (sa[g] · sw[g]), blocks of
// 128 along k in order. a: the row's activation codes (or their fp32 values), w: the weight row's codes (or values),
// sa: the row's ceil(k/128) activation scales, sw: the weight row's block scales (its 128-row block's scale row).
template <class A, class W>
DSV3_HD inline float linear_fp8(const A* a, const W* w, const float* sa, const float* sw, int64_t k) {
  float acc = 0.f;
  for (int64_t g = 0, lo = 0; lo < k; ++g, lo += 128) {
    const int64_t len = k - lo < 128 ? k - lo : 128;
    acc = add(acc, mul(dot(a + lo, w + lo, len), mul(sa[g], sw[g])));
  }
  return acc;
}

// The 1x128 activation quantization of one group (model-spec §5.3): scale = max(amax, 1e-4) / 448, ue8m0: rounded
// up to a power of two from its bits (§5.3 step 4); codes[i] = e4m3(x[i] / scale). Returns the scale.
DSV3_HD inline float fp8_group_scale(float amax, bool ue8m0) {
  float s = div(max_f(amax, 0x1.a36e2ep-14f), 448.0f);  // 1e-4f
  if (ue8m0) {
    const uint32_t u = f32_bits(s);
    s = pow2(static_cast<int>((u >> 23) & 0xffu) - 127 + ((u & 0x7fffffu) != 0 ? 1 : 0));
  }
  return s;
}
template <class X>
DSV3_HD inline float quantize_group(const X* x, int64_t len, bool ue8m0, uint8_t* codes) {
  float amax = 0.f;
  for (int64_t i = 0; i < len; ++i) amax = max_f(amax, abs_f(val(x[i])));
  const float s = fp8_group_scale(amax, ue8m0);
  for (int64_t i = 0; i < len; ++i) codes[i] = f32_to_e4m3(div(val(x[i]), s));
  return s;
}

DSV3_HD inline uint16_t add_bf16(uint16_t a, uint16_t b) { return f32_to_bf16(add(bf16_to_f32(a), bf16_to_f32(b))); }

// RMSNorm (variant B, model-spec §3.2): r = 1 / sqrt(Σx² / dim + eps) with Σx² summed in order; out = bf16(x·r·w).
template <class X>
DSV3_HD inline float sum_squares(const X* x, int64_t n) {
  float ss = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = val(x[i]);
    ss = mac(ss, v, v);
  }
  return ss;
}
DSV3_HD inline float inv_rms(float ss, int64_t dim, float eps) {
  return div(1.0f, sqrt(add(div(ss, static_cast<float>(dim)), eps)));
}
DSV3_HD inline uint16_t rms_out(uint16_t x, float r, uint16_t w) {
  return f32_to_bf16(mul(mul(bf16_to_f32(x), r), bf16_to_f32(w)));
}

// RoPE on one pair with θ = fp32(position · inv_freq) (model-spec §3.4, §3.6 step 5).
DSV3_HD inline float rope_theta(int32_t pos, float inv_freq) { return mul(static_cast<float>(pos), inv_freq); }
DSV3_HD inline void rope_pair(uint16_t* v0, uint16_t* v1, float c, float s) {
  const float x0 = bf16_to_f32(*v0), x1 = bf16_to_f32(*v1);
  *v0 = f32_to_bf16(sub(mul(x0, c), mul(x1, s)));
  *v1 = f32_to_bf16(add(mul(x0, s), mul(x1, c)));
}

// SwiGLU: bf16(silu(g) · u), silu(g) = g / (1 + e^-g).
DSV3_HD inline float silu(float x) { return div(x, add(1.0f, exp(-x))); }
DSV3_HD inline uint16_t silu_mul(uint16_t g, uint16_t u) {
  return f32_to_bf16(mul(silu(bf16_to_f32(g)), bf16_to_f32(u)));
}

// Softmax steps of attention and the router: e = exp(s - max), and the sigmoid 1 / (1 + e^-s).
DSV3_HD inline float exp_shifted(float s, float mx) { return exp(sub(s, mx)); }
DSV3_HD inline float sigmoid(float s) { return div(1.0f, add(1.0f, exp(-s))); }

// One router logit (backend.h kRouterSumBlock): block sums of 128 products in order, added in block order.
template <class X, class W>
DSV3_HD inline float router_logit(const X* x, const W* w, int64_t d) {
  float z = 0.f;
  for (int64_t i0 = 0; i0 < d; i0 += 128) z = add(z, dot(x + i0, w + i0, d - i0 < 128 ? d - i0 : 128));
  return z;
}

// The router after the logits (model-spec §4.2, §9.3), for one token: score[E] holds the logits and becomes the
// scores (sigmoid, or softmax over the E experts); sel[E] = score + bias (bias may be null); groups other than the
// topk_group best (noaux_tc: sum of each group's two largest sel; group_limited_greedy: the largest) are masked to
// -inf unless method is greedy or n_group == 1; then the top_k of sel, each time the largest with ties to the lower
// index (= a stable sort, descending); weights = the chosen scores, normalized by their sum in k order if asked,
// times the scaling factor. method: 0 noaux_tc, 1 greedy, 2 group_limited_greedy. used[max(E, n_group)] is scratch.
DSV3_HD inline void router_select(float* score, float* sel, float* gscore, int32_t* used, const float* bias, int E,
                                  bool sigmoid_scoring, int method, int n_group, int topk_group, int top_k,
                                  bool norm_topk_prob, float routed_scaling_factor, int32_t* ids_out,
                                  float* weights_out) {
  const float kNegInf = bits_f32(0xff800000u);
  if (sigmoid_scoring) {
    for (int j = 0; j < E; ++j) score[j] = sigmoid(score[j]);
  } else {
    float mx = score[0];  // std::max_element: the first of the largest
    for (int j = 1; j < E; ++j) mx = max_f(mx, score[j]);
    float sum = 0.f;
    for (int j = 0; j < E; ++j) sum = add(sum, score[j] = exp_shifted(score[j], mx));
    for (int j = 0; j < E; ++j) score[j] = div(score[j], sum);
  }
  for (int j = 0; j < E; ++j) sel[j] = bias ? add(score[j], bias[j]) : score[j];
  if (method != 1 && n_group > 1) {
    const int per_group = E / n_group;
    for (int g = 0; g < n_group; ++g) {
      const float* s = sel + g * per_group;
      if (method == 0) {  // the sum of the two largest
        float a = kNegInf, c = kNegInf;
        for (int j = 0; j < per_group; ++j) {
          if (s[j] > a) {
            c = a;
            a = s[j];
          } else if (s[j] > c) {
            c = s[j];
          }
        }
        gscore[g] = add(a, c);
      } else {
        float m = s[0];
        for (int j = 1; j < per_group; ++j) m = max_f(m, s[j]);
        gscore[g] = m;
      }
    }
    for (int g = 0; g < n_group; ++g) used[g] = 0;
    for (int kept = 0; kept < topk_group && kept < n_group; ++kept) {  // the best groups, ties to the lower index
      int best = -1;
      for (int g = 0; g < n_group; ++g)
        if (!used[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
      used[best] = 1;
    }
    for (int g = 0; g < n_group; ++g)
      if (!used[g])
        for (int j = 0; j < per_group; ++j) sel[g * per_group + j] = kNegInf;
  }
  for (int j = 0; j < E; ++j) used[j] = 0;
  float wsum = 0.f;
  for (int k = 0; k < top_k; ++k) {
    int best = -1;
    for (int j = 0; j < E; ++j)
      if (!used[j] && (best < 0 || sel[j] > sel[best])) best = j;
    used[best] = 1;
    ids_out[k] = best;
    wsum = add(wsum, score[best]);
  }
  for (int k = 0; k < top_k; ++k) {
    float w = score[ids_out[k]];
    if (norm_topk_prob) w = div(w, wsum);
    weights_out[k] = mul(w, routed_scaling_factor);
  }
}

}  // namespace dsv3::ref
