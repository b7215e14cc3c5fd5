// perf_linear.cpp: test_ops --perf tables of linear: FP8 block-scaled at DeepSeek-V3 shapes (v1 GEMV, cuBLASLt,
// no-GEMV, v2 GEMV), the v2 GEMV by K split, the bf16 lm_head, stacked pairs with out2 against their halves, and
// the v2 GEMV configuration sweep (-o gemv2_sweep, read by scripts/device/gemv3.sh).
#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dsv3/backend/cuda/kernels.h"
#include "ops_cases.h"
#include "ops_env.h"
#include "ops_perf.h"

namespace dsv3::ops_test {

namespace {

// The FP8 projections of a DeepSeek-V3 layer, [n, k] (perf_linear, perf_gemv2_splits).
struct V3LinearShape {
  const char* name;
  int n, k;
};
constexpr V3LinearShape kV3LinearShapes[] = {
    {"q_a_proj", 1536, 7168},     {"kv_a_proj", 576, 7168},     {"q_b_proj", 24576, 1536},
    {"kv_b_proj", 32768, 512},    {"o_proj", 7168, 16384},      {"dense_gate_up", 18432, 7168},
    {"dense_down", 7168, 18432},  {"expert_gate_up", 2048, 7168}, {"expert_down", 7168, 2048}};

// gemv_fp8_v2.cu at every K split (the cluster size) for the DeepSeek-V3 shapes at 1 and 8 tokens, launched directly
// (kernels.h) on the default stream, so that its cost model (plan_cost in gemv_fp8_v2.cu) can be checked against the
// measured best; "auto" marks the launcher's choice. Weights rotate past L2 as in perf_linear.
void perf_gemv2_splits(Env& env) {
  if (!env.gpu_gemv2 || env.gpu_gemv2->host_visible()) return;
  Backend& gpu = *env.gpu_gemv2;
  fmt::print("\n== perf: gemv_fp8_v2 by K split (cluster size), time_us (weight %4540); * = the launcher's choice ==\n");
  fmt::print("{:<16} {:>2} {:>6} {:>6} {:>17} {:>17} {:>17} {:>17}\n", "weight", "M", "N", "K", "split 1", "split 2",
             "split 4", "split 8");
  const auto& shapes = kV3LinearShapes;
  Rng rng(44);
  for (const auto& s : shapes) {
    HostLinear hw = rand_fp8_weight(rng, s.n, s.k, /*tiled=*/true);
    const size_t wbytes = static_cast<size_t>(s.n) * s.k;
    const int copies = static_cast<int>(std::clamp<size_t>((256u << 20) / wbytes + 1, 1, 16));
    Dev d(gpu);
    std::vector<LinearWeight> w;
    for (int c = 0; c < copies; ++c) w.push_back(d.weight(hw));
    for (int M : {1, 8}) {
      Tensor x = tiled_bf16(rng, {M, s.k}, 1.f);
      Dev io(gpu);
      TensorView dx = io.up(x, "x"), dout = io.out(DType::kBF16, {M, s.n}, "out");
      gpu.synchronize();
      const int chosen = cuda::linear_fp8_gemv_v2_split(M, s.n, s.k);
      std::string cells;
      for (int split : {1, 2, 4, 8}) {
        auto launch = [&](int i) {
          const LinearWeight& lw = w[static_cast<size_t>(i % copies)];
          return cuda::launch_linear_fp8_gemv_v2({.x = static_cast<const cuda::bf16_t*>(dx.data),
                                                  .w = lw.weight.as<const uint8_t>(), .sw = lw.scale_inv.as<const float>(),
                                                  .out = dout.data, .x_stride = s.k, .n = M, .m = s.n, .k = s.k,
                                                  .ue8m0 = false, .out_f32 = false, .split = split},
                                                 nullptr);
        };
        if (!launch(0)) {
          cells += fmt::format(" {:>17}", "-");
          continue;
        }
        cudaDeviceSynchronize();
        const int iters = 100;
        std::vector<double> samples;
        for (int rep = 0; rep < 5; ++rep) {
          const double t0 = now_seconds();
          for (int i = 0; i < iters; ++i) launch(i);
          cudaDeviceSynchronize();
          samples.push_back((now_seconds() - t0) / iters);
        }
        std::sort(samples.begin(), samples.end());
        const double t = samples[2];
        cells += fmt::format(" {:>8.1f} ({:>3.0f}%){}", t * 1e6, 100.0 * static_cast<double>(wbytes) / t / kHbmRead,
                             split == chosen ? "*" : " ");
      }
      fmt::print("{:<16} {:>2} {:>6} {:>6}{}\n", s.name, M, s.n, s.k, cells);
      if (cudaGetLastError() != cudaSuccess) fmt::print("    CUDA error in the split sweep\n");
    }
  }
}

}  // namespace

// The v2 GEMV configuration sweep: every candidate of gemv2_sweep_configs (split by the cost model) on the decode
// shapes of the ncu run of 2026-11-30 (M = 1; o_proj also at M = 8), launched directly (kernels.h) on the default
// stream with weights rotating past L2 as in perf_linear; then per shape the best configuration and its time at each
// forced split, and the configurations ranked by the GEMV time of one DeepSeek-V3 decode step (61 layers: o_proj,
// q_a, q_b, kv_a 61 times; the dense MLP 3; the shared expert 58). A '~' marks a cell where the configuration did
// not fit the shape and the launcher's fallback ran (linear_fp8_gemv_v2_plan). The lines "best single config:" and
// "best <shape>:" are read by scripts/device/gemv3.sh. `pattern` (-p) keeps the configurations whose string matches
// (the default, c0, always runs), e.g. -p 'copy=cp' should a bulk configuration fail its cases.
void perf_gemv2_sweep(Env& env, const std::string& pattern) {
  if (!env.gpu_gemv2 || env.gpu_gemv2->host_visible()) return;
  Backend& gpu = *env.gpu_gemv2;
  struct SweepShape {
    const char* name;
    int M, m, k;
    double calls;  // per DeepSeek-V3 decode step
  };
  const SweepShape shapes[] = {{"o_proj", 1, 7168, 16384, 61},     {"dense_gate_up", 1, 18432, 7168, 3},
                               {"dense_down", 1, 7168, 18432, 3},  {"q_b", 1, 24576, 1536, 61},
                               {"q_a", 1, 1536, 7168, 61},         {"kv_a", 1, 576, 7168, 61},
                               {"shexp_gate_up", 1, 2048, 7168, 58}, {"shexp_down", 1, 7168, 2048, 58},
                               {"o_proj_M8", 8, 7168, 16384, 0}};
  constexpr size_t N = std::size(shapes);
  std::vector<cuda::GemvV2Config> cfgs;
  {
    const std::regex re(pattern.empty() ? ".*" : pattern);
    for (const cuda::GemvV2Config& c : gemv2_sweep_configs())
      if (cfgs.empty() || std::regex_search(cuda::format_gemv_v2_config(c), re)) cfgs.push_back(c);
  }
  const size_t C = cfgs.size();
  auto same_variant = [](const cuda::GemvV2Config& a, const cuda::GemvV2Config& b) {
    return a.tile_rows == b.tile_rows && a.stage_kb == b.stage_kb && a.stages == b.stages &&
           a.ctas_per_sm == b.ctas_per_sm && a.bulk == b.bulk;
  };
  std::vector<std::array<double, N>> t(C);        // seconds; 0: refused
  std::vector<std::array<char, N>> mark(C);       // ' ' as requested, '~' the launcher's fallback ran
  std::array<size_t, N> best{};
  std::array<std::array<double, 4>, N> split_t{};  // the shape's best configuration at split 1, 2, 4, 8
  std::array<int, N> auto_split{};
  bool cuda_error = false;
  Rng rng(46);
  for (size_t si = 0; si < N; ++si) {
    const SweepShape& s = shapes[si];
    HostLinear hw = rand_fp8_weight(rng, s.m, s.k, /*tiled=*/true);
    const size_t wbytes = static_cast<size_t>(s.m) * s.k;
    const int copies = static_cast<int>(std::clamp<size_t>((256u << 20) / wbytes + 1, 1, 16));  // rotate past L2
    Dev d(gpu);
    std::vector<LinearWeight> w;
    for (int c = 0; c < copies; ++c) w.push_back(d.weight(hw));
    Tensor x = tiled_bf16(rng, {s.M, s.k}, 1.f);
    Dev io(gpu);
    TensorView dx = io.up(x, "x"), dout = io.out(DType::kBF16, {s.M, s.m}, "out");
    gpu.synchronize();
    // Median of 5 repetitions of ~2 ms of back-to-back launches; 0 when the launcher refuses.
    auto time_cfg = [&](const cuda::GemvV2Config& c, int split) {
      auto launch = [&](int i) {
        const LinearWeight& lw = w[static_cast<size_t>(i % copies)];
        return cuda::launch_linear_fp8_gemv_v2({.x = static_cast<const cuda::bf16_t*>(dx.data),
                                                .w = lw.weight.as<const uint8_t>(), .sw = lw.scale_inv.as<const float>(),
                                                .out = dout.data, .x_stride = s.k, .n = s.M, .m = s.m, .k = s.k,
                                                .ue8m0 = false, .out_f32 = false, .split = split, .cfg = c},
                                               nullptr);
      };
      if (!launch(0)) return 0.0;
      cudaDeviceSynchronize();
      double t0 = now_seconds();
      for (int i = 0; i < 10; ++i) launch(i);
      cudaDeviceSynchronize();
      const int iters = std::clamp(static_cast<int>(2e-3 / std::max((now_seconds() - t0) / 10, 1e-7)), 10, 400);
      std::vector<double> samples;
      for (int rep = 0; rep < 5; ++rep) {
        t0 = now_seconds();
        for (int i = 0; i < iters; ++i) launch(i);
        cudaDeviceSynchronize();
        samples.push_back((now_seconds() - t0) / iters);
      }
      if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) {
        fmt::print("    CUDA error in the sweep ({}, {}): {}\n", s.name, cuda::format_gemv_v2_config(c), cudaGetErrorString(e));
        cuda_error = true;
      }
      std::sort(samples.begin(), samples.end());
      return samples[2];
    };
    for (size_t ci = 0; ci < C && !cuda_error; ++ci) {
      const cuda::GemvV2Config used = cuda::linear_fp8_gemv_v2_plan(s.M, s.m, s.k, cfgs[ci]);
      cuda::GemvV2Config want = cfgs[ci];
      want.bulk = want.bulk && s.k % 128 == 0;
      mark[ci][si] = same_variant(used, want) ? ' ' : '~';
      t[ci][si] = time_cfg(cfgs[ci], 0);
      if (t[ci][si] > 0 && (t[best[si]][si] <= 0 || t[ci][si] < t[best[si]][si])) best[si] = ci;
    }
    auto_split[si] = cuda::linear_fp8_gemv_v2_split(s.M, s.m, s.k, cfgs[best[si]]);
    for (int j = 0; j < 4 && !cuda_error; ++j) split_t[si][static_cast<size_t>(j)] = time_cfg(cfgs[best[si]], 1 << j);
    fmt::print("  measured {} ({} configurations)\n", s.name, C);
    if (cuda_error) break;
  }
  auto pct = [&](size_t si, double sec) {
    return 100.0 * static_cast<double>(shapes[si].m) * shapes[si].k / sec / kHbmRead;
  };
  fmt::print("\n== perf: gemv_fp8_v2 configuration sweep, time_us (weight %4540); ~ = did not fit, the fallback ran ==\n");
  for (size_t ci = 0; ci < C; ++ci) fmt::print("  c{:<2} {}{}\n", ci, cuda::format_gemv_v2_config(cfgs[ci]), ci ? "" : "  (the original design)");
  std::string head = fmt::format("{:<4}", "cfg");
  for (const auto& s : shapes) head += fmt::format(" {:>13}", std::string(s.name).substr(0, 13));
  fmt::print("{}\n", head);
  for (size_t ci = 0; ci < C; ++ci) {
    std::string row = fmt::format("c{:<3}", ci);
    for (size_t si = 0; si < N; ++si)
      row += t[ci][si] > 0 ? fmt::format(" {:>6.1f} ({:>3.0f}%){}", t[ci][si] * 1e6, pct(si, t[ci][si]), mark[ci][si])
                           : fmt::format(" {:>13}", "-");
    fmt::print("{}\n", row);
  }
  fmt::print("\n-- best per shape (and its time at each forced split; * = the cost model's split)\n");
  for (size_t si = 0; si < N; ++si) {
    const size_t b = best[si];
    if (t[b][si] <= 0) continue;
    std::string splits;
    for (int j = 0; j < 4; ++j)
      splits += split_t[si][static_cast<size_t>(j)] > 0
                    ? fmt::format(" s{} {:.1f}{}", 1 << j, split_t[si][static_cast<size_t>(j)] * 1e6, (1 << j) == auto_split[si] ? "*" : "")
                    : fmt::format(" s{} -", 1 << j);
    fmt::print("best {}: {} {:.1f} us ({:.0f}%), c0 {:.1f} us ({:.0f}%); splits:{}\n", shapes[si].name,
               cuda::format_gemv_v2_config(cfgs[b]), t[b][si] * 1e6, pct(si, t[b][si]), t[0][si] * 1e6,
               t[0][si] > 0 ? pct(si, t[0][si]) : 0.0, splits);
  }
  // One decode step of DeepSeek-V3 (M = 1 shapes, weighted by their calls), per configuration that ran every shape.
  std::vector<std::pair<double, size_t>> totals;
  for (size_t ci = 0; ci < C; ++ci) {
    double sum = 0;
    bool all = true;
    for (size_t si = 0; si < N; ++si) {
      if (shapes[si].calls == 0) continue;
      all &= t[ci][si] > 0;
      sum += shapes[si].calls * t[ci][si];
    }
    if (all) totals.push_back({sum, ci});
  }
  std::sort(totals.begin(), totals.end());
  double best_each = 0;
  for (size_t si = 0; si < N; ++si) best_each += shapes[si].calls * t[best[si]][si];
  fmt::print("\n-- GEMV time of one DeepSeek-V3 decode step at batch 1 (61 layers), per configuration\n");
  for (const auto& [sum, ci] : totals) fmt::print("  c{:<2} {:>8.1f} us  {}\n", ci, sum * 1e6, cuda::format_gemv_v2_config(cfgs[ci]));
  fmt::print("  the best configuration of each shape together: {:.1f} us\n", best_each * 1e6);
  if (!totals.empty()) fmt::print("best single config: {}\n", cuda::format_gemv_v2_config(cfgs[totals.front().second]));
  // The best per weight class (m·k below kGemvV2SmallWeightBytes or not; DSV3_GEMV_V2_CFG_SMALL / DSV3_GEMV_V2_CFG),
  // each over its class's shapes weighted as above, and the gemv_v2_default_config body that would pick them.
  size_t best_class[2] = {0, 0};
  double best_class_t[2] = {0, 0};
  for (int small = 0; small < 2; ++small) {
    bool found = false;
    for (size_t ci = 0; ci < C; ++ci) {
      double sum = 0;
      bool all = true;
      for (size_t si = 0; si < N; ++si) {
        const bool is_small = static_cast<long long>(shapes[si].m) * shapes[si].k < cuda::kGemvV2SmallWeightBytes;
        if (shapes[si].calls == 0 || is_small != (small == 1)) continue;
        all &= t[ci][si] > 0;
        sum += shapes[si].calls * t[ci][si];
      }
      if (all && (!found || sum < best_class_t[small])) found = true, best_class[small] = ci, best_class_t[small] = sum;
    }
    if (found)
      fmt::print("best {} config: {}  ({:.1f} us per V3 decode step)\n", small ? "small" : "big",
                 cuda::format_gemv_v2_config(cfgs[best_class[small]]), best_class_t[small] * 1e6);
  }
  auto cxx = [](const cuda::GemvV2Config& c) {
    return fmt::format("GemvV2Config{{{}, {}, {}, {}, {}, {}}}", c.tile_rows, c.stage_kb, c.stages, c.ctas_per_sm,
                       c.bulk ? "true" : "false", c.split);
  };
  fmt::print("suggested gemv_v2_default_config body: return static_cast<long long>(m) * k < kGemvV2SmallWeightBytes ? {} : {};\n",
             cxx(cfgs[best_class[1]]), cxx(cfgs[best_class[0]]));
}

