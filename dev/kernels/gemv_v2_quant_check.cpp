// gemv_v2_quant_check.cpp: exhaustive host check of the division that gemv_fp8_v2.cu's fused activation quantization
// uses instead of __fdiv_rn (dev/kernels, kernel lab; not built by CMake). For every bf16 x and every group scale s
// that a 128-group can produce (s = max(amax, 1e-4)/448 for every bf16 amax >= |x|, and its ue8m0 power of two), it
// compares q2 = fma(x - q·s, r, q) with q = RN(x·r), r = RN(1/s) (Markstein's correction step; x == 0 returns x) to
// the IEEE quotient RN(x / s) bit for bit, and the e4m3 codes of both. x86-64 SSE arithmetic and glibc's fmaf are
// IEEE binary32 with subnormals, as the GPU's FMUL/FFMA/MUFU.RCP+refinement (__frcp_rn) are without -ftz.
// Build and run: g++ -O2 -std=c++20 -I src dev/kernels/gemv_v2_quant_check.cpp -o /tmp/qcheck && /tmp/qcheck
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#include "dsv3/base/numeric.h"

namespace {

using dsv3::bits_to_f32;
using dsv3::f32_to_bits;

float group_scale(float amax, bool ue8m0) {  // quantize_row_fp8 (cpu_linear.cpp)
  amax = std::max(amax, 1e-4f);
  float s = amax / 448.0f;
  if (ue8m0) {
    const uint32_t u = f32_to_bits(s);
    const int e = static_cast<int>((u >> 23) & 0xff) - 127 + ((u & 0x7fffff) != 0);
    s = std::ldexp(1.0f, e);
  }
  return s;
}

// The device sequence of gemv_fp8_v2.cu (fp8_div_scale), in host binary32.
float div_markstein(float x, float s, float r) {
  volatile float xv = x;  // keep the compiler from folding anything across the roundings
  const float q = xv * r;
  const float e = std::fmaf(-q, s, xv);
  const float y = std::fmaf(e, r, q);
  return xv == 0.f ? xv : y;
}

struct Count {
  uint64_t checks = 0, quot_diff = 0, code_diff = 0;
  float max_diff_quot = 0;  // the largest |x/s| whose quotients differ (only underflow cases: x or x/s subnormal)
};

void run(uint32_t a_lo, uint32_t a_hi, bool ue8m0, Count* c) {
  for (uint32_t ab = a_lo; ab < a_hi; ++ab) {
    const float amax = bits_to_f32(ab << 16);
    if (!std::isfinite(amax)) continue;
    const float s = group_scale(amax, ue8m0);
    if (!(s <= 0x1p126f)) continue;  // the kernel's fast-path condition (s is never below 2^-126 here)
    const float r = 1.0f / s;
    for (uint32_t xb = 0; xb <= ab; ++xb) {  // |x| <= amax, both signs
      for (uint32_t sign : {0u, 0x8000u}) {
        const float x = bits_to_f32((xb | sign) << 16);
        const float ref = x / s, got = div_markstein(x, s, r);
        ++c->checks;
        if (f32_to_bits(ref) != f32_to_bits(got)) {  // equal quotients give equal codes; only these can differ
          if (c->quot_diff++ < 2)
            std::printf("  e.g. x=%a s=%a: x/s=%a, got %a (ue8m0=%d)\n", x, s, ref, got, ue8m0);
          if (dsv3::f32_to_fp8e4m3(ref) != dsv3::f32_to_fp8e4m3(got)) ++c->code_diff;
          c->max_diff_quot = std::max(c->max_diff_quot, std::fabs(ref));
        }
      }
    }
  }
}

}  // namespace

int main() {
  const unsigned n_threads = std::max(1u, std::thread::hardware_concurrency());
  uint64_t total = 0, bad_q = 0, bad_c = 0;
  float max_q = 0;
  for (bool ue8m0 : {false, true}) {
    // Every non-negative finite bf16 amax (0x0000 .. 0x7f7f); x runs over |x| <= amax. Split by amax ranges of
    // roughly equal work (the work grows with amax's bit pattern).
    std::vector<Count> counts(n_threads);
    std::vector<std::thread> th;
    const double full = 0x7f80;
    for (unsigned t = 0; t < n_threads; ++t) {
      const uint32_t lo = static_cast<uint32_t>(full * std::sqrt(double(t) / n_threads));
      const uint32_t hi = static_cast<uint32_t>(full * std::sqrt(double(t + 1) / n_threads));
      th.emplace_back(run, lo, t + 1 == n_threads ? 0x7f80u : hi, ue8m0, &counts[t]);
    }
    for (auto& t : th) t.join();
    Count sum;
    for (const auto& c : counts) {
      sum.checks += c.checks, sum.quot_diff += c.quot_diff, sum.code_diff += c.code_diff;
      sum.max_diff_quot = std::max(sum.max_diff_quot, c.max_diff_quot);
    }
    std::printf("ue8m0=%d: %llu (x, s) pairs, %llu quotients differ (all |x/s| <= %a, far below e4m3's 2^-10 "
                "rounding threshold), %llu e4m3 codes differ\n", ue8m0, static_cast<unsigned long long>(sum.checks),
                static_cast<unsigned long long>(sum.quot_diff), sum.max_diff_quot,
                static_cast<unsigned long long>(sum.code_diff));
    total += sum.checks, bad_q += sum.quot_diff, bad_c += sum.code_diff;
    max_q = std::max(max_q, sum.max_diff_quot);
  }
  // The codes are what the kernel keeps: they must all agree. The quotients may differ only where x or x/s is
  // subnormal (Markstein's theorem assumes no underflow), i.e. |x/s| < 2^-80 (measured: < 2^-90), which encodes to ±0 either way.
  std::printf("%s: %llu pairs checked, %llu quotients differ in the underflow range\n",
              bad_c == 0 && max_q < 0x1p-80f ? "PASS" : "FAIL", static_cast<unsigned long long>(total),
              static_cast<unsigned long long>(bad_q));
  return bad_c == 0 && max_q < 0x1p-80f ? 0 : 1;
}
