// sampling_rules.h: the scalar rules of token sampling that host and device share bit for bit — the Philox4x32-10
// counter-based uniform, the Gumbel score, the greedy threshold, and the per-row parameters of the backend's
// `sample` op (base). The engine's Sampler (engine/sampler.h specifies the algorithm), CpuBackend::sample and the
// CUDA kernel (backend/cuda/sample.cu) all use these, so the three cannot drift.
// C++17 and <cstdint>/<cmath> only: device code includes it.
#pragma once

#include <cmath>
#include <cstdint>

#include "dsv3/base/host_device.h"

namespace dsv3 {

// Temperatures below this are greedy (vLLM's _SAMPLING_EPS): dividing by them would overflow fp32 logits.
inline constexpr float kGreedyTemperature = 1e-5f;

DSV3_HD inline bool sampling_greedy(float temperature) { return temperature < kGreedyTemperature; }

// What the backend's `sample` op writes instead of a token id when a row cannot be sampled.
inline constexpr int32_t kSampleInvalidLogits = -1;  // a NaN or +inf logit in the row
inline constexpr int32_t kSampleAllMasked = -2;      // every token is -inf (nothing left to draw)

// One row of the backend's `sample` op: steps 3-7 of the sampler algorithm (engine/sampler.h). Trivially copyable:
// the CUDA backend uploads an array of them.
struct SampleRowParams {
  float temperature = 1.0f;  // < kGreedyTemperature: greedy (argmax, ties to the lowest id)
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // >= 1: off
  float min_p = 0.0f;        // <= 0: off
  uint64_t seed = 0;         // the request's key (SeedSource::seed_for)
  uint32_t seq_index = 0;    // which of the request's n sequences
  uint32_t step = 0;         // the draw's step index: tokens generated so far
};

// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), as in Random123 and
// cuRAND's Philox4_32_10 block function: counter c (4 x u32) and key k (2 x u32) -> out (4 x u32), in place.
DSV3_HD inline void philox4x32_10_inplace(uint32_t c[4], uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments (golden ratio, sqrt(3) - 1)
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c[0], p1 = static_cast<uint64_t>(kM1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
  }
}

// The uniform of step 7: counter = (token, step, seq_index, 0), key = (seed low word, seed high word);
// u = (double((out[0] << 32 | out[1]) >> 12) + 0.5) * 2^-52: exact in fp64, in [2^-53, 1 - 2^-53], never 0 or 1.
DSV3_HD inline double sampling_uniform(uint64_t seed, uint32_t seq_index, uint32_t step, uint32_t token) {
  uint32_t c[4] = {token, step, seq_index, 0u};
  philox4x32_10_inplace(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const uint64_t bits = (static_cast<uint64_t>(c[0]) << 32 | c[1]) >> 12;  // 52 bits
  return (static_cast<double>(bits) + 0.5) * 0x1p-52;
}

// Step 7's score of a survivor with processed logit z and uniform u: z + Gumbel noise, in fp64. libm's and CUDA's
// log agree to 1 ulp, so host and device scores differ at most in the last bit.
DSV3_HD inline double gumbel_score(float z, double u) { return static_cast<double>(z) - ::log(-::log(u)); }

}  // namespace dsv3
