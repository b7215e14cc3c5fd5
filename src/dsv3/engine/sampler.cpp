// sampler.cpp: the CPU reference sampler; sampler.h specifies the algorithm step by step (engine).
// Plain loops over the vocabulary, fp32 where the GPU will use fp32 and fp64 where the header says so.
#include "dsv3/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "dsv3/base/error.h"
#include "dsv3/base/thread_pool.h"

namespace dsv3 {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Order of the top-n logprobs list: higher value first, then the lower id.
struct ByValueDesc {
  std::span<const float> z;
  bool operator()(int32_t a, int32_t b) const { return z[a] > z[b] || (z[a] == z[b] && a < b); }
};

}  // namespace

Sampler::Sampler(SamplerConfig config) : config_(config) {
  EXPECT(config_.vocab_size > 0, "sampler: vocab_size must be > 0, got {}", config_.vocab_size);
}

void Sampler::process_logits(const SamplerRow& row, std::span<float> out) const {
  const int vocab = config_.vocab_size;
  CHECK(row.logits != nullptr && row.params != nullptr, "sampler row without logits or params");
  CHECK(out.size() == static_cast<size_t>(vocab), "process_logits: out has {} entries, vocab is {}", out.size(),
        vocab);
  const SamplingParams& p = *row.params;
  EXPECT(row.n_generated >= 0 && static_cast<size_t>(row.n_generated) <= row.token_ids.size(),
         "sampler: n_generated = {} but the request has {} token ids", row.n_generated, row.token_ids.size());
  for (int v = 0; v < vocab; ++v) {
    const float l = row.logits[v];
    EXPECT(!std::isnan(l) && l != std::numeric_limits<float>::infinity(), "sampler: logits[{}] = {} (not a number)",
           v, l);
    out[v] = l;
  }
  // NOTE: the token ids are read (and range-checked) only when a penalty needs them, so a request without
  // penalties costs O(vocab) per step however long its context is.
  auto sorted_ids = [&](std::span<const int32_t> ids) {
    std::vector<int32_t> sorted(ids.begin(), ids.end());
    std::sort(sorted.begin(), sorted.end());
    EXPECT(sorted.empty() || (sorted.front() >= 0 && sorted.back() < vocab),
           "sampler: token id {} out of range (vocabulary size {})", sorted.front() < 0 ? sorted.front() : sorted.back(),
           vocab);
    return sorted;
  };

  // 1. Penalties.
  if (p.repetition_penalty != 1.0f && !row.token_ids.empty()) {
    std::vector<int32_t> seen = sorted_ids(row.token_ids);
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int32_t v : seen) out[v] = out[v] > 0.0f ? out[v] / p.repetition_penalty : out[v] * p.repetition_penalty;
  }
  if ((p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) && row.n_generated > 0) {
    std::vector<int32_t> gen = sorted_ids(row.token_ids.last(row.n_generated));
    for (size_t i = 0; i < gen.size();) {
      size_t j = i;
      while (j < gen.size() && gen[j] == gen[i]) ++j;
      const int32_t v = gen[i];
      out[v] = out[v] - p.frequency_penalty * static_cast<float>(j - i);
      out[v] = out[v] - p.presence_penalty;
      i = j;
    }
  }
  // 2. min_tokens.
  if (row.n_generated < p.min_tokens) {
    for (int32_t id : p.stop_token_ids)
      if (id >= 0 && id < vocab) out[id] = kNegInf;
    if (p.end_id && !p.ignore_eos && *p.end_id >= 0 && *p.end_id < vocab) out[*p.end_id] = kNegInf;
  }
  // 3. Temperature.
  if (!p.greedy()) sampling::apply_temperature(out, p.temperature);
}

void Sampler::apply_top_k(std::span<float> z, int top_k) { sampling::apply_top_k(z, top_k); }
void Sampler::apply_top_p(std::span<float> z, float top_p) { sampling::apply_top_p(z, top_p); }
void Sampler::apply_min_p(std::span<float> z, float min_p) { sampling::apply_min_p(z, min_p); }

SampleResult Sampler::sample_row(const SamplerRow& row) const {
  // NOTE: scratch per thread, so a batch spread over the pool allocates the vocabulary-sized buffers once per thread.
  thread_local std::vector<float> z_buf, work_buf;
  z_buf.resize(config_.vocab_size);
  std::span<float> z(z_buf);
  process_logits(row, z);
  const SamplingParams& p = *row.params;

  SampleResult result;
  const SampleRowParams rp{.temperature = p.temperature, .top_k = p.top_k, .top_p = p.top_p, .min_p = p.min_p,
                           .seed = row.seed, .seq_index = row.seq_index,
                           .step = static_cast<uint32_t>(row.n_generated)};
  result.token = sampling::draw(z, rp, work_buf);
  EXPECT(result.token >= 0, "sampler: every token is masked (-inf logits, or min_tokens masks all that is left)");

  if (p.logprobs) {
    std::span<const float> x = z;
    if (config_.logprobs_mode == LogprobsMode::kRaw) x = std::span<const float>(row.logits, config_.vocab_size);
    const double lse = sampling::log_sum_exp(x);
    result.logprob = static_cast<float>(static_cast<double>(x[result.token]) - lse);
    const int n = std::min(*p.logprobs, config_.vocab_size);
    if (n > 0) {
      std::vector<int32_t> ids(x.size());
      std::iota(ids.begin(), ids.end(), 0);
      std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), ByValueDesc{x});
      result.top_logprobs.reserve(n);
      for (int i = 0; i < n; ++i)
        result.top_logprobs.push_back({ids[i], static_cast<float>(static_cast<double>(x[ids[i]]) - lse)});
    }
  }
  return result;
}

std::vector<SampleResult> Sampler::sample(std::span<const SamplerRow> rows, ThreadPool* pool) const {
  std::vector<SampleResult> results(rows.size());
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      try {
        results[i] = sample_row(rows[i]);
      } catch (const Error& e) {
        results[i] = SampleResult{};
        results[i].error = e.what();
      }
    }
  };
  if (pool != nullptr)
    pool->parallel_for(static_cast<int64_t>(rows.size()), run);
  else
    run(0, static_cast<int64_t>(rows.size()));
  return results;
}

}  // namespace dsv3