void perf_linear(Env& env) {
  Backend& gpu = *env.gpu;
  // M <= 16 runs the decode GEMV; "no-gemv" is the same call with it switched off (cuBLASLt, or the fallback kernel
  // where cuBLASLt refuses the shape, e.g. M = 1); "gemv2 sS" (M <= 8) the same call with DSV3_GEMV=v2
  // (gemv_fp8_v2.cu, quantization fused, the launcher's K split S). Every time includes the activation quantization.
  fmt::print("\n== perf: linear, FP8 block-scaled (GEMV for M <= 16, cuBLASLt above), DeepSeek-V3 shapes ==\n");
  fmt::print("{:<22} {:>5} {:>6} {:>6} {:>9} {:>10} {:>9} {:>7} {:>10} {:>7}\n", "weight", "M", "N", "K", "path",
             "time_us", "TFLOPS", "%1320", "weight_GB/s", "%4540");
  const auto& shapes = kV3LinearShapes;
  Rng rng(42);
  for (const auto& s : shapes) {
    HostLinear hw = rand_fp8_weight(rng, s.n, s.k, /*tiled=*/true);
    const size_t wbytes = static_cast<size_t>(s.n) * s.k;
    const int copies = static_cast<int>(std::clamp<size_t>((256u << 20) / wbytes + 1, 1, 16));  // rotate past L2
    Dev d(gpu);
    std::vector<LinearWeight> w;
    for (int c = 0; c < copies; ++c) w.push_back(d.weight(hw));
    for (int M : {1, 8, 16, 64, 4096}) {
      Tensor x = tiled_bf16(rng, {M, s.k}, 1.f);
      Dev io(gpu);
      TensorView dx = io.up(x, "x"), dout = io.out(DType::kBF16, {M, s.n}, "out");
      for (int variant = 0; variant < 3; ++variant) {
        if (variant == 1 && !(M <= kGemvRows && env.gpu_nogemv)) continue;
        if (variant == 2 && !(M <= cuda::kGemvV2MaxTokens && env.gpu_gemv2)) continue;
        Backend& b = variant == 1 ? *env.gpu_nogemv : variant == 2 ? *env.gpu_gemv2 : gpu;  // one device: shared buffers
        const double t = time_it(b, [&](int i) { b.linear({.x = dx, .w = w[static_cast<size_t>(i % copies)], .out = dout}); });
        const double tflops = 2.0 * M * s.n * s.k / t, gbs = static_cast<double>(wbytes) / t;
        const std::string path = variant == 1 ? "no-gemv" : variant == 2
            ? fmt::format("gemv2 s{}", cuda::linear_fp8_gemv_v2_split(M, s.n, s.k)) : M <= kGemvRows ? "gemv" : "cublaslt";
        fmt::print("{:<22} {:>5} {:>6} {:>6} {:>9} {:>10.1f} {:>9.1f} {:>6.1f}% {:>10.0f} {:>6.1f}%\n", s.name, M, s.n,
                   s.k, path, t * 1e6, tflops / 1e12, 100 * tflops / kFp8BlockTflops, gbs / 1e9, 100 * gbs / kHbmRead);
      }
    }
  }
  perf_gemv2_splits(env);
  fmt::print("\n== perf: linear, BF16 (cuBLASLt), lm_head 129280 x 7168, f32 logits ==\n");
  {
    HostLinear hw;
    hw.weight = tiled_bf16(rng, {129280, 7168}, 0.01f);
    Dev d(gpu);
    LinearWeight w = d.weight(hw);
    for (int M : {1, 8, 64}) {
      Tensor x = rand_bf16(rng, {M, 7168});
      Dev io(gpu);
      TensorView dx = io.up(x, "x"), dout = io.out(DType::kF32, {M, 129280}, "out");
      const double t = time_it(gpu, [&](int) { gpu.linear({.x = dx, .w = w, .out = dout}); });
      const double gbs = 129280.0 * 7168 * 2 / t, tflops = 2.0 * M * 129280 * 7168 / t;
      fmt::print("lm_head M={:<4} {:>10.1f} us {:>8.1f} TFLOPS ({:.1f}% of {:.0f}) {:>8.0f} GB/s ({:.1f}% of 4540)\n", M,
                 t * 1e6, tflops / 1e12, 100 * tflops / kBf16Tflops, kBf16Tflops / 1e12, gbs / 1e9, 100 * gbs / kHbmRead);
    }
  }
}

