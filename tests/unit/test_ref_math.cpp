// test_ref_math.cpp: the shared reference arithmetic (backend/ref_math.h) on the host — exp and sin/cos against libm
// and fp64 with their ulp bounds stated and asserted, the edge cases that matter (exp(-inf) = 0 for masked softmax,
// overflow / underflow ends, NaN), the integer bf16 / e4m3 conversions against base/numeric.h, and the ported
// quantization and router selection against transcriptions of the CPU code they replaced (tests/unit, label cpu).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/ref_math.h"
#include "dsv3/base/numeric.h"

namespace dsv3 {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

float from_bits(uint32_t u) { return bits_to_f32(u); }

// Distance in representable floats (+0 and -0 are one point); both finite or both the same infinity.
int64_t ulp_diff(float a, float b) {
  auto ord = [](float f) {
    const int32_t i = static_cast<int32_t>(f32_to_bits(f));
    return i < 0 ? -static_cast<int64_t>(i & 0x7fffffff) : static_cast<int64_t>(i);
  };
  return std::llabs(ord(a) - ord(b));
}

// Every stride-th bit pattern whose float lies in [lo, hi].
template <class F>
void for_floats(uint64_t stride, float lo, float hi, F&& f) {
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += stride) {
    const float x = from_bits(static_cast<uint32_t>(u));
    if (x >= lo && x <= hi) f(x);
  }
}

TEST(RefExp, WithinOneUlpOfLibmAndOfFp64) {
  // Measured over every 37th float in [-105, 90] (6.05e7 inputs): at most 1 ulp from glibc's expf and from the
  // fp64 exp rounded to fp32, 0.77% of the results differ from glibc's. Here every 211th float.
  int64_t n = 0, differ = 0, worst_libm = 0, worst_fp64 = 0;
  for_floats(211, -105.f, 90.f, [&](float x) {
    const float got = ref::exp(x);
    const int64_t a = ulp_diff(got, std::exp(x)), b = ulp_diff(got, static_cast<float>(std::exp(double(x))));
    worst_libm = std::max(worst_libm, a);
    worst_fp64 = std::max(worst_fp64, b);
    differ += a != 0;
    ++n;
  });
  EXPECT_GT(n, 5'000'000);
  EXPECT_LE(worst_libm, 1);
  EXPECT_LE(worst_fp64, 1);
  EXPECT_LT(static_cast<double>(differ) / static_cast<double>(n), 0.02);
  std::printf("exp: %ld inputs, %.3f%% differ from std::exp, worst %ld ulp (vs fp64: %ld)\n", n,
              100.0 * static_cast<double>(differ) / static_cast<double>(n), worst_libm, worst_fp64);
}

TEST(RefExp, EdgeCases) {
  EXPECT_EQ(f32_to_bits(ref::exp(-kInf)), 0u);  // masked softmax scores: +0, not NaN
  EXPECT_EQ(ref::exp(kInf), kInf);
  EXPECT_TRUE(std::isnan(ref::exp(std::nanf(""))));
  EXPECT_TRUE(std::isnan(ref::exp(-std::nanf(""))));
  EXPECT_EQ(ref::exp(0.f), 1.f);
  EXPECT_EQ(ref::exp(-0.f), 1.f);
  EXPECT_EQ(ref::exp(1e-30f), 1.f);
  EXPECT_EQ(ref::exp(-1e-30f), 1.f);
  EXPECT_EQ(ref::exp(-1000.f), 0.f);
  EXPECT_EQ(ref::exp(1000.f), kInf);
  // Overflow end: the largest x with a finite e^x, and the next float, as libm has them.
  const float x_max = 88.72283172607421875f;
  EXPECT_TRUE(std::isfinite(std::exp(x_max)));
  EXPECT_LE(ulp_diff(ref::exp(x_max), std::exp(x_max)), 1);
  EXPECT_EQ(ref::exp(std::nextafter(x_max, kInf)), std::exp(std::nextafter(x_max, kInf)));
  EXPECT_EQ(ref::exp(std::nextafter(x_max, kInf)), kInf);
  // Underflow end and the subnormal results: every float in [-104.5, -87] (about 15,000): zero exactly where libm
  // gives zero, and within one subnormal step elsewhere.
  for (float x = -104.5f; x <= -87.f; x = std::nextafter(x, kInf)) {
    const float got = ref::exp(x), want = std::exp(x);
    ASSERT_EQ(got == 0.f, want == 0.f) << x;
    ASSERT_LE(ulp_diff(got, want), 1) << x;
  }
  // Exactly representable results.
  EXPECT_LE(ulp_diff(ref::exp(1.f), 2.71828182845904523536f), 1);
  EXPECT_LE(ulp_diff(ref::exp(static_cast<float>(std::log(2.0))), 2.f), 1);
}

