// synth_rules.h: the element rules of the synthetic (dummy) weights, one header for the host generator
// (io/synthetic.cpp) and the CUDA kernel (backend/cuda/synthetic.cu), so that the two cannot drift (base).
// Every fp32 rounding point is explicit: products and sums go through synth_mul/synth_add/synth_div, which are
// __fmul_rn/__fadd_rn/__fdiv_rn on the device (nvcc would otherwise contract a*b+c into one FMA) and plain fp32
// operations on the host (synthetic.cpp is compiled with -ffp-contract=off, so no host compiler fuses them either).
// C++17 and <cstdint> only: device code includes it.
#pragma once

#include <cstdint>

#include "dsv3/base/hash.h"
#include "dsv3/base/host_device.h"

namespace dsv3 {

// What a synthetic tensor holds; io/synthetic.cpp maps each TensorRole onto one of these.
enum class SynthKind : uint8_t {
  kUniform,  // U(-1, 1) · std · √3: mean 0, standard deviation `std` (embeddings: 1; linears: 1/√in)
  kNorm,     // 1 + 0.1 · U(-1, 1) (RMSNorm weights)
  kBias,     // 0.025 · (U(-1, 1) + 1) in [0, 0.05) (router correction bias: non-negative, model-spec §4.2 step 5)
};

// One tensor's generator. key = synth_key(seed, hash of the tensor name); std is used by kUniform only.
struct SynthRule {
  SynthKind kind = SynthKind::kUniform;
  uint64_t key = 0;
  float std = 1.0f;
};

constexpr float kSynthSqrt3 = 1.7320508f;  // U(-1, 1) has standard deviation 1/√3
constexpr float kSynthNormSpread = 0.1f;
constexpr float kSynthBiasHalfRange = 0.025f;
constexpr float kSynthAmpSpread = 0.25f;   // FP8 blocks: amplitude 1 ± 0.25, so that block scales differ
constexpr uint64_t kSynthAmpSalt = 0x5ca1e;
constexpr int64_t kSynthFp8Block = 128;    // 128x128 weight blocks, as DeepSeek's FP8 checkpoints have
constexpr float kSynthFp8Max = 448.0f;     // e4m3 max: scale_inv = amax / 448
constexpr float kSynthMinAmax = 1e-12f;    // an all-zero block still gets a positive scale

DSV3_HD inline float synth_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DSV3_HD inline float synth_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
DSV3_HD inline float synth_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

DSV3_HD constexpr uint64_t synth_key(uint64_t seed, uint64_t name_hash) { return splitmix64(seed ^ name_hash); }

// Uniform in [-1, 1) from (key, index). 24 random bits times 2^-23 minus 1 is exact in double and in float, so
// neither contraction nor the precision of the device's double path can change it.
DSV3_HD inline float synth_uniform(uint64_t key, uint64_t i) {
  return static_cast<float>((splitmix64(key + i * 0x9e3779b97f4a7c15ull) >> 40) * (1.0 / 8388608.0) - 1.0);
}

// Element i (row-major) of a tensor made by rule r, before any dtype conversion.
DSV3_HD inline float synth_value(const SynthRule& r, uint64_t i) {
  const float u = synth_uniform(r.key, i);
  switch (r.kind) {
    case SynthKind::kUniform: return synth_mul(synth_mul(u, r.std), kSynthSqrt3);
    case SynthKind::kNorm: return synth_add(1.0f, synth_mul(kSynthNormSpread, u));
    case SynthKind::kBias: return synth_mul(kSynthBiasHalfRange, synth_add(u, 1.0f));
  }
  return 0.0f;
}

// FP8 linears [rows, cols]: block blk (row-major over the [ceil(rows/128), ceil(cols/128)] grid) has amplitude amp;
// element i of the block is amp · synth_value(i) before quantization; the block's scale_inv is amax / 448 over its
// real elements (partial edge blocks use only those); the code is e4m3(value / scale_inv).
DSV3_HD inline float synth_block_amp(uint64_t key, uint64_t blk) {
  return synth_add(1.0f, synth_mul(kSynthAmpSpread, synth_uniform(key ^ kSynthAmpSalt, blk)));
}
DSV3_HD inline float synth_fp8_prequant(const SynthRule& r, float amp, uint64_t i) {
  return synth_mul(amp, synth_value(r, i));
}
DSV3_HD inline float synth_fp8_scale(float amax) {
  return synth_div(amax < kSynthMinAmax ? kSynthMinAmax : amax, kSynthFp8Max);
}

namespace detail {
// x >> s rounded to nearest, ties to even (1 <= s <= 31).
DSV3_HD constexpr uint32_t shift_rne(uint32_t x, int s) {
  const uint32_t q = x >> s, rem = x & ((1u << s) - 1u), half = 1u << (s - 1);
  return q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
}
}  // namespace detail

// fp32 (as its bits) -> e4m3fn code with integer arithmetic only: round to nearest even, saturating to ±448, NaN ->
// 0x7f. The same function as numeric.h's f32_to_fp8e4m3 (checked for every fp32 input of the range that matters in
// tests/unit/test_numeric.cpp), in a form device code can run without relying on a conversion instruction.
DSV3_HD constexpr uint8_t synth_e4m3_from_bits(uint32_t u) {
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7f;              // NaN
  if (a >= 0x43e00000u) return sign | 0x7e;      // >= 448 (and inf): saturate
  const int e = static_cast<int>(a >> 23);       // biased fp32 exponent
  const uint32_t mant = a & 0x7fffffu;
  if (e < 121) {  // |x| < 2^-6: e4m3 subnormals, quantum 2^-9; the code is round(|x| / 2^-9) (8 -> 0x08 = 2^-6)
    const uint32_t m24 = e == 0 ? mant : (mant | 0x800000u);
    const int s = 141 - (e == 0 ? 1 : e);        // |x| / 2^-9 = m24 · 2^(e - 150 + 9)
    if (s > 25) return sign;                     // < 2^-10 (half the smallest subnormal): 0
    return sign | static_cast<uint8_t>(detail::shift_rne(m24, s));
  }
  // Normal: e4m3 exponent e - 120 in [1, 15]; rounding the 23-bit mantissa to 3 bits carries into the exponent.
  const uint32_t v = detail::shift_rne((static_cast<uint32_t>(e - 120) << 23) | mant, 20);
  return sign | static_cast<uint8_t>(v > 0x7eu ? 0x7eu : v);
}

}  // namespace dsv3
