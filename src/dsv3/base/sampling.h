// sampling.h: the host implementation of the sampler's steps 3-7 and of the logprob reduction on one row (base).
// engine/sampler.h specifies the algorithm; this module holds the code below the engine so that the engine's Sampler
// and CpuBackend::sample (the reference of the CUDA `sample` op) run the very same functions.
// Penalties and min_tokens masking (steps 1-2) need the request's token history and stay in the engine's Sampler.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "dsv3/base/sampling_rules.h"

namespace dsv3 {

// The Philox block function with Random123's array interface (tests compare it with Random123's known answers).
inline std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  philox4x32_10_inplace(ctr.data(), key[0], key[1]);
  return ctr;
}

namespace sampling {

// Step 3 for a non-greedy temperature: z[v] = z[v] / temperature (an fp32 division, not a multiply by 1/T).
void apply_temperature(std::span<float> z, float temperature);
// Steps 4-6 on processed logits: masked tokens become -inf in z.
void apply_top_k(std::span<float> z, int top_k);
void apply_top_p(std::span<float> z, float top_p);
void apply_min_p(std::span<float> z, float min_p);
// argmax with ties to the lowest id; -1 when everything is -inf.
int32_t argmax_lowest(std::span<const float> z);
// Step 7 over the survivors (z != -inf); -1 when there are none.
int32_t gumbel_argmax(std::span<const float> z, uint64_t seed, uint32_t seq_index, uint32_t step);
// The draw on processed logits z (after steps 1-3): greedy argmax, or steps 4-7 on a copy in `work` (z is not
// changed). -1 when every token is masked.
int32_t draw(std::span<const float> z, const SampleRowParams& p, std::vector<float>& work);
// log(sum_v exp(x[v])) in fp64: m = max, m + log(sum_v exp(x[v] - m)) summed in id order. x must hold a finite value.
double log_sum_exp(std::span<const float> x);

// One row of the backend op from raw logits l (steps 3-7): kSampleInvalidLogits on a NaN or +inf logit,
// kSampleAllMasked when every token is -inf. *logprob (when given) gets the chosen token's processed logprob
// (log_softmax of z before steps 4-6), NaN when no token is chosen.
int32_t sample_row(std::span<const float> l, const SampleRowParams& p, float* logprob);

}  // namespace sampling
}  // namespace dsv3