TEST(RefSinCos, WithinOneUlpOfLibm) {
  // Every 1009th float in the accurate range |θ| <= 1.6e6 (RoPE's angles stay below 163840: positions below
  // max_position_embeddings times inv_freq <= 1).
  int64_t n = 0, worst_s = 0, worst_c = 0;
  for_floats(1009, -ref::kSinCosMax, ref::kSinCosMax, [&](float x) {
    float s, c;
    ref::sincos(x, &s, &c);
    worst_s = std::max(worst_s, ulp_diff(s, std::sin(x)));
    worst_c = std::max(worst_c, ulp_diff(c, std::cos(x)));
    ++n;
  });
  // RoPE's own angles: integer positions times a YaRN-like frequency ladder, θ = fp32(p · f).
  for (int p = 0; p < 40000; p += 7)
    for (int i = 0; i < 32; ++i) {
      const float f = static_cast<float>(std::pow(10000.0, -i / 32.0));
      const float x = ref::rope_theta(p, f);
      float s, c;
      ref::sincos(x, &s, &c);
      worst_s = std::max(worst_s, ulp_diff(s, std::sin(x)));
      worst_c = std::max(worst_c, ulp_diff(c, std::cos(x)));
    }
  EXPECT_GT(n, 1'000'000);
  EXPECT_LE(worst_s, 1);
  EXPECT_LE(worst_c, 1);
  float s, c;
  ref::sincos(0.f, &s, &c);
  EXPECT_EQ(s, 0.f);
  EXPECT_EQ(c, 1.f);
  ref::sincos(kInf, &s, &c);
  EXPECT_TRUE(std::isnan(s) && std::isnan(c));
  ref::sincos(std::nanf(""), &s, &c);
  EXPECT_TRUE(std::isnan(s) && std::isnan(c));
  ref::sincos(ref::kSinCosMax, &s, &c);  // the end of the range: still accurate
  EXPECT_LE(ulp_diff(s, std::sin(ref::kSinCosMax)), 1);
  EXPECT_LE(ulp_diff(c, std::cos(ref::kSinCosMax)), 1);
  ref::sincos(std::nextafter(ref::kSinCosMax, kInf), &s, &c);  // beyond: NaN, not an inaccurate value
  EXPECT_TRUE(std::isnan(s) && std::isnan(c));
}

TEST(RefConvert, Bf16MatchesNumericAndCanonicalizesNaN) {
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 97) {
    const float x = from_bits(static_cast<uint32_t>(u));
    if (std::isnan(x)) {
      ASSERT_EQ(ref::f32_to_bf16(x), 0x7fc0) << u;
    } else {
      ASSERT_EQ(ref::f32_to_bf16(x), f32_to_bf16(x).bits) << u;
    }
  }
  EXPECT_EQ(ref::f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);  // a tie to even (down)
  EXPECT_EQ(ref::f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);  // a tie to even (up)
  EXPECT_EQ(ref::f32_to_bf16(from_bits(0xffffffffu)), 0x7fc0);
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint16_t h = static_cast<uint16_t>(b);
    ASSERT_EQ(f32_to_bits(ref::bf16_to_f32(h)), f32_to_bits(bf16_to_f32(bf16{h}))) << b;
  }
}

