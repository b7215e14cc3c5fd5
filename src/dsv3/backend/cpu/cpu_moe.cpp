// cpu_moe.cpp: the router (noaux_tc, greedy, group_limited_greedy) and the routed experts (backend/cpu).
// Router in fp32 (model-spec §4.2): sigmoid or softmax scores; the correction bias only selects; masked groups get
// −∞; ties go to the lower expert index. Experts: tokens grouped per expert, SwiGLU through the linear op (so FP8
// numerics match the dense path), weighted outputs summed in fp32 in expert-index order, one bf16 rounding (§4.3).
// The arithmetic, and the router's whole selection, is backend/ref_math.h's (shared with the CUDA reference numerics,
// backend/cuda/reference_moe.cu).
#include <algorithm>
#include <cmath>
#include <vector>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/ref_math.h"
#include "dsv3/base/thread_pool.h"

namespace dsv3 {

void CpuBackend::router(const RouterParams& p) {
  validate(p);
  const int64_t n = p.x.dim(0), d = p.x.dim(1), E = p.gate.dim(0);
  const int method = p.method == RouterTopk::kNoauxTc ? 0 : p.method == RouterTopk::kGreedy ? 1 : 2;
  parallel_for(n, [&](int64_t b, int64_t e) {
    std::vector<float> xf(static_cast<size_t>(d)), score(static_cast<size_t>(E)), sel(static_cast<size_t>(E));
    std::vector<float> gscore(static_cast<size_t>(p.n_group));
    std::vector<int32_t> used(static_cast<size_t>(std::max(E, p.n_group)));
    for (int64_t t = b; t < e; ++t) {
      for (int64_t i = 0; i < d; ++i) xf[i] = bf16_to_f32(p.x.as<const bf16>()[t * d + i]);
      for (int64_t j = 0; j < E; ++j) score[j] = ref::router_logit(xf.data(), &p.gate.as<const bf16>()[j * d].bits, d);
      ref::router_select(score.data(), sel.data(), gscore.data(), used.data(),
                         p.bias ? p.bias.as<const float>() : nullptr, static_cast<int>(E),
                         p.scoring == RouterScoring::kSigmoid, method, static_cast<int>(p.n_group),
                         static_cast<int>(p.topk_group), static_cast<int>(p.top_k), p.norm_topk_prob,
                         p.routed_scaling_factor, p.topk_ids.as<int32_t>() + t * p.top_k,
                         p.topk_weights.as<float>() + t * p.top_k);
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
      for (int64_t c = 0; c < d; ++c) a[c] = ref::mac(a[c], list[i].second, bf16_to_f32(yr[c]));
    }
  }
  for (int64_t i = 0; i < n * d; ++i) p.out.as<bf16>()[i].bits = ref::f32_to_bf16(acc[i]);
}

}  // namespace dsv3
