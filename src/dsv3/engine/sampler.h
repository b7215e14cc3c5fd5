// sampler.h: the CPU sampler: logits rows -> next token (+ logprobs), per-request reproducible (engine).
// It is the reference a GPU sampler must reproduce, so the whole algorithm is specified here, step by step, with the
// precision of each step. Rows are independent: a row's result depends only on its own logits, params, token ids,
// seed and step, never on the rest of the batch.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dsv3/base/hash.h"
#include "dsv3/base/sampling.h"
#include "dsv3/engine/sampling_params.h"

namespace dsv3 {

class ThreadPool;

// ---------------------------------------------------------------------------------------------------------------------
// The algorithm, for one row with model logits l[v] (fp32, v in [0, vocab_size)):
//
//  1. Penalties (fp32, skipped when the factor is neutral). Seen = the distinct ids of prompt + generated tokens;
//     count[v] = occurrences of v among the generated tokens only.
//       repetition: for v in seen:        l[v] = l[v] > 0 ? l[v] / repetition_penalty : l[v] * repetition_penalty
//       frequency:  for v with count > 0: l[v] = l[v] - frequency_penalty * float(count[v])
//       presence:   for v with count > 0: l[v] = l[v] - presence_penalty
//  2. min_tokens: while n_generated < min_tokens, l[v] = -inf for v in stop_token_ids and for end_id (unless
//     ignore_eos).
//  3. Temperature: greedy (temperature < kGreedyTemperature, vLLM's epsilon) keeps z = l; otherwise z[v] = l[v] / T
//     (an fp32 division, not a multiply by 1/T). z is "the processed logits"; -inf marks a masked token.
//  Greedy stops here: the token is argmax z, ties to the lowest id. Otherwise the candidate set shrinks:
//  4. top_k (0 < top_k): order the candidates by (z desc, id asc) and keep the first top_k.
//  5. top_p (< 1): e[v] = exp(double(z[v]) - double(z_max)) and total = sum of e over the survivors in id order
//     (fp64); q[v] = e[v] / total. Order the survivors by (z desc, id asc) and keep token j iff the sum of q over
//     the tokens before j is < top_p (fp64 running sum in that order). The first token is always kept.
//  6. min_p (> 0): keep the survivors with exp(double(z[v]) - double(z_max)) >= min_p, i.e. p[v] >= min_p * p_max.
//  7. Draw (Gumbel-max, i.e. an exponential race): for each survivor v, u[v] = sampling_uniform(seed, seq_index,
//     step = n_generated, v) in (0, 1), score[v] = double(z[v]) - log(-log(u[v])) (fp64); the token is argmax score,
//     ties to the lowest id. This draws v with probability softmax(z) renormalised over the survivors, and because
//     u is a pure function of (seed, seq_index, step, v), a GPU computes the identical u per vocabulary entry in
//     parallel and reduces with the same argmax. Nothing is consumed from a stream, so a preempted and recomputed
//     request draws the same tokens again.
//  Logprobs (when params.logprobs is set): log_softmax over all v of z (LogprobsMode::kProcessed, the default:
//     after steps 1-3, before the truncation of 4-6, so every unmasked token has a finite value) or of the model's l
//     (kRaw). fp64: m = max, lse = m + log(sum_v exp(x[v] - m)) summed in id order, logprob = x[v] - lse, stored as
//     fp32. The top-n list is ordered by (logprob desc, id asc).
//
// GPU reproduction (Backend::sample, backend/cuda/sample.cu runs steps 3-7): step 1 is written as a separate multiply and subtract; nvcc contracts these into an FMA by
// default, so the kernel must use __fmul_rn/__fsub_rn (or -fmad=false) to get the same fp32 z.
// Steps 1-3, 6 and 7 are elementwise with a max/argmax reduction, so a kernel that does the same
// fp32/fp64 operations gets bit-identical tokens (libm's and CUDA's log/exp differ by at most 1 ulp, which can only
// flip a draw whose two best scores agree to ~1e-16). Step 5's sums depend on the summation order; a parallel
// reduction or scan can move the cut only when a prefix sum lies within rounding of top_p.
// ---------------------------------------------------------------------------------------------------------------------

// philox4x32_10, sampling_uniform and the per-row steps 3-7 live in base/sampling.h (shared with the backend's
// `sample` op, whose CPU implementation runs the same code and whose CUDA kernel reproduces it).

// Seeds for requests that carry none: splitmix64(base + k) for the k-th call (an atomic counter; the engine owns one
// source), so each unseeded request owns an independent stream and no two share one.
class SeedSource {
 public:
  explicit SeedSource(uint64_t base = 0x5eed'd5e3'0000'0000ull) : base_(base) {}
  uint64_t next() { return splitmix64(base_ + counter_.fetch_add(1, std::memory_order_relaxed)); }
  uint64_t seed_for(const SamplingParams& params) { return params.seed ? *params.seed : next(); }

 private:
  uint64_t base_;
  std::atomic<uint64_t> counter_{0};
};

// One row of a batch.
struct SamplerRow {
  const float* logits = nullptr;           // [vocab_size] fp32, the model's logits for the next token
  const SamplingParams* params = nullptr;  // validated
  std::span<const int32_t> token_ids;      // [n_prompt + n_generated] prompt then generated ids (penalties)
  int n_generated = 0;                     // generated ids at the end of token_ids; also the draw's step index
  uint64_t seed = 0;                       // the request's key (SeedSource::seed_for)
  uint32_t seq_index = 0;                  // which of the params->n sequences
};

struct TokenLogprob {
  int32_t token;
  float logprob;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = std::numeric_limits<float>::quiet_NaN();  // the chosen token's; set when params->logprobs is set
  std::vector<TokenLogprob> top_logprobs;                    // [*params->logprobs], best first
  std::string error;  // non-empty: this row failed (bad input) and token is -1; the other rows are unaffected
};

enum class LogprobsMode { kProcessed, kRaw };

struct SamplerConfig {
  int vocab_size = 0;
  LogprobsMode logprobs_mode = LogprobsMode::kProcessed;
};

class Sampler {
 public:
  explicit Sampler(SamplerConfig config);

  // One result per row. A row with bad input (NaN/+inf logits, ids out of range, nothing left to sample) gets
  // SampleResult::error and the others proceed. pool, when given, spreads rows over threads (results identical).
  std::vector<SampleResult> sample(std::span<const SamplerRow> rows, ThreadPool* pool = nullptr) const;

  // One row; throws dsv3::Error on bad input.
  SampleResult sample_row(const SamplerRow& row) const;

  // Steps 1-3: out[v] = z[v] (the processed logits), -inf where masked. out: [vocab_size].
  void process_logits(const SamplerRow& row, std::span<float> out) const;
  // Steps 4-6 on processed logits: masked tokens become -inf in z. Exposed for tests and for the GPU port.
  static void apply_top_k(std::span<float> z, int top_k);
  static void apply_top_p(std::span<float> z, float top_p);
  static void apply_min_p(std::span<float> z, float min_p);

  int vocab_size() const { return config_.vocab_size; }

 private:
  SamplerConfig config_;
};

}  // namespace dsv3
