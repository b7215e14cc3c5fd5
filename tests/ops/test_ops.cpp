// test_ops.cpp: every op of backend.h run on the CPU reference and on CUDA, compared element by element
// (tests/ops, CTest label gpu). Modes: test (default) and --perf (TFLOPS / GB/s against performance.md's ceilings).
// Filters: -o OP (exact op name), -p REGEX (on "op(vars)"), --quick (the small cases, for compute-sanitizer).
// Each case states its tolerance and why; outputs are poisoned (NaN) and guarded (sentinels) on the device.
// Without a GPU the binary prints SKIP and exits 77 (CTest's skip code).
// The case builders are in cases_*.cpp by op family (ops_cases.h), the perf tables in perf_*.cpp (ops_perf.h), the
// shared harness in ops_env.h and ops_harness.h; this file holds the case order and main.
#include <cstdio>
#include <functional>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dsv3/backend/backend.h"
#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/cuda/cuda_backend.h"
#include "dsv3/base/timer.h"
#include "ops_cases.h"
#include "ops_env.h"
#include "ops_perf.h"

namespace dsv3::ops_test {
namespace {

// The case list, family by family, in the order it has always printed (people compare it between runs).
void register_cases() {
  register_refnum_cases();
  register_sample_cases();
  register_load_cases();         // graph_scratch_growth, synthesize, dummy_load, staged_upload, checkpoint_load,
                                 // device_oom
  register_elementwise_cases();  // rms_norm, embedding, rope, silu_mul + add, kv_cache_store / gather, fill_token_ids
  register_linear_cases();       // linear, linear_stacked, linear_gemv2
  register_attention_cases();    // mla_absorb_q / mla_absorb_v, mla_prefill, mla_decode
  register_moe_cases();          // router, moe_experts
}

}  // namespace
}  // namespace dsv3::ops_test