// Stacked pairs at decode sizes (the default backend: the v2 GEMV): one linear with out2 against its two halves one
// after the other; time of the pair, and the pair's weight GB/s when stacked. Weights rotate past L2 as in perf_linear.
void perf_linear_stacked(Env& env) {
  if (!env.gpu_gemv2 || env.gpu_gemv2->host_visible()) return;
  Backend& gpu = *env.gpu_gemv2;
  struct Pair {
    const char* name;
    int m1, m2, k;
  };
  const Pair pairs[] = {{"q_a + kv_a", 1536, 576, 7168}, {"expert gate + up", 2048, 2048, 7168},
                        {"dense gate + up", 18432, 18432, 7168}};
  fmt::print("\n== perf: stacked linear (one launch, out2) vs its two halves, FP8, default backend ==\n");
  fmt::print("{:<18} {:>2} {:>6} {:>6} {:>9} {:>11} {:>6} {:>12} {:>7}\n", "pair", "M", "N", "K", "apart_us",
             "stacked_us", "gain", "weight_GB/s", "%4540");
  Rng rng(43);
  for (const Pair& p : pairs) {
    HostLinear hw = rand_fp8_weight(rng, p.m1 + p.m2, p.k, /*tiled=*/true);
    const size_t wbytes = static_cast<size_t>(p.m1 + p.m2) * p.k;
    const int copies = static_cast<int>(std::clamp<size_t>((256u << 20) / wbytes + 1, 1, 16));
    Dev d(gpu);
    std::vector<LinearWeight> w;
    for (int c = 0; c < copies; ++c) w.push_back(d.weight(hw));
    for (int M : {1, 8}) {
      Tensor x = tiled_bf16(rng, {M, p.k}, 1.f);
      Dev io(gpu);
      TensorView dx = io.up(x, "x"), o1 = io.out(DType::kBF16, {M, p.m1}, "out"), o2 = io.out(DType::kBF16, {M, p.m2}, "out2");
      auto params = [&](int i) {
        return LinearParams{.x = dx, .w = w[static_cast<size_t>(i % copies)], .out = o1, .out2 = o2};
      };
      const double ts = time_it(gpu, [&](int i) { gpu.linear(params(i)); });
      const double ta = time_it(gpu, [&](int i) {
        const auto [a, b] = split_stacked_linear(params(i));
        gpu.linear(a);
        gpu.linear(b);
      });
      const double gbs = static_cast<double>(wbytes) / ts;
      fmt::print("{:<18} {:>2} {:>6} {:>6} {:>9.1f} {:>11.1f} {:>5.2f}x {:>12.0f} {:>6.1f}%\n", p.name, M, p.m1 + p.m2,
                 p.k, ta * 1e6, ts * 1e6, ta / ts, gbs / 1e9, 100 * gbs / kHbmRead);
    }
  }
}

}  // namespace dsv3::ops_test
