// cpu_moe.cpp: the router (noaux_tc, greedy, group_limited_greedy) and the routed experts (backend/cpu).
// Router in fp32 (model-spec §4.2): sigmoid or softmax scores; the correction bias only selects; masked groups get
// −∞; ties go to the lower expert index. Experts: tokens grouped per expert, SwiGLU through the linear op (so FP8
// numerics match the dense path), weighted outputs summed in fp32 in expert-index order, one bf16 rounding (§4.3).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/base/thread_pool.h"

namespace dsv3 {

void CpuBackend::router(const RouterParams& p) {
  validate(p);
  const int64_t n = p.x.dim(0), d = p.x.dim(1), E = p.gate.dim(0);
  const int64_t per_group = E / p.n_group;
  const float kNegInf = -std::numeric_limits<float>::infinity();
  parallel_for(n, [&](int64_t b, int64_t e) {
    std::vector<float> xf(static_cast<size_t>(d)), score(static_cast<size_t>(E)), sel(static_cast<size_t>(E));
    std::vector<float> gscore(static_cast<size_t>(p.n_group));
    std::vector<int64_t> order(static_cast<size_t>(E));
    for (int64_t t = b; t < e; ++t) {
      for (int64_t i = 0; i < d; ++i) xf[i] = bf16_to_f32(p.x.as<const bf16>()[t * d + i]);
      for (int64_t j = 0; j < E; ++j) {
        const bf16* w = p.gate.as<const bf16>() + j * d;
        float z = 0.f;  // block sums in block order (kRouterSumBlock)
        for (int64_t i0 = 0; i0 < d; i0 += kRouterSumBlock) {
          float s = 0.f;
          for (int64_t i = i0; i < std::min(d, i0 + kRouterSumBlock); ++i) s += xf[i] * bf16_to_f32(w[i]);
          z += s;
        }
        score[j] = z;
      }
      if (p.scoring == RouterScoring::kSigmoid) {
        for (auto& s : score) s = 1.0f / (1.0f + std::exp(-s));
      } else {
        const float mx = *std::max_element(score.begin(), score.end());
        float sum = 0.f;
        for (auto& s : score) sum += (s = std::exp(s - mx));
        for (auto& s : score) s /= sum;
      }
      for (int64_t j = 0; j < E; ++j) sel[j] = score[j] + (p.bias ? p.bias.as<const float>()[j] : 0.f);
      if (p.method != RouterTopk::kGreedy && p.n_group > 1) {
        for (int64_t g = 0; g < p.n_group; ++g) {
          const float* s = &sel[g * per_group];
          if (p.method == RouterTopk::kNoauxTc) {  // sum of the two largest
            float a = kNegInf, c = kNegInf;
            for (int64_t j = 0; j < per_group; ++j) {
              if (s[j] > a) { c = a; a = s[j]; } else if (s[j] > c) { c = s[j]; }
            }
            gscore[g] = a + c;
          } else {
            gscore[g] = *std::max_element(s, s + per_group);
          }
        }
        std::vector<int64_t> gorder(static_cast<size_t>(p.n_group));
        std::iota(gorder.begin(), gorder.end(), 0);
        std::stable_sort(gorder.begin(), gorder.end(), [&](int64_t a, int64_t c) { return gscore[a] > gscore[c]; });
        for (int64_t gi = p.topk_group; gi < p.n_group; ++gi)
          for (int64_t j = 0; j < per_group; ++j) sel[gorder[gi] * per_group + j] = kNegInf;
      }
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t c) { return sel[a] > sel[c]; });
      float wsum = 0.f;
      for (int64_t k = 0; k < p.top_k; ++k) wsum += score[order[k]];
      for (int64_t k = 0; k < p.top_k; ++k) {
        float w = score[order[k]];
        if (p.norm_topk_prob) w /= wsum;
        p.topk_ids.as<int32_t>()[t * p.top_k + k] = static_cast<int32_t>(order[k]);
        p.topk_weights.as<float>()[t * p.top_k + k] = w * p.routed_scaling_factor;
      }
    }
  });
}

void CpuBackend::moe_experts(const MoeExpertsParams& p) {
  validate(p);
  const int64_t n = p.x.dim(0), d = p.x.dim(1), top_k = p.topk_ids.dim(1);
  const int32_t* ids = p.topk_ids.as<const int32_t>();
  const float* wts = p.topk_weights.as<const float>();
  std::vector<std::vector<std::pair<int64_t, float>>> routed(static_cast<size_t>(p.n_experts));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t k = 0; k < top_k; ++k) {
      const int32_t e = ids[t * top_k + k];
      CHECK(e >= 0 && e < p.n_experts, "moe_experts: expert id {} of {}", e, p.n_experts);
      routed[e].push_back({t, wts[t * top_k + k]});
    }
  std::vector<float> acc(static_cast<size_t>(n * d), 0.f);
  for (int64_t e = 0; e < p.n_experts; ++e) {
    const auto& list = routed[e];
    if (list.empty()) continue;
    const int64_t m = static_cast<int64_t>(list.size());
    const ExpertWeights& ew = p.experts[e];
    const int64_t f = ew.gate.weight.dim(0);
    Tensor xe(DType::kBF16, {m, d}), g(DType::kBF16, {m, f}), u(DType::kBF16, {m, f}), y(DType::kBF16, {m, d});
    for (int64_t i = 0; i < m; ++i)
      std::copy_n(p.x.as<const bf16>() + list[i].first * d, d, xe.as<bf16>() + i * d);
    linear({.x = xe, .w = ew.gate, .out = g, .ue8m0 = p.ue8m0});
    linear({.x = xe, .w = ew.up, .out = u, .ue8m0 = p.ue8m0});
    silu_mul({.gate = g, .up = u, .out = g});
    linear({.x = g, .w = ew.down, .out = y, .ue8m0 = p.ue8m0});
    for (int64_t i = 0; i < m; ++i) {
      float* a = &acc[list[i].first * d];
      const bf16* yr = y.as<const bf16>() + i * d;
      for (int64_t c = 0; c < d; ++c) a[c] += list[i].second * bf16_to_f32(yr[c]);
    }
  }
  for (int64_t i = 0; i < n * d; ++i) p.out.as<bf16>()[i] = f32_to_bf16(acc[i]);
}

}  // namespace dsv3
