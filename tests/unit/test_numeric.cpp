// test_numeric.cpp: bf16 and FP8 e4m3fn scalar conversions and the 1x128 activation quantization (tests/unit).
// References are worked out in the test from the format definitions (model-spec.md §5.1, §5.3).
#include <cmath>

#include <gtest/gtest.h>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/base/numeric.h"
#include "dsv3/base/synth_rules.h"

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

// The integer encoder the CUDA dummy-weight generator runs (synth_rules.h) against the reference encoder. Rounding
// can only go wrong at the boundaries, so: every code value and every midpoint between consecutive codes (including
// 2^-10, the midpoint 0 | 2^-9, and 464, the midpoint 448 | 480) with its neighbours up to 3 ulps away, both signs;
// every 7th fp32 from 2^-12 to 2^10 (the range where anything but 0 or saturation happens); every 65521st bit
// pattern over all 2^32 (NaN, inf, denormals, both signs). An exhaustive run over every fp32 in [2^-12, 2^10] (185M
// values) also matched when this encoder was written (~5 s, kept out of CI).
TEST(Fp8, IntegerEncoderEqualsTheReference) {
  int64_t checked = 0, bad = 0;
  auto check = [&](uint32_t u) {
    ++checked;
    const uint8_t want = f32_to_fp8e4m3(bits_to_f32(u)), got = synth_e4m3_from_bits(u);
    if (got != want && bad++ < 5)
      ADD_FAILURE() << "bits 0x" << std::hex << u << std::dec << " (" << bits_to_f32(u) << "): reference "
                    << int(want) << ", integer encoder " << int(got);
  };
  auto around = [&](float f) {
    for (float x : {f, -f})
      for (int d = -3; d <= 3; ++d) check(f32_to_bits(x) + static_cast<uint32_t>(d));
  };
  for (int code = 0; code <= 0x7e; ++code) {
    const float a = fp8e4m3_to_f32(static_cast<uint8_t>(code));
    const float b = code < 0x7e ? fp8e4m3_to_f32(static_cast<uint8_t>(code + 1)) : 480.0f;  // 480: one step past 448
    around(a);
    around(0.5f * (a + b));  // exact in fp32: both are e4m3 values
  }
  for (uint64_t u = f32_to_bits(std::ldexp(1.0f, -12)); u <= f32_to_bits(std::ldexp(1.0f, 10)); u += 7)
    check(static_cast<uint32_t>(u));
  for (uint64_t u = 0; u <= 0xffffffffull; u += 65521) check(static_cast<uint32_t>(u));
  for (float f : {INFINITY, -INFINITY, 1e-45f, -1e-45f, std::ldexp(1.0f, -7) * 0.99999994f}) check(f32_to_bits(f));
  EXPECT_EQ(synth_e4m3_from_bits(f32_to_bits(std::nanf(""))), 0x7f);
  EXPECT_EQ(synth_e4m3_from_bits(0xffc00001u), 0x7f);  // a negative NaN too, as f32_to_fp8e4m3
  EXPECT_EQ(bad, 0) << "of " << checked << " inputs";
  EXPECT_GT(checked, 26000000);
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