TEST(RefConvert, E4m3MatchesNumeric) {
  for (int c = 0; c < 256; ++c) {
    const float a = ref::e4m3_to_f32(static_cast<uint8_t>(c)), b = fp8e4m3_to_f32(static_cast<uint8_t>(c));
    if (std::isnan(b)) {
      EXPECT_EQ(f32_to_bits(a), ref::kNanBits) << c;
    } else {
      EXPECT_EQ(f32_to_bits(a), f32_to_bits(b)) << c;
      EXPECT_EQ(ref::f32_to_e4m3(a), c) << c;  // every code round-trips
    }
  }
  auto check = [](float x) {
    ASSERT_EQ(ref::f32_to_e4m3(x), f32_to_fp8e4m3(x)) << x << " bits " << f32_to_bits(x);
  };
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 257) check(from_bits(static_cast<uint32_t>(u)));
  // Around every rounding point: the midpoints between neighbouring codes (ties to even), +-8 floats.
  std::vector<float> values;
  for (int c = 0; c < 0x7f; ++c) values.push_back(fp8e4m3_to_f32(static_cast<uint8_t>(c)));
  values.push_back(464.f);  // beyond 448: saturates
  for (size_t i = 0; i + 1 < values.size(); ++i) {
    const float mid = (values[i] + values[i + 1]) / 2;  // exact: both have few significant bits
    uint32_t b = f32_to_bits(mid);
    for (uint32_t d = b - 8; d <= b + 8; ++d)
      for (float s : {1.f, -1.f}) check(s * from_bits(d));
  }
  for (float x : {0.f, -0.f, kInf, -kInf, std::nanf(""), -std::nanf(""), 448.f, -448.f, 449.f, 1e30f, 0x1p-10f,
                  0x1p-9f, 0x1.8p-10f, 0x1p-6f, 0x1.fp-7f})
    check(x);
  EXPECT_EQ(ref::f32_to_e4m3(kInf), 0x7e);
  EXPECT_EQ(ref::f32_to_e4m3(-kInf), 0xfe);
  EXPECT_EQ(ref::f32_to_e4m3(std::nanf("")), 0x7f);
}

// The 1x128 quantization as cpu_linear.cpp wrote it before ref_math.h (std::max, std::fabs, numeric.h's encoder):
// the port must give the same codes and scales.
void quantize_row_before(const float* x, int64_t k, bool ue8m0, uint8_t* codes, float* scales) {
  for (int64_t g = 0; g * 128 < k; ++g) {
    const int64_t b = g * 128, e = std::min(k, b + 128);
    float amax = 0.f;
    for (int64_t i = b; i < e; ++i) amax = std::max(amax, std::fabs(x[i]));
    amax = std::max(amax, 1e-4f);
    float s = amax / 448.0f;
    if (ue8m0) {
      uint32_t u = f32_to_bits(s);
      int exp = static_cast<int>((u >> 23) & 0xff) - 127 + ((u & 0x7fffff) != 0);
      s = std::ldexp(1.0f, exp);
    }
    scales[g] = s;
    for (int64_t i = b; i < e; ++i) codes[i] = f32_to_fp8e4m3(x[i] / s);
  }
}