int main(int argc, char** argv) {
  using namespace dsv3;
  using namespace dsv3::ops_test;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a run cut short by a timeout still leaves its lines
  bool perf = false, quick = false, self_check = false;
  std::string op_filter, pattern;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--perf") perf = true;
    else if (a == "--quick") quick = true;
    else if (a == "--self-check") self_check = true;  // CPU vs CPU: checks the harness itself, needs no GPU
    else if (a == "-o" && i + 1 < argc) op_filter = argv[++i];
    else if (a == "-p" && i + 1 < argc) pattern = argv[++i];
    else {
      fmt::print(stderr, "usage: {} [--perf] [--quick] [-o op] [-p regex]\n", argv[0]);
      return 2;
    }
  }
  if (cuda_device_count() == 0 && !self_check) {
    fmt::print("SKIP: no CUDA device visible; the CPU-vs-CUDA op tests need a GPU\n");
    return 77;
  }
  CpuBackend cpu, cpu2;
  CudaBackendOptions o;
  o.sync_each_op = !perf;  // in tests: name the op that faults
  // The backends below run the v1 decode GEMV (quantize + gemv_fp8.cu; DSV3_GEMV=v1); gpu_gemv2 runs the default v2.
  o.gemv_v2 = false;
  // DSV3_MLA_P_BF16=1: every backend's tensor-core MLA kernels round P to bf16 (perf comparisons; the split cases fail)
  if (!self_check) o.mla_p_bf16 = CudaBackendOptions::from_env().mla_p_bf16;
  // DSV3_SAMPLE=v1: the sample cases and perf_sample run the former kernel (scripts/device/sample_v2.sh runs both)
  if (!self_check) o.sample_version = CudaBackendOptions::from_env().sample_version;
  std::unique_ptr<Backend> gpu, gpu_fb, gpu_simple, gpu_nogemv, gpu_wmma, gpu_moe_loop, gpu_moe_grouped, gpu_prefill64;
  std::unique_ptr<Backend> gpu_p_bf16, gpu_wmma_p_bf16, gpu_gemv2, gpu_moe_decode, gpu_ref;
  std::unique_ptr<Backend> gpu_mma16, gpu_mma64, gpu_mma16_split64, gpu_mma16_split192, gpu_mma16_p_bf16;
  std::unique_ptr<Backend> gpu_absorb_slice, gpu_absorb_tile;
  if (!self_check) {
    CudaBackendOptions r;
    r.sync_each_op = !perf;
    r.reference_numerics = true;
    gpu_ref = make_cuda_backend(r);
    // Each variant is `o` with the listed options changed (o itself stays the base for Env's mla_p_bf16).
    auto variant = [&](const std::function<void(CudaBackendOptions&)>& set) {
      CudaBackendOptions v = o;
      set(v);
      return make_cuda_backend(v);
    };
    gpu = make_cuda_backend(o);
    gpu_fb = variant([](auto& v) { v.force_gemm_fallback = true; });
    gpu_simple = variant([](auto& v) { v.mla_decode = MlaDecodeImpl::kSimple, v.simple_mla_prefill = true; });
    gpu_wmma = variant([](auto& v) { v.mla_decode = MlaDecodeImpl::kWmma; });
    gpu_wmma_p_bf16 = variant([](auto& v) { v.mla_decode = MlaDecodeImpl::kWmma, v.mla_p_bf16 = true; });
    gpu_p_bf16 = variant([](auto& v) { v.mla_decode = MlaDecodeImpl::kMma, v.mla_p_bf16 = true; });
    gpu_prefill64 = variant([](auto& v) { v.mla_prefill_q_rows = 64; });
    if (perf) gpu_nogemv = variant([](auto& v) { v.no_fp8_gemv = true; });
    gpu_moe_loop = variant([](auto& v) { v.moe_path = CudaMoePath::kLoop; });
    gpu_moe_grouped = variant([](auto& v) { v.moe_path = CudaMoePath::kGrouped; });
    gpu_moe_decode = variant([](auto& v) { v.moe_path = CudaMoePath::kDecode; });
    gpu_gemv2 = variant([](auto& v) { v.gemv_v2 = true; });
    gpu_mma64 = variant([](auto& v) { v.mla_decode = MlaDecodeImpl::kMma; });
    gpu_mma16 = variant([](auto& v) { v.mla_decode = MlaDecodeImpl::kMma16; });
    gpu_mma16_split64 = variant([](auto& v) { v.mla_decode = MlaDecodeImpl::kMma16, v.mla_decode_split_keys = 64; });
    gpu_mma16_split192 = variant([](auto& v) { v.mla_decode = MlaDecodeImpl::kMma16, v.mla_decode_split_keys = 192; });
    gpu_mma16_p_bf16 = variant([](auto& v) { v.mla_decode = MlaDecodeImpl::kMma16, v.mla_p_bf16 = true; });
    gpu_absorb_slice = variant([](auto& v) { v.mla_absorb = MlaAbsorbImpl::kSlice; });
    gpu_absorb_tile = variant([](auto& v) { v.mla_absorb = MlaAbsorbImpl::kTile; });
  }
  Env env = self_check ? Env{&cpu, &cpu2, &cpu2, &cpu2, nullptr, &cpu2, &cpu2, &cpu2, &cpu2, &cpu2, &cpu2, false, &cpu2,
                             &cpu2}
                       : Env{&cpu,           gpu.get(),          gpu_fb.get(),           gpu_simple.get(),
                             gpu_nogemv.get(), gpu_wmma.get(), gpu_moe_loop.get(), gpu_moe_grouped.get(),
                             gpu_prefill64.get(), gpu_p_bf16.get(), gpu_wmma_p_bf16.get(), o.mla_p_bf16,
                             gpu_gemv2.get(), gpu_moe_decode.get()};
  env.gpu_ref = self_check ? &cpu2 : gpu_ref.get();
  {
    auto pick = [&](const std::unique_ptr<Backend>& b) { return self_check ? static_cast<Backend*>(&cpu2) : b.get(); };
    env.gpu_mma16 = pick(gpu_mma16);
    env.gpu_mma64 = pick(gpu_mma64);
    env.gpu_mma16_split64 = pick(gpu_mma16_split64);
    env.gpu_mma16_split192 = pick(gpu_mma16_split192);
    env.gpu_mma16_p_bf16 = pick(gpu_mma16_p_bf16);
    env.gpu_absorb_slice = pick(gpu_absorb_slice);
    env.gpu_absorb_tile = pick(gpu_absorb_tile);
  }
  try {
    if (perf) {
      if (op_filter.empty() || op_filter == "linear") perf_linear(env);
      if (op_filter.empty() || op_filter == "linear" || op_filter == "linear_stacked") perf_linear_stacked(env);
      if (op_filter.empty() || op_filter == "gemv2_sweep") perf_gemv2_sweep(env, pattern);
      if (op_filter.empty() || op_filter == "mla_decode") {
        perf_decode(env, *env.gpu, "auto: mma16 up to 2 rows of 128 heads, mma beyond (default)",
                    {1024, 4096, 16384, 32768}, {1, 8, 32, 64, 128});
      }
      // Small batches: each kernel forced, the split size forced, and graph-wide block tables (the engine's).
      if (op_filter.empty() || op_filter == "mla_decode" || op_filter == "mla_decode_small") {
        if (op_filter == "mla_decode_small") perf_decode(env, *env.gpu, "auto (default)", {1024, 4096}, {1, 8, 32, 128});
        for (int ctx : {1024, 4096}) {
          perf_decode(env, *env.gpu_mma16, "mma16, DSV3_MLA_DECODE=mma16", {ctx}, {1, 2, 4, 8, 16});
          perf_decode(env, *env.gpu_mma64, "mma, 64 heads per block, DSV3_MLA_DECODE=mma", {ctx}, {1, 2, 4, 8, 16});
          perf_decode(env, *env.gpu_mma16_split64, "mma16, 64-key pieces (DSV3_MLA_DECODE_SPLIT=64)", {ctx}, {1, 8});
          perf_decode(env, *env.gpu_mma16_split192, "mma16, 192-key pieces (DSV3_MLA_DECODE_SPLIT=192)", {ctx}, {1, 8});
        }
        perf_decode(env, *env.gpu, "auto", {1024}, {1, 8}, 2560);
        perf_decode(env, *env.gpu_mma64, "mma, 64 heads per block", {1024}, {1, 8}, 2560);
      }
      if (op_filter.empty() || op_filter == "mla_decode") {
        perf_decode(env, *env.gpu_wmma, "WMMA (DSV3_MLA_DECODE=wmma)", {1024, 4096, 32768}, {1, 32, 128});
        perf_decode(env, *env.gpu_simple, "CUDA cores (DSV3_MLA_DECODE=simple)", {4096, 32768}, {1, 32});
      }
      if (op_filter.empty() || op_filter == "mla_prefill") perf_prefill(env);
      if (op_filter.empty() || op_filter == "router") perf_router(env);
      if (op_filter.empty() || op_filter.starts_with("mla_absorb")) perf_absorb(env);  // _q, _v: the same table
      if (op_filter.empty() || op_filter == "staged_upload") perf_staged_upload(env);
      if (op_filter.empty() || op_filter == "sample") perf_sample(env);
      if (op_filter.empty() || op_filter == "moe_experts") perf_moe(env);
      return 0;
    }
    register_cases();
    const std::regex re(pattern.empty() ? ".*" : pattern);
    int passed = 0, failed = 0;
    std::vector<std::string> failures;
    for (const Case& c : registry()) {
      const std::string name = fmt::format("{}({})", c.op, c.vars);
      if (!op_filter.empty() && c.op != op_filter) continue;
      if (!std::regex_search(name, re)) continue;
      if (quick && !c.quick) continue;
      const double t0 = now_seconds();
      bool ok = false;
      try {
        ok = c.run(env);
      } catch (const Error& e) {
        fmt::print("    exception: {}\n", e.what());
      }
      fmt::print("  {} {} ({:.2f} s)\n", ok ? "OK  " : "FAIL", name, now_seconds() - t0);
      std::fflush(stdout);
      (ok ? passed : failed) += 1;
      if (!ok) failures.push_back(name);
    }
    fmt::print("\n{}/{} cases passed\n", passed, passed + failed);
    for (const auto& f : failures) fmt::print("  FAILED: {}\n", f);
    return failed ? 1 : 0;
  } catch (const Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
