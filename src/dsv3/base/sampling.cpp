// sampling.cpp: the sampler's steps 3-7 on one row, plain loops over the vocabulary (base).
// fp32 where the GPU uses fp32 and fp64 where engine/sampler.h says so; shared by the engine's Sampler and
// CpuBackend::sample, the reference the CUDA kernel is checked against.
#include "dsv3/base/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "dsv3/base/error.h"

namespace dsv3::sampling {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

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

}  // namespace

void apply_temperature(std::span<float> z, float temperature) {
  for (float& v : z) v = v / temperature;
}

void apply_top_k(std::span<float> z, int top_k) {
  if (top_k <= 0) return;
  std::vector<int32_t> ids = live_ids(z);
  if (ids.size() <= static_cast<size_t>(top_k)) return;
  std::nth_element(ids.begin(), ids.begin() + top_k, ids.end(), ByValueDesc{z});
  for (size_t i = top_k; i < ids.size(); ++i) z[ids[i]] = kNegInf;
}

void apply_top_p(std::span<float> z, float top_p) {
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

void apply_min_p(std::span<float> z, float min_p) {
  if (min_p <= 0.0f) return;
  float z_max = kNegInf;
  for (float v : z) z_max = std::max(z_max, v);
  if (z_max == kNegInf) return;
  for (float& v : z)
    if (v != kNegInf && std::exp(static_cast<double>(v) - static_cast<double>(z_max)) < static_cast<double>(min_p))
      v = kNegInf;
}

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

int32_t gumbel_argmax(std::span<const float> z, uint64_t seed, uint32_t seq_index, uint32_t step) {
  int32_t token = -1;
  double best = -std::numeric_limits<double>::infinity();
  for (size_t v = 0; v < z.size(); ++v) {
    if (z[v] == kNegInf) continue;
    const double score = gumbel_score(z[v], sampling_uniform(seed, seq_index, step, static_cast<uint32_t>(v)));
    if (score > best) {
      best = score;
      token = static_cast<int32_t>(v);
    }
  }
  return token;
}

int32_t draw(std::span<const float> z, const SampleRowParams& p, std::vector<float>& work) {
  if (sampling_greedy(p.temperature)) return argmax_lowest(z);
  work.assign(z.begin(), z.end());
  std::span<float> w(work);
  apply_top_k(w, p.top_k);
  apply_top_p(w, p.top_p);
  apply_min_p(w, p.min_p);
  return gumbel_argmax(w, p.seed, p.seq_index, p.step);
}

double log_sum_exp(std::span<const float> x) {
  float m = kNegInf;
  for (float v : x) m = std::max(m, v);
  CHECK(m != kNegInf, "log_sum_exp over an all-masked row");
  double sum = 0.0;
  for (float v : x) sum += std::exp(static_cast<double>(v) - static_cast<double>(m));
  return static_cast<double>(m) + std::log(sum);
}

int32_t sample_row(std::span<const float> l, const SampleRowParams& p, float* logprob) {
  // NOTE: scratch per thread, so rows spread over a pool allocate the vocabulary-sized buffers once per thread.
  thread_local std::vector<float> z_buf, work_buf;
  if (logprob) *logprob = std::numeric_limits<float>::quiet_NaN();
  for (float v : l)
    if (std::isnan(v) || v == std::numeric_limits<float>::infinity()) return kSampleInvalidLogits;
  z_buf.assign(l.begin(), l.end());
  std::span<float> z(z_buf);
  if (!sampling_greedy(p.temperature)) apply_temperature(z, p.temperature);
  const int32_t token = draw(z, p, work_buf);
  if (token < 0) return kSampleAllMasked;
  if (logprob) *logprob = static_cast<float>(static_cast<double>(z[token]) - log_sum_exp(z));
  return token;
}

}  // namespace dsv3::sampling