TEST(RefQuantize, SameCodesAndScalesAsBefore) {
  std::mt19937_64 rng(5);
  for (int64_t k : {1, 5, 127, 128, 129, 300, 1024}) {
    for (bool ue8m0 : {false, true}) {
      for (float scale : {1e-6f, 1e-3f, 1.f, 300.f, 1e6f}) {
        std::vector<float> x(static_cast<size_t>(k));
        std::normal_distribution<float> nd(0.f, scale);
        for (auto& v : x) v = round_bf16(nd(rng));
        if (k > 3) x[1] = 0.f, x[2] = -0.f;
        const int64_t kb = (k + 127) / 128;
        std::vector<uint8_t> c1(static_cast<size_t>(k)), c2(static_cast<size_t>(k));
        std::vector<float> s1(static_cast<size_t>(kb)), s2(static_cast<size_t>(kb));
        quantize_row_fp8(x.data(), k, ue8m0, c1.data(), s1.data());
        quantize_row_before(x.data(), k, ue8m0, c2.data(), s2.data());
        ASSERT_EQ(c1, c2) << k << " " << ue8m0 << " " << scale;
        for (int64_t g = 0; g < kb; ++g) ASSERT_EQ(f32_to_bits(s1[g]), f32_to_bits(s2[g])) << k << " " << g;
        if (ue8m0)
          for (float s : s1) {
            int e = 0;
            EXPECT_EQ(std::frexp(s, &e), 0.5f) << s;  // a power of two
          }
      }
    }
  }
}

// The router's selection as cpu_moe.cpp wrote it before ref::router_select (stable sorts), with ref::exp so that only
// the selection logic is compared.
void router_before(std::vector<float> score, const std::vector<float>& bias, bool sigmoid, int method, int n_group,
                   int topk_group, int top_k, bool norm, float scale, std::vector<int32_t>& ids,
                   std::vector<float>& w) {
  const int E = static_cast<int>(score.size()), per_group = E / n_group;
  if (sigmoid) {
    for (auto& s : score) s = 1.0f / (1.0f + ref::exp(-s));
  } else {
    const float mx = *std::max_element(score.begin(), score.end());
    float sum = 0.f;
    for (auto& s : score) sum += (s = ref::exp(s - mx));
    for (auto& s : score) s /= sum;
  }
  std::vector<float> sel(static_cast<size_t>(E)), gscore(static_cast<size_t>(n_group));
  for (int j = 0; j < E; ++j) sel[j] = score[j] + (bias.empty() ? 0.f : bias[j]);
  if (method != 1 && n_group > 1) {
    for (int g = 0; g < n_group; ++g) {
      const float* s = &sel[g * per_group];
      if (method == 0) {
        float a = -kInf, c = -kInf;
        for (int j = 0; j < per_group; ++j) {
          if (s[j] > a) {
            c = a;
            a = s[j];
          } else if (s[j] > c) {
            c = s[j];
          }
        }
        gscore[g] = a + c;
      } else {
        gscore[g] = *std::max_element(s, s + per_group);
      }
    }
    std::vector<int> gorder(static_cast<size_t>(n_group));
    std::iota(gorder.begin(), gorder.end(), 0);
    std::stable_sort(gorder.begin(), gorder.end(), [&](int a, int c) { return gscore[a] > gscore[c]; });
    for (int gi = topk_group; gi < n_group; ++gi)
      for (int j = 0; j < per_group; ++j) sel[gorder[gi] * per_group + j] = -kInf;
  }
  std::vector<int> order(static_cast<size_t>(E));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return sel[a] > sel[c]; });
  float wsum = 0.f;
  for (int k = 0; k < top_k; ++k) wsum += score[order[k]];
  ids.clear(), w.clear();
  for (int k = 0; k < top_k; ++k) {
    float v = score[order[k]];
    if (norm) v /= wsum;
    ids.push_back(order[k]);
    w.push_back(v * scale);
  }
}

