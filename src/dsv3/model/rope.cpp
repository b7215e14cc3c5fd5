// rope.cpp: YaRN frequency table (model). Ramp over [low, high] from the correction dims of beta_fast/beta_slow,
// computed from original_max_position_embeddings (never max_position_embeddings, model-spec §3.6 "Pitfall").
#include "dsv3/model/rope.h"

#include <algorithm>
#include <cmath>

namespace dsv3 {

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t dim = c.qk_rope_head_dim, half = dim / 2;
  const float base = static_cast<float>(c.rope.rope_theta);
  std::vector<float> f(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)  // 1 / base^(2i/dim), fp32
    f[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim));
  if (!c.rope.yarn || c.rope.factor <= 1.0) return f;
  // Correction dims in double, as the Python code computes them.
  auto corr = [&](double rot) {
    return dim * std::log(c.rope.original_max_position_embeddings / (rot * 2 * M_PI)) / (2 * std::log(c.rope.rope_theta));
  };
  double low = std::max(std::floor(corr(c.rope.beta_fast)), 0.0);
  double high = std::min(std::ceil(corr(c.rope.beta_slow)), static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  const float factor = static_cast<float>(c.rope.factor);
  for (int64_t i = 0; i < half; ++i) {
    float r = (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low);
    r = std::clamp(r, 0.0f, 1.0f);
    const float smooth = 1.0f - r;
    f[i] = f[i] / factor * (1.0f - smooth) + f[i] * smooth;
  }
  return f;
}

}  // namespace dsv3
