// test_numeric.cpp: bf16 and FP8 e4m3fn scalar conversions and the 1x128 activation quantization (tests/unit).
// References are worked out in the test from the format definitions (model-spec.md §5.1, §5.3).
#include <cmath>

#include <gtest/gtest.h>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/base/numeric.h"

namespace dsv3 {
namespace {

// e4m3fn decoded from first principles: sign, 4-bit exponent (bias 7), 3-bit mantissa, subnormals at exp 0.
double e4m3_by_definition(int code) {
  const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  double mag = e == 0 ? (m / 8.0) * std::pow(2.0, -6) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
  return s ? -mag : mag;
}

TEST(Fp8, DecodesAll256Codes) {
  for (int code = 0; code < 256; ++code) {
    const float v = fp8e4m3_to_f32(static_cast<uint8_t>(code));
    if ((code & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(v)) << code;  // S.1111.111 is NaN; there is no infinity
      continue;
    }
    EXPECT_EQ(static_cast<double>(v), e4m3_by_definition(code)) << code;
  }
  EXPECT_EQ(fp8e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8e4m3_to_f32(0x08), std::ldexp(1.0f, -6));
}

TEST(Fp8, EncodeRoundTripsEveryFiniteCode) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) continue;
    const float v = fp8e4m3_to_f32(static_cast<uint8_t>(code));
    const uint8_t back = f32_to_fp8e4m3(v);
    if (v == 0.0f) EXPECT_EQ(fp8e4m3_to_f32(back), 0.0f);
    else EXPECT_EQ(back, code) << v;
  }
}

TEST(Fp8, EncodeRoundsToNearestEvenAndSaturates) {
  // Between consecutive codes a < b the midpoint goes to the one with an even mantissa; others to the nearest.
  for (int code = 0; code < 0x7e; ++code) {
    const float a = fp8e4m3_to_f32(static_cast<uint8_t>(code)), b = fp8e4m3_to_f32(static_cast<uint8_t>(code + 1));
    const float mid = 0.5f * (a + b);
    const uint8_t want_mid = (code & 1) ? static_cast<uint8_t>(code + 1) : static_cast<uint8_t>(code);
    EXPECT_EQ(f32_to_fp8e4m3(mid), want_mid) << a << " " << b;
    EXPECT_EQ(f32_to_fp8e4m3(a + 0.25f * (b - a)), code);
    EXPECT_EQ(f32_to_fp8e4m3(a + 0.75f * (b - a)), code + 1);
    EXPECT_EQ(f32_to_fp8e4m3(-(a + 0.75f * (b - a))), (code + 1) | 0x80);
  }
  EXPECT_EQ(f32_to_fp8e4m3(1000.0f), 0x7e);   // saturates to 448
  EXPECT_EQ(f32_to_fp8e4m3(-449.0f), 0xfe);
  EXPECT_EQ(f32_to_fp8e4m3(std::ldexp(1.0f, -11)), 0);  // below half the smallest subnormal
}

TEST(Bf16, RoundsToNearestEven) {
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0); slightly above goes up.
  EXPECT_EQ(round_bf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);
  EXPECT_EQ(round_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(round_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 1.0f + std::ldexp(1.0f, -7));
  EXPECT_TRUE(std::isnan(round_bf16(std::nanf(""))));
  EXPECT_EQ(round_bf16(3.0e38f * 10), INFINITY);
}

TEST(ActQuant, ScaleIsAmaxOver448PerGroupOf128) {
  std::vector<float> x(300);
  for (int i = 0; i < 300; ++i) x[i] = std::sin(0.37f * i) * (i < 128 ? 2.0f : i < 256 ? 0.01f : 1e-6f);
  std::vector<uint8_t> q(300);
  std::vector<float> s(3);
  quantize_row_fp8(x.data(), 300, false, q.data(), s.data());
  for (int g = 0; g < 3; ++g) {
    float amax = 0;
    for (int i = g * 128; i < std::min(300, g * 128 + 128); ++i) amax = std::max(amax, std::fabs(x[i]));
    EXPECT_EQ(s[g], std::max(amax, 1e-4f) / 448.0f) << g;  // the last (partial) group is clamped to 1e-4
    for (int i = g * 128; i < std::min(300, g * 128 + 128); ++i) {
      EXPECT_EQ(q[i], f32_to_fp8e4m3(x[i] / s[g]));
      EXPECT_LE(std::fabs(fp8e4m3_to_f32(q[i]) * s[g] - x[i]), std::fabs(x[i]) / 16 + s[g] * std::ldexp(1.0f, -9));
    }
  }
}

TEST(ActQuant, Ue8m0ScalesArePowersOfTwoAtLeastTheExactScale) {
  std::vector<float> x(128);
  for (int i = 0; i < 128; ++i) x[i] = 0.3f + 0.01f * i;  // amax 1.57
  std::vector<uint8_t> q(128);
  float s;
  quantize_row_fp8(x.data(), 128, true, q.data(), &s);
  const float exact = 1.57f / 448.0f;
  EXPECT_EQ(s, std::ldexp(1.0f, static_cast<int>(std::ceil(std::log2(exact)))));
  EXPECT_GE(s, exact);
}

}  // namespace
}  // namespace dsv3