TEST(RefRouter, SelectionMatchesTheStableSortVersion) {
  std::mt19937_64 rng(11);
  struct Cfg {
    int E, n_group, topk_group, top_k, method;
    bool sigmoid;
  };
  const Cfg cfgs[] = {{256, 8, 4, 8, 0, true}, {64, 1, 1, 6, 1, false}, {160, 8, 3, 6, 2, false},
                      {12, 3, 2, 3, 0, false}, {12, 3, 3, 12, 0, true}, {16, 4, 1, 4, 2, true}};
  for (const Cfg& c : cfgs) {
    for (int trial = 0; trial < 200; ++trial) {
      std::normal_distribution<float> nd(0.f, trial % 3 == 0 ? 0.01f : 2.f);
      std::vector<float> logits(static_cast<size_t>(c.E)), bias;
      for (auto& v : logits) v = nd(rng);
      if (trial % 4 == 1)  // exact ties: quantized logits
        for (auto& v : logits) v = std::nearbyint(v * 2) / 2;
      if (c.method == 0) {
        bias.resize(static_cast<size_t>(c.E));
        for (auto& v : bias) v = nd(rng) * 0.05f;
        if (trial % 4 == 2) std::fill(bias.begin(), bias.end(), 0.f);
      }
      std::vector<int32_t> want_ids, got_ids(static_cast<size_t>(c.top_k));
      std::vector<float> want_w, got_w(static_cast<size_t>(c.top_k));
      router_before(logits, bias, c.sigmoid, c.method, c.n_group, c.topk_group, c.top_k, true, 2.5f, want_ids, want_w);
      std::vector<float> score = logits, sel(static_cast<size_t>(c.E)), gscore(static_cast<size_t>(c.n_group));
      std::vector<int32_t> used(static_cast<size_t>(std::max(c.E, c.n_group)));
      ref::router_select(score.data(), sel.data(), gscore.data(), used.data(), bias.empty() ? nullptr : bias.data(),
                         c.E, c.sigmoid, c.method, c.n_group, c.topk_group, c.top_k, true, 2.5f, got_ids.data(),
                         got_w.data());
      ASSERT_EQ(got_ids, want_ids) << "E " << c.E << " method " << c.method << " trial " << trial;
      for (int k = 0; k < c.top_k; ++k) ASSERT_EQ(f32_to_bits(got_w[k]), f32_to_bits(want_w[k])) << k;
    }
  }
}

TEST(RefLinear, Fp8BlockSumsInTheReferenceOrder) {
  // ref::linear_fp8 against the loop cpu_linear.cpp had: per 128-block a sequential sum, then acc += blk·(sa·sw).
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int> code(0, 0x7e);
  std::uniform_real_distribution<float> sc(1e-4f, 1e-2f);
  for (int k : {1, 127, 128, 129, 1000}) {
    const int kb = (k + 127) / 128;
    std::vector<uint8_t> a(static_cast<size_t>(k)), w(static_cast<size_t>(k));
    std::vector<float> af(static_cast<size_t>(k)), wf(static_cast<size_t>(k)), sa(static_cast<size_t>(kb)),
        sw(static_cast<size_t>(kb));
    for (int i = 0; i < k; ++i) {
      a[i] = static_cast<uint8_t>(code(rng) | (i % 3 == 0 ? 0x80 : 0));
      w[i] = static_cast<uint8_t>(code(rng) | (i % 5 == 0 ? 0x80 : 0));
      af[i] = fp8e4m3_to_f32(a[i]), wf[i] = fp8e4m3_to_f32(w[i]);
    }
    for (int g = 0; g < kb; ++g) sa[g] = sc(rng), sw[g] = sc(rng);
    float acc = 0.f;
    for (int g = 0; g < kb; ++g) {
      float blk = 0.f;
      for (int i = g * 128; i < std::min(k, g * 128 + 128); ++i) blk += af[i] * wf[i];
      acc += blk * (sa[g] * sw[g]);
    }
    EXPECT_EQ(f32_to_bits(ref::linear_fp8(a.data(), w.data(), sa.data(), sw.data(), k)), f32_to_bits(acc)) << k;
    EXPECT_EQ(f32_to_bits(ref::linear_fp8(af.data(), wf.data(), sa.data(), sw.data(), k)), f32_to_bits(acc)) << k;
  }
}

}  // namespace
}  // namespace dsv3
