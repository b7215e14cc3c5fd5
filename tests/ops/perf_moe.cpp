// perf_moe.cpp: test_ops --perf tables of the MoE ops: moe_experts at DeepSeek-V3 dims on every path (loop,
// grouped, decode) and the decode kernels by K split x L2 prefetch distance; the fused noaux_tc router against the
// unfused selection.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dsv3/backend/cuda/cuda_backend.h"
#include "dsv3/backend/cuda/kernels.h"
#include "ops_env.h"
#include "ops_perf.h"

namespace dsv3::ops_test {

// Routed experts at DeepSeek-V3 dims, decode batch sizes, every path (loop, grouped, decode; "*" marks the one the
// production backend picks). Every expert has its own device copy of the weights, so each hit expert is read from
// HBM; "weight_MB" is what the step must read at least: the distinct experts hit x (3·f·d bytes + their scales).
// Then the decode kernels at 1 and 8 tokens by K split (DSV3_MOE_SPLIT) and L2 prefetch distance (DSV3_MOE_PREFETCH).
void perf_moe(Env& env) {
  if (!env.gpu_moe_loop || !env.gpu_moe_grouped || !env.gpu_moe_decode) return;
  Backend& gpu = *env.gpu;
  const int d = 7168, f = 2048, E = 256, top_k = 8;
  const int64_t fb = (f + 127) / 128, db = (d + 127) / 128;
  fmt::print("\n== perf: moe_experts, FP8 experts d={} f={} E={} top_k={}, random top-{} routing ==\n", d, f, E, top_k,
             top_k);
  fmt::print("{:>5} {:>9} {:>5} {:>10} {:>10} {:>10} {:>7}\n", "n", "path", "hit", "weight_MB", "time_us", "GB/s",
             "%4540");
  Rng rng(45);
  HostLinear hg = rand_fp8_weight(rng, f, d, /*tiled=*/true), hd = rand_fp8_weight(rng, d, f, /*tiled=*/true);
  Dev src(gpu);
  const LinearWeight sg = src.weight(hg), sd = src.weight(hd);
  std::deque<Tensor> keep;
  auto clone = [&](const TensorView& v) {  // device to device
    keep.emplace_back(v.dtype, v.shape, gpu.allocator());
    gpu.copy(keep.back().view(), v);
    return keep.back().view();
  };
  std::vector<ExpertWeights> ex;
  for (int e = 0; e < E; ++e)
    ex.push_back({{clone(sg.weight), clone(sg.scale_inv)}, {clone(sg.weight), clone(sg.scale_inv)},
                  {clone(sd.weight), clone(sd.scale_inv)}});
  gpu.synchronize();
  // Backends for the sweep (one device: they share the buffers).
  const std::vector<int> sweep_split = {1, 2, 4, 8}, sweep_pf = {0, 1, 2, 4};
  std::vector<std::unique_ptr<Backend>> sweep;
  for (int split : sweep_split)
    for (int pf : sweep_pf) {
      CudaBackendOptions o;
      o.moe_path = CudaMoePath::kDecode;
      o.moe_decode_split = split;
      o.moe_decode_prefetch = pf;
      sweep.push_back(make_cuda_backend(o));
    }
  struct Routed {
    Dev io;
    MoeExpertsParams p;
    double bytes;
    int64_t n_hit;
  };
  auto route = [&](int n) {
    std::vector<int32_t> ids;
    std::vector<float> wv;
    std::vector<bool> hit(E, false);
    for (int t = 0; t < n; ++t) {
      std::vector<int32_t> perm = shuffled(rng, E);
      for (int k = 0; k < top_k; ++k) {
        ids.push_back(perm[static_cast<size_t>(k)]), wv.push_back(rng.uniform(0.1f, 1.f));
        hit[static_cast<size_t>(perm[static_cast<size_t>(k)])] = true;
      }
    }
    auto r = std::make_unique<Routed>(Routed{Dev(gpu), {}, 0, 0});
    r->n_hit = std::count(hit.begin(), hit.end(), true);
    r->bytes = static_cast<double>(r->n_hit) * (3.0 * f * d + 3.0 * fb * db * 4);
    Tensor x = rand_bf16(rng, {n, d}), tid = host_i32({n, top_k}, ids);
    Tensor tw = make_host_tensor(DType::kF32, {n, top_k}, wv.data());
    r->p = MoeExpertsParams{.x = r->io.up(x, "x"), .topk_ids = r->io.up(tid, "topk_ids"),
                            .topk_weights = r->io.up(tw, "topk_weights"), .experts = ex.data(), .n_experts = E,
                            .out = r->io.out(DType::kBF16, {n, d}, "out")};
    return r;
  };
  auto row = [&](int n, const std::string& path, const Routed& r, double t) {
    fmt::print("{:>5} {:>9} {:>5} {:>10.1f} {:>10.1f} {:>10.0f} {:>6.1f}%\n", n, path, r.n_hit, r.bytes / 1e6, t * 1e6,
               r.bytes / t / 1e9, 100 * r.bytes / t / kHbmRead);
  };
  for (int n : {1, 2, 4, 8, 32, 128}) {
    const auto r = route(n);
    const int entries = n * top_k;
    const int pick = entries <= 64 ? 2 : entries <= 16 * E ? 1 : 0;  // CudaBackend::moe_experts' auto choice
    for (int variant = 0; variant < 3; ++variant) {
      if (variant == 2 && entries > cuda::kMoeDecodeMaxEntries) continue;
      Backend& b = variant == 0 ? *env.gpu_moe_loop : variant == 1 ? *env.gpu_moe_grouped : *env.gpu_moe_decode;
      const double t = time_it(b, [&](int) { b.moe_experts(r->p); });
      row(n, std::string(variant == 0 ? "loop" : variant == 1 ? "grouped" : "decode") + (variant == pick ? "*" : ""),
          *r, t);
    }
  }
  fmt::print("\n== perf: moe_experts decode kernels by K split x L2 prefetch distance, time_us (%4540); "
             "default: split auto, prefetch 2 ==\n");
  fmt::print("{:>5} {:>6} {:>17} {:>17} {:>17} {:>17}\n", "n", "split", "prefetch 0", "prefetch 1", "prefetch 2",
             "prefetch 4");
  for (int n : {1, 8}) {
    const auto r = route(n);
    for (size_t si = 0; si < sweep_split.size(); ++si) {
      std::string line = fmt::format("{:>5} {:>6}", n, sweep_split[si]);
      for (size_t pi = 0; pi < sweep_pf.size(); ++pi) {
        Backend& b = *sweep[si * sweep_pf.size() + pi];
        const double t = time_it(b, [&](int) { b.moe_experts(r->p); });
        line += fmt::format(" {:>17}", fmt::format("{:.1f} ({:.1f}%)", t * 1e6, 100 * r->bytes / t / kHbmRead));
      }
      fmt::print("{}\n", line);
    }
  }
}

// router: the fused noaux_tc kernel at DeepSeek-V3 dims; the floor is the gate read (3.7 MB, from L2 after the first
// token) and E·d MACs per token on CUDA cores (sequential fp32 sums, bitwise the reference's).
void perf_router(Env& env) {
  const int d = 7168, E = 256;
  fmt::print("\n== perf: router (noaux_tc, sigmoid, d={}, E={}, top-8 of 4/8 groups) ==\n", d, E);
  fmt::print("{:>6} {:>10} {:>12} {:>18}\n", "n", "time_us", "us/token", "unfused_time_us");
  std::unique_ptr<Backend> unfused;  // DSV3_ROUTER_FUSED=0: the selection as a second kernel
  if (!env.gpu->host_visible()) {
    CudaBackendOptions o;
    o.router_fused = false;
    unfused = make_cuda_backend(o);
  }
  Rng rng(45);
  Tensor gate = rand_bf16(rng, {E, d}, 0.03f), bias = rand_f32(rng, {E}, -0.05f, 0.05f);
  for (int n : {1, 8, 128, 1024, 8192}) {
    Tensor x = tiled_bf16(rng, {n, d}, 1.f);
    Dev dv(*env.gpu);
    TensorView ids = dv.out(DType::kI32, {n, 8}, "ids"), w = dv.out(DType::kF32, {n, 8}, "w");
    RouterParams p{.x = dv.up(x, "x"), .gate = dv.up(gate, "gate"), .bias = dv.up(bias, "bias"), .topk_ids = ids,
                   .topk_weights = w, .scoring = RouterScoring::kSigmoid, .method = RouterTopk::kNoauxTc, .n_group = 8,
                   .topk_group = 4, .top_k = 8, .norm_topk_prob = true, .routed_scaling_factor = 2.5f};
    const double t = time_it(*env.gpu, [&](int) { env.gpu->router(p); });
    const double tu = unfused ? time_it(*unfused, [&](int) { unfused->router(p); }) : 0.0;
    fmt::print("{:>6} {:>10.1f} {:>12.3f} {:>18.1f}\n", n, t * 1e6, t * 1e6 / n, tu * 1e6);
  }
}

}  // namespace dsv3::ops_test
