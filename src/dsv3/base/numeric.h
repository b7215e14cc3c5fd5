// numeric.h: scalar bf16 and FP8 e4m3fn conversions, exact and host-only (base).
// bf16: round-to-nearest-even from fp32, NaN kept quiet. e4m3fn (model-spec.md §5.1): 1-4-3 bits, bias 7, max 448,
// no infinities, NaN = S.1111.111; encoding rounds to nearest even and saturates to ±448 (as act_quant clamps).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace dsv3 {

struct bf16 {
  uint16_t bits;
};

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(bf16 h) { return bits_to_f32(static_cast<uint32_t>(h.bits) << 16); }

inline bf16 f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return bf16{static_cast<uint16_t>(u >> 16)};
}

// Rounds an fp32 value to the nearest bf16 and back: the "bf16(x)" of model-spec.md.
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// e4m3fn code -> fp32 (exact).
inline float fp8e4m3_to_f32(uint8_t v) {
  const int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
  if (exp == 0xf && man == 7) return std::nanf("");
  float mag = exp == 0 ? std::ldexp(static_cast<float>(man), -9)              // subnormal: m/8 * 2^-6
                       : std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
  return sign ? -mag : mag;
}

// fp32 -> e4m3fn code, round to nearest even, saturating to ±448; NaN -> 0x7f.
inline uint8_t f32_to_fp8e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;
  if (a < std::ldexp(1.0f, -10)) return sign;  // below half the smallest subnormal (ties to even -> 0)
  int e;
  std::frexp(a, &e);      // a = m * 2^e, m in [0.5, 1)
  int exp_unb = e - 1;    // a = 1.x * 2^exp_unb
  if (exp_unb < -6) exp_unb = -6;  // subnormal range shares the 2^-6 scale
  // Quantum at this exponent: 2^(exp_unb - 3).
  const float q = std::ldexp(1.0f, exp_unb - 3);
  float n = std::nearbyint(a / q);  // default FP rounding mode: to nearest even
  float r = n * q;
  if (r >= 448.0f) return sign | 0x7e;
  // Re-encode r exactly.
  int er;
  std::frexp(r, &er);
  int eb = er - 1;
  if (r < std::ldexp(1.0f, -6)) {  // subnormal
    int m = static_cast<int>(r / std::ldexp(1.0f, -9));
    return sign | static_cast<uint8_t>(m);
  }
  int m = static_cast<int>((r / std::ldexp(1.0f, eb) - 1.0f) * 8.0f);
  return sign | static_cast<uint8_t>(((eb + 7) << 3) | m);
}

}  // namespace dsv3
