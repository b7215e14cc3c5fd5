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

uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// Candidate order of steps 4 and 5: higher z first, then the lower id.
struct ByValueDesc {
  std::span<const float> z;
  bool operator()(int32_t a, int32_t b) const { return z[a] > z[b] || (z[a] == z[b] && a < b); }
};

std::vector<int32_t> live_ids(std::span<const float> z) {
  std::vector<int32_t> ids;
  for (size_t v = 0; v < z.size(); ++v)
    if (z[v] != kNegInf) ids.push_back(static_cast<int32_t>(v));
  return ids;
}

// log_softmax over all of x in fp64 (header, "Logprobs"); returns lse.
double log_sum_exp(std::span<const float> x) {
  float m = kNegInf;
  for (float v : x) m = std::max(m, v);
  CHECK(m != kNegInf, "log_sum_exp over an all-masked row");
  double sum = 0.0;
  for (float v : x) sum += std::exp(static_cast<double>(v) - static_cast<double>(m));
  return static_cast<double>(m) + std::log(sum);
}

// argmax with ties to the lowest id; -1 when everything is -inf.
int32_t argmax_lowest(std::span<const float> z) {
  int32_t best = -1;
  float best_z = kNegInf;
  for (size_t v = 0; v < z.size(); ++v) {
    if (z[v] > best_z) {
      best_z = z[v];
      best = static_cast<int32_t>(v);
    }
  }
  return best;
}

}  // namespace

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments (golden ratio, sqrt(3) - 1)
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += kW0;
      key[1] += kW1;
    }
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(kM0, ctr[0], &hi0);
    const uint32_t lo1 = mulhilo32(kM1, ctr[2], &hi1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
  }
  return ctr;
}

double sampling_uniform(uint64_t seed, uint32_t seq_index, uint32_t step, uint32_t token) {
  const auto out = philox4x32_10({token, step, seq_index, 0u},
                                 {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  const uint64_t bits = (static_cast<uint64_t>(out[0]) << 32 | out[1]) >> 12;  // 52 bits
  return (static_cast<double>(bits) + 0.5) * 0x1p-52;
}

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
  if (!p.greedy())
    for (float& z : out) z = z / p.temperature;
}

void Sampler::apply_top_k(std::span<float> z, int top_k) {
  if (top_k <= 0) return;
  std::vector<int32_t> ids = live_ids(z);
  if (ids.size() <= static_cast<size_t>(top_k)) return;
  std::nth_element(ids.begin(), ids.begin() + top_k, ids.end(), ByValueDesc{z});
  for (size_t i = top_k; i < ids.size(); ++i) z[ids[i]] = kNegInf;
}

void Sampler::apply_top_p(std::span<float> z, float top_p) {
  if (top_p >= 1.0f) return;
  std::vector<int32_t> ids = live_ids(z);
  if (ids.size() <= 1) return;
  float z_max = kNegInf;
  for (int32_t v : ids) z_max = std::max(z_max, z[v]);
  double total = 0.0;  // id order, as the header specifies
  for (int32_t v : ids) total += std::exp(static_cast<double>(z[v]) - static_cast<double>(z_max));
  // NOTE: the nucleus is usually a few tokens, so only a growing head is put in order: select the next block with
  // nth_element, sort it, walk it. Under a strict total order this visits the same tokens as a full sort.
  double before = 0.0;
  size_t keep = 0;
  for (size_t head = std::min<size_t>(64, ids.size()); keep < ids.size(); head = std::min(head * 4, ids.size())) {
    std::nth_element(ids.begin() + keep, ids.begin() + head - 1, ids.end(), ByValueDesc{z});
    std::sort(ids.begin() + keep, ids.begin() + head, ByValueDesc{z});
    while (keep < head && before < static_cast<double>(top_p)) {
      before += std::exp(static_cast<double>(z[ids[keep]]) - static_cast<double>(z_max)) / total;
      ++keep;
    }
    if (before >= static_cast<double>(top_p)) break;
  }
  for (size_t i = keep; i < ids.size(); ++i) z[ids[i]] = kNegInf;
}

void Sampler::apply_min_p(std::span<float> z, float min_p) {
  if (min_p <= 0.0f) return;
  float z_max = kNegInf;
  for (float v : z) z_max = std::max(z_max, v);
  if (z_max == kNegInf) return;
  for (float& v : z)
    if (v != kNegInf && std::exp(static_cast<double>(v) - static_cast<double>(z_max)) < static_cast<double>(min_p))
      v = kNegInf;
}

SampleResult Sampler::sample_row(const SamplerRow& row) const {
  // NOTE: scratch per thread, so a batch spread over the pool allocates the vocabulary-sized buffers once per thread.
  thread_local std::vector<float> z_buf, work_buf;
  z_buf.resize(config_.vocab_size);
  std::span<float> z(z_buf);
  process_logits(row, z);
  const SamplingParams& p = *row.params;

  SampleResult result;
  if (p.greedy()) {
    result.token = argmax_lowest(z);
  } else {
    work_buf.assign(z.begin(), z.end());
    std::span<float> w(work_buf);
    apply_top_k(w, p.top_k);
    apply_top_p(w, p.top_p);
    apply_min_p(w, p.min_p);
    // 7. Gumbel-max over the survivors.
    double best = -std::numeric_limits<double>::infinity();
    for (size_t v = 0; v < w.size(); ++v) {
      if (w[v] == kNegInf) continue;
      const double u = sampling_uniform(row.seed, row.seq_index, static_cast<uint32_t>(row.n_generated),
                                        static_cast<uint32_t>(v));
      const double score = static_cast<double>(w[v]) - std::log(-std::log(u));
      if (score > best) {
        best = score;
        result.token = static_cast<int32_t>(v);
      }
    }
  }
  EXPECT(result.token >= 0, "sampler: every token is masked (-inf logits, or min_tokens masks all that is left)");

  if (p.logprobs) {
    std::span<const float> x = z;
    if (config_.logprobs_mode == LogprobsMode::kRaw) x = std::span<const float>(row.logits, config_.vocab_size);
    const double lse = log_sum_exp(x);
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
