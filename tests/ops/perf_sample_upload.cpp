// perf_sample_upload.cpp: test_ops --perf tables of sample (time per call at the V3 vocabulary against one read
// of the logits) and of weight upload from pageable host memory (Backend::copy per tensor vs StagedUploader at
// several chunk / thread settings).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dsv3/backend/staged_upload.h"
#include "dsv3/base/sampling_rules.h"
#include "ops_env.h"
#include "ops_perf.h"

namespace dsv3::ops_test {

// Next-token sampling at the V3 vocabulary: time per call against reading the logits once (the floor of any
// sampler; the host path copies them over PCIe instead).
void perf_sample(Env& env) {
  Backend& gpu = *env.gpu;
  const int V = 129280;
  const char* impl = std::getenv("DSV3_SAMPLE");
  fmt::print("\n== perf: sample, vocab {} (f32 logits), kernel {} ==\n", V,
             impl && *impl ? impl : "v2 (default; DSV3_SAMPLE=v1 for the former)");
  fmt::print("{:<28} {:>5} {:>10} {:>12} {:>10}\n", "params", "rows", "time_us", "logits_GB/s", "x_one_read");
  struct Kind {
    const char* name;
    SampleRowParams p;
  };
  const Kind kinds[] = {{"greedy", {.temperature = 0.f}},
                        {"temperature=0.8", {.temperature = 0.8f}},
                        {"top_k=50", {.temperature = 0.8f, .top_k = 50}},
                        {"top_p=0.9", {.temperature = 0.8f, .top_p = 0.9f}},
                        {"top_p=0.95,T=0.6 (R1)", {.temperature = 0.6f, .top_p = 0.95f}},
                        {"top_p=0.999,T=1.7", {.temperature = 1.7f, .top_p = 0.999f}},
                        {"top_k=50,top_p=0.9,min_p", {.temperature = 0.8f, .top_k = 50, .top_p = 0.9f, .min_p = 0.01f}}};
  Rng rng(45);
  for (int rows : {1, 32, 128}) {
    Tensor l32(DType::kF32, {rows, V});  // N(0, 3²): a top-p nucleus of a few hundred tokens
    for (int64_t i = 0; i < l32.numel(); ++i) l32.as<float>()[i] = rng.normal(3.f);
    Dev d(gpu);
    TensorView dlog = d.up(l32, "logits"), dtok = d.out(DType::kI32, {rows}, "tokens");
    for (const Kind& k : kinds) {
      std::vector<SampleRowParams> params(static_cast<size_t>(rows), k.p);
      const double t = time_it(gpu, [&](int i) {
        for (auto& p : params) p.step = static_cast<uint32_t>(i);
        gpu.sample({.logits = dlog, .rows = params.data(), .tokens = dtok});
      });
      const double bytes = 4.0 * rows * V;
      fmt::print("{:<28} {:>5} {:>10.1f} {:>12.0f} {:>10.1f}\n", k.name, rows, t * 1e6, bytes / t / 1e9,
                 t / (bytes / kHbmRead));
    }
  }
}

// Weight-load rate without the disk: 4 GiB of pageable host memory laid out as DeepSeek-V3 expert weights (FP8
// [2048, 7168] = 14.7 MB, each followed by its 3.5 KB scale grid) uploaded into device memory, (a) through
// Backend::copy per tensor (two 16 MB pinned chunks, one host thread), (b) through StagedUploader with several
// chunk/thread settings. The loader's default is 4 x 64 MB, 8 threads (model/weights.cpp).
void perf_staged_upload(Env& env) {
  Backend& gpu = *env.gpu;
  constexpr size_t kWeight = 2048 * 7168, kScale = 16 * 56 * 4, kPair = kWeight + kScale;
  const size_t pairs = (size_t{4} << 30) / kPair, total = pairs * kPair;
  std::vector<char> host(total);
  for (size_t i = 0; i < total; i += 4096) host[i] = static_cast<char>(i >> 12);  // touch every page
  Tensor dev(DType::kU8, {static_cast<int64_t>(total)}, gpu.allocator());
  char* d = static_cast<char*>(dev.view().data);
  fmt::print("\n== perf: weight upload, {:.2f} GB pageable host -> device, {} tensors (expert weight + scale pairs) ==\n",
             total / 1e9, 2 * pairs);
  fmt::print("{:<36} {:>8} {:>8}\n", "path", "time_s", "GB/s");
  {
    const double t0 = now_seconds();
    for (size_t p = 0; p < pairs; ++p)
      for (auto [off, n] : {std::pair{p * kPair, kWeight}, std::pair{p * kPair + kWeight, kScale}})
        gpu.copy(TensorView{d + off, DType::kU8, {static_cast<int64_t>(n)}, Device::kCuda},
                 TensorView{host.data() + off, DType::kU8, {static_cast<int64_t>(n)}, Device::kCpu});
    gpu.synchronize();
    const double dt = now_seconds() - t0;
    fmt::print("{:<36} {:>8.3f} {:>8.2f}\n", "Backend::copy per tensor", dt, total / 1e9 / dt);
  }
  for (auto [slots, mb, threads] : {std::tuple{2, 16, 1}, {4, 64, 1}, {4, 64, 4}, {4, 64, 8}, {8, 64, 8}, {4, 128, 8},
                                    {8, 32, 16}}) {
    auto sink = gpu.make_staging_sink(slots, static_cast<size_t>(mb) << 20);
    if (!sink) return;
    StagedUploader up(std::move(sink), threads);
    const double t0 = now_seconds();
    for (size_t p = 0; p < pairs; ++p) {
      up.add(d + p * kPair, host.data() + p * kPair, kWeight);
      up.add(d + p * kPair + kWeight, host.data() + p * kPair + kWeight, kScale);
    }
    up.flush();
    const double dt = now_seconds() - t0;
    fmt::print("{:<36} {:>8.3f} {:>8.2f}\n", fmt::format("staged {} x {} MB, {} threads", slots, mb, threads), dt,
               total / 1e9 / dt);
  }
}

}  // namespace dsv3::ops_test
