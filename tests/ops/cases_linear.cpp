// cases_linear.cpp: test_ops cases of linear (FP8 block-scaled and bf16 weights) on every path: cuBLASLt, the
// fallback kernels, the v1 decode GEMV, the v2 GEMV (gemv_fp8_v2.cu) through the backend, stacked weights with out2
// (linear_stacked), the v2 GEMV called directly with forced K splits and its fused quantization checked bit for bit,
// inside a CUDA graph, and per sweep configuration.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/cuda/cuda_backend.h"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/base/numeric.h"
#include "ops_cases.h"
#include "ops_env.h"

namespace dsv3::ops_test {

void linear_case(int n, int m, int k, bool fp8, bool out_f32, int x_stride, bool ue8m0, int which, bool quick) {
  const bool gemv = (which == 0 || which == 3) && fp8 && n <= kGemvRows;
  const bool gemv2 = which == 3 && fp8 && n <= cuda::kGemvV2MaxTokens && k % 16 == 0;
  add_case("linear", fmt::format("{}n={},m={},k={},w={},out={},x_stride={},ue8m0={},path={}", refnum_tag(which == 2), n,
                                 m, k, fp8 ? "fp8" : "bf16", out_f32 ? "f32" : "bf16", x_stride, ue8m0,
                                 which == 1 ? "fallback" : which == 2 ? "reference" : gemv2 ? "gemv2"
                                 : which == 3 ? "gemv2->gemv" : gemv ? "gemv" : "cublaslt"),
           quick, [=](Env& env) {
             Backend& gpu = which == 1 ? *env.gpu_fb : which == 2 ? *env.gpu_ref : which == 3 ? *env.gpu_gemv2 : *env.gpu;
             Rng rng(7000 + n * 31 + m + k);
             const int xs = x_stride ? x_stride : k;
             Tensor xfull = rand_bf16(rng, {n, xs});
             TensorView x = xfull.view();
             x.shape = Shape{n, k};
             HostLinear w = fp8 ? rand_fp8_weight(rng, m, k) : rand_bf16_weight(rng, m, k, 1.f / std::sqrt(k));
             const DType odt = out_f32 ? DType::kF32 : DType::kBF16;
             Tensor out(odt, {n, m});
             Dev d(gpu);
             TensorView dxfull = d.up(xfull, "x");
             TensorView dx = dxfull;
             dx.shape = Shape{n, k};
             TensorView dout = d.out(odt, {n, m}, "out");
             env.cpu->linear({.x = x, .x_stride = x_stride, .w = w.view(), .out = out, .ue8m0 = ue8m0});
             gpu.linear({.x = dx, .x_stride = x_stride, .w = d.weight(w), .out = dout, .ue8m0 = ue8m0});
             // The fallback kernels sum in the reference's order with the same roundings: bitwise. cuBLASLt: see Tol.
             // The GEMV multiplies on the tensor cores and sums in its own order: the cuBLASLt FP8 tolerance.
             // gemv2: tensor-core products as the GEMV, its own summation order (gemv_fp8_v2.cu): the same tolerance.
             // Reference numerics (which 2): bitwise, as the fallback kernels.
             const bool lt_fp8_path = (which == 0 || which == 3) && fp8 && !out_f32 && k % 512 == 0 && m % 16 == 0;
             const Tol tol = which == 1 || which == 2 ? kBitwise : gemv || lt_fp8_path ? kTolGemmFp8 : fp8 ? kBitwise : out_f32
                 ? Tol{.atol = 0, .rtol = 1e-4, .atol_rms = 1e-5, .min_cos = 0.999999, .max_nmse = 1e-9}
                 : kTolGemmBf16;
             return compare("out", out, d.get(dout), tol) && d.guards_ok;
           });
}

namespace {

// A stacked weight [m1 + m2, k] with out2 (q_a ‖ kv_a, gate ‖ up; LinearParams): out and out2 against the CPU's
// (which runs the two halves; bitwise the unsplit linear's columns, tests/unit test_cpu_ops). which as linear_case:
// 3 the default backend (v2 GEMV: one launch writing both outputs, n <= 8; above, the two halves), 1 the fallback
// kernels and 2 reference numerics (both bitwise), 0 the v1 GEMV backend (the halves). The guards around out and
// out2 catch a store past either.
void linear_stacked_case(int n, int m1, int m2, int k, bool fp8, int which, bool quick) {
  const bool gemv2 = which == 3 && fp8 && n <= cuda::kGemvV2MaxTokens && k % 16 == 0;
  add_case("linear_stacked", fmt::format("{}n={},m={}+{},k={},w={},path={}", refnum_tag(which == 2), n, m1, m2, k,
                                         fp8 ? "fp8" : "bf16",
                                         which == 1 ? "fallback" : which == 2 ? "reference" : gemv2 ? "gemv2" : "halves"),
           quick, [=](Env& env) {
             Backend& gpu = which == 1 ? *env.gpu_fb : which == 2 ? *env.gpu_ref : which == 3 ? *env.gpu_gemv2 : *env.gpu;
             Rng rng(7700 + n * 31 + m1 + m2 + k);
             Tensor x = rand_bf16(rng, {n, k});
             HostLinear w = fp8 ? rand_fp8_weight(rng, m1 + m2, k) : rand_bf16_weight(rng, m1 + m2, k, 1.f / std::sqrt(k));
             Tensor out(DType::kBF16, {n, m1}), out2(DType::kBF16, {n, m2});
             Dev d(gpu);
             TensorView dout = d.out(DType::kBF16, {n, m1}, "out"), dout2 = d.out(DType::kBF16, {n, m2}, "out2");
             env.cpu->linear({.x = x, .w = w.view(), .out = out, .out2 = out2});
             gpu.linear({.x = d.up(x, "x"), .w = d.weight(w), .out = dout, .out2 = dout2});
             const bool tc = (which == 0 || which == 3) && fp8;  // GEMV or cuBLASLt FP8: their own summation order
             const Tol tol = which == 1 || which == 2 ? kBitwise : tc ? kTolGemmFp8 : fp8 ? kBitwise : kTolGemmBf16;
             bool ok = compare("out", out, d.get(dout), tol);
             ok &= compare("out2", out2, d.get(dout2), tol);
             return ok && d.guards_ok;
           });
}

// gemv_fp8_v2.cu called directly (kernels.h) with a forced K split (the cluster size) and its debug outputs: the
// GEMV against the CPU reference (kTolGemmFp8, as the v1 GEMV), and the codes and scales the kernel quantized for
// itself against launch_quantize_fp8 and against CpuBackend's quantize_row_fp8, bit for bit. x holds edge values:
// an all-zero group (the 1e-4 amax floor), a group below the floor, ±0, bf16 subnormals, e4m3 rounding ties; with
// `specials` also a group whose one huge value drives the rest far below e4m3's smallest step, ±inf and
// ±NaN (then the GEMV output is not compared: NaN or dominated by one row; NaN codes compare equal whatever their
// sign bit). split 0: the launcher's choice; taken = false: the launcher must refuse the forced split.
// cfg (tile_rows != 0): a GemvV2Config of the sweep, which must then run as given (a bulk one with k % 128 != 0 as
// its cp twin, the documented fallback), not fall back to the default.
void gemv2_direct_case(int n, int m, int k, int split, bool ue8m0, bool out_f32, int x_stride, bool specials,
                       bool taken, bool quick, const cuda::GemvV2Config& cfg = {}) {
  add_case("linear_gemv2", fmt::format("n={},m={},k={},split={},ue8m0={},out={},x_stride={}{}{}", n, m, k, split, ue8m0,
                                       out_f32 ? "f32" : "bf16", x_stride, specials ? ",inf+nan" : "",
                                       cfg.tile_rows ? ",cfg=" + cuda::format_gemv_v2_config(cfg) : std::string()),
           quick, [=](Env& env) {
             if (env.gpu->host_visible()) {
               fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
               return true;
             }
             Rng rng(9100 + static_cast<uint64_t>(n) * 131 + m + k + split);
             const int xs = x_stride ? x_stride : k, kb = (k + 127) / 128;
             Tensor x = rand_bf16(rng, {n, xs});
             bf16* xb = x.as<bf16>();
             auto set = [&](int t, int i, float v) {
               if (i < k) xb[static_cast<int64_t>(t) * xs + i] = f32_to_bf16(v);
             };
             auto set_bits = [&](int t, int i, uint16_t b) {
               if (i < k) xb[static_cast<int64_t>(t) * xs + i] = bf16{b};
             };
             for (int i = 0; i < 128; ++i) set(0, i, (i & 1) ? -0.f : 0.f);                // group 0 of row 0: zeros
             for (int i = 128; i < 256; ++i) set(n - 1, i, rng.normal(1e-6f));            // below the 1e-4 floor
             for (int t = 0; t < n; ++t) {
               set_bits(t, 384 + 3 * t, static_cast<uint16_t>(0x0001 + t));   // bf16 subnormals
               set_bits(t, 390 + 3 * t, static_cast<uint16_t>(0x8003 + t));
               set(t, 400 + t, -0.f);
               set(t, k - 1, 448.f * (t + 1));  // the last group: amax exactly 448·(t+1), s = t+1 (ties in x/s)
               set(t, k - 2, 0.5f * (t + 1) * 1.0625f);
             }
             if (specials) {
               set(n / 2, 300, 3e30f);                // one huge value in group 2
               set_bits(0, k / 2, 0x7f80);            // +inf
               set_bits(n - 1, k / 3, 0xff80);        // -inf
               set_bits(n / 2, 129, 0x7fc0);          // +NaN
               set_bits(n / 2, k - 17, 0xffc1);       // -NaN
             }
             HostLinear w = rand_fp8_weight(rng, m, k);
             TensorView xv = x.view();
             xv.shape = Shape{n, k};
             Tensor out(out_f32 ? DType::kF32 : DType::kBF16, {n, m});
             env.cpu->linear({.x = xv, .x_stride = x_stride, .w = w.view(), .out = out, .ue8m0 = ue8m0});
             // CPU codes and scales (quantize_row_fp8), scales in the [kb, n] layout of the kernels.
             Tensor ref_codes(DType::kU8, {n, k}), ref_scales(DType::kF32, {kb, n});
             {
               std::vector<float> row(static_cast<size_t>(k)), sc(static_cast<size_t>(kb));
               for (int t = 0; t < n; ++t) {
                 for (int i = 0; i < k; ++i) row[static_cast<size_t>(i)] = bf16_to_f32(xb[static_cast<int64_t>(t) * xs + i]);
                 quantize_row_fp8(row.data(), k, ue8m0, ref_codes.as<uint8_t>() + static_cast<int64_t>(t) * k, sc.data());
                 for (int b = 0; b < kb; ++b) ref_scales.as<float>()[static_cast<int64_t>(b) * n + t] = sc[static_cast<size_t>(b)];
               }
             }
             Dev d(*env.gpu);
             TensorView dx = d.up(x, "x");
             const LinearWeight dw = d.weight(w);
             TensorView dout = d.out(out.dtype(), {n, m}, "out");
             TensorView dcodes = d.out(DType::kU8, {n, k}, "codes (v2)"), dscales = d.out(DType::kF32, {kb, n}, "scales (v2)");
             TensorView qcodes = d.out(DType::kU8, {n, k}, "codes (quantize)"), qscales = d.out(DType::kF32, {kb, n}, "scales (quantize)");
             env.gpu->synchronize();
             const auto* dxp = static_cast<const cuda::bf16_t*>(dx.data);
             cuda::launch_quantize_fp8({dxp, qcodes.as<uint8_t>(), qscales.as<float>(), xs, n, k, ue8m0}, nullptr);
             const bool launched = cuda::launch_linear_fp8_gemv_v2(
                 {.x = dxp, .w = dw.weight.as<const uint8_t>(), .sw = dw.scale_inv.as<const float>(), .out = dout.data,
                  .x_stride = xs, .n = n, .m = m, .k = k, .ue8m0 = ue8m0, .out_f32 = out_f32, .split = split,
                  .dbg_codes = dcodes.as<uint8_t>(), .dbg_scales = dscales.as<float>(), .cfg = cfg},
                 nullptr);
             const cudaError_t e = cudaDeviceSynchronize();
             if (e != cudaSuccess || cudaGetLastError() != cudaSuccess) {
               fmt::print("    CUDA error: {}\n", cudaGetErrorString(e));
               return false;
             }
             if (!taken) {  // refused: nothing may have been written
               Tensor got = d.get(dout);
               bool untouched = true;
               for (int64_t i = 0; i < static_cast<int64_t>(got.nbytes()); ++i) untouched &= got.as<uint8_t>()[i] == 0xFF;
               if (launched || !untouched) fmt::print("    the launcher took split {} (launched={}, output untouched={})\n", split, launched, untouched);
               return !launched && untouched && d.guards_ok;
             }
             if (!launched) {
               fmt::print("    the launcher refused the shape (split {})\n", split);
               return false;
             }
             const cuda::GemvV2Config used = cuda::linear_fp8_gemv_v2_plan(n, m, k, cfg, split);
             fmt::print("    ran as: {}\n", cuda::format_gemv_v2_config(used));
             if (cfg.tile_rows) {  // the requested variant, not a fallback (the split may be the cost model's)
               cuda::GemvV2Config want = cfg;
               want.bulk = cfg.bulk && k % 128 == 0;
               want.split = used.split;
               if (used != want) {
                 fmt::print("    expected to run as {}\n", cuda::format_gemv_v2_config(want));
                 return false;
               }
             }
             // Codes: bitwise, except that any two NaN codes (0x7f / 0xff) count as equal.
             auto same_codes = [&](const char* what, const Tensor& ref, const Tensor& got) {
               int64_t bad = 0, first = -1;
               for (int64_t i = 0; i < ref.numel(); ++i) {
                 const uint8_t a = ref.as<const uint8_t>()[i], b = got.as<const uint8_t>()[i];
                 if (a == b || ((a & 0x7f) == 0x7f && (b & 0x7f) == 0x7f)) continue;
                 if (first < 0) first = i;
                 ++bad;
               }
               if (bad) fmt::print("    {}: {} of {} codes differ; first [{}, {}]: ref 0x{:02x} got 0x{:02x}\n", what, bad,
                                   ref.numel(), first / k, first % k, ref.as<const uint8_t>()[first], got.as<const uint8_t>()[first]);
               return bad == 0;
             };
             const Tensor v2_codes = d.get(dcodes), q_codes = d.get(qcodes);
             bool ok = same_codes("v2 codes vs launch_quantize_fp8", q_codes, v2_codes);
             ok &= same_codes("v2 codes vs quantize_row_fp8 (cpu)", ref_codes, v2_codes);
             ok &= compare("v2 scales vs launch_quantize_fp8", d.get(qscales), d.get(dscales), kBitwise);
             ok &= compare("v2 scales vs quantize_row_fp8 (cpu)", ref_scales, d.get(dscales), kBitwise);
             if (!specials) ok &= compare("out", out, d.get(dout), kTolGemmFp8);
             else d.get(dout);  // its guards
             return ok && d.guards_ok;
           });
}

}  // namespace

// The candidate configurations of the v2 GEMV sweep (--perf -o gemv2_sweep, scripts/device/gemv3.sh), the current
// default first. Each one is also a set of linear_gemv2 cases (register_cases), so a candidate is checked before it is
// timed. They span the suspected limits: bytes in flight (stages x stage size), barriers per byte (16 vs 32 KB
// stages), run length per row and stage (512 B .. 2 KB), 2 CTAs per SM (one CTA's barrier hidden by the other),
// and the copy engine (cp.async by every thread vs one bulk copy per row from a producer warp, no CTA barrier).
std::vector<cuda::GemvV2Config> gemv2_sweep_configs() {
  static const char* const kConfigs[] = {
      "rows=32,stage_kb=4,stages=5,ctas=1,copy=cp",  // the default of 2026-11-30
      "rows=32,stage_kb=4,stages=8,ctas=1,copy=cp",   "rows=32,stage_kb=4,stages=4,ctas=2,copy=cp",
      "rows=32,stage_kb=8,stages=4,ctas=1,copy=cp",   "rows=32,stage_kb=8,stages=2,ctas=2,copy=cp",
      "rows=16,stage_kb=8,stages=6,ctas=1,copy=cp",   "rows=16,stage_kb=8,stages=4,ctas=2,copy=cp",
      "rows=16,stage_kb=16,stages=4,ctas=1,copy=cp",  "rows=16,stage_kb=16,stages=2,ctas=2,copy=cp",
      "rows=32,stage_kb=4,stages=6,ctas=1,copy=bulk", "rows=32,stage_kb=4,stages=4,ctas=2,copy=bulk",
      "rows=32,stage_kb=8,stages=4,ctas=1,copy=bulk", "rows=32,stage_kb=8,stages=2,ctas=2,copy=bulk",
      "rows=16,stage_kb=8,stages=8,ctas=1,copy=bulk", "rows=16,stage_kb=8,stages=4,ctas=2,copy=bulk",
      "rows=16,stage_kb=16,stages=4,ctas=1,copy=bulk", "rows=16,stage_kb=16,stages=2,ctas=2,copy=bulk",
  };
  std::vector<cuda::GemvV2Config> out;
  for (const char* c : kConfigs) out.push_back(cuda::parse_gemv_v2_config(c, "gemv2 sweep config"));
  return out;
}

namespace {

// The v2 GEMV inside a CUDA graph: captured at one row, replayed with new input (a fresh backend with DSV3_GEMV=v2,
// the given DSV3_GEMV_V2_CFG and no per-op synchronization, which would refuse the capture).
void gemv2_graph_case(const cuda::GemvV2Config& cfg = {}) {
  add_case("linear_gemv2", "graph: captured at 2 rows, replayed with new x, cfg=" + cuda::format_gemv_v2_config(cfg),
           true, [=](Env& env) {
    if (env.gpu->host_visible()) {
      fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
      return true;
    }
    CudaBackendOptions o;
    o.gemv_v2 = true;
    o.gemv_v2_cfg = cfg;
    std::unique_ptr<Backend> gpu = make_cuda_backend(o);
    Rng rng(78);
    const int m = 1000, k = 2048;
    HostLinear w = rand_fp8_weight(rng, m, k);
    Tensor x = rand_bf16(rng, {2, k}), xb = rand_bf16(rng, {2, k});
    Dev d(*gpu);
    const LinearWeight dw = d.weight(w);
    TensorView dx = d.up(x, "x"), dout = d.out(DType::kBF16, {2, m}, "out");
    std::unique_ptr<BackendGraph> graph = gpu->capture([&] { gpu->linear({.x = dx, .w = dw, .out = dout}); });
    if (!graph) {
      fmt::print("    the capture was refused\n");
      return false;
    }
    gpu->copy(dx, xb.view());
    graph->replay();
    gpu->synchronize();
    Tensor ref(DType::kBF16, {2, m});
    env.cpu->linear({.x = xb, .w = w.view(), .out = ref});
    return compare("replayed output (new input)", ref, d.get(dout), kTolGemmFp8) && d.guards_ok;
  });
}

}  // namespace

void register_linear_cases() {
  for (int which : {0, 1}) {
    linear_case(1, 1536, 7168, true, false, 0, false, which, which == 1);  // q_a_proj, decode
    linear_case(64, 576, 7168, true, false, 0, false, which, false);       // kv_a_proj_with_mqa
    linear_case(33, 7168, 2048, true, false, 0, false, which, false);      // expert down
    linear_case(64, 4096, 512, true, false, 0, true, which, false);        // kv_b-like, ue8m0 scales
    linear_case(9, 1024, 1536, true, false, 2000, false, which, true);     // x_stride
    linear_case(5, 256, 384, true, false, 0, false, which, true);          // k/128 = 3: the fallback
    linear_case(3, 100, 200, true, false, 0, false, which, true);          // partial blocks
    linear_case(2, 256, 1024, true, true, 0, false, which, true);          // fp8 -> f32
    linear_case(17, 2048, 7168, false, false, 0, false, which, false);     // bf16 weights
    linear_case(3, 1000, 7168, false, true, 0, false, which, true);        // lm_head-like, f32 logits
    linear_case(4, 33, 70, false, false, 77, false, which, true);          // odd bf16 with stride
  }
  // The decode GEMV (path=gemv): DeepSeek-V3 shapes at 1..16 tokens, the 8/9-token switch to the upper mma rows,
  // two tiles per warp (9..16 tokens, m >= 4096) with a partial last tile, partial K blocks, K % 16 != 0 (the
  // bytewise path), f32 outputs and ue8m0 scales.
  for (int n : {1, 2, 5, 16}) {
    if (n > 1) linear_case(n, 1536, 7168, true, false, 0, false, 0, n < 16);  // q_a_proj (n = 1: above)
    linear_case(n, 576, 7168, true, n == 5, 0, false, 0, n < 16);   // kv_a_proj_with_mqa
    linear_case(n, 32768, 512, true, false, 0, n == 2, 0, false);   // kv_b_proj
  }
  linear_case(1, 7168, 16384, true, false, 0, false, 0, false);  // o_proj
  linear_case(16, 7168, 16384, true, false, 0, true, 0, false);
  linear_case(8, 576, 7168, true, false, 0, false, 0, true);
  linear_case(9, 4100, 1040, true, true, 0, false, 0, true);
  linear_case(12, 2048, 7168, true, false, 0, true, 0, true);     // expert gate/up
  linear_case(1, 100, 200, true, false, 0, false, 0, true);
  linear_case(5, 100, 200, true, true, 0, false, 0, true);
  linear_case(16, 100, 200, true, false, 0, true, 0, true);
  linear_case(3, 300, 1000, true, false, 0, false, 0, true);
  linear_case(14, 130, 1000, true, true, 150 + 1000, true, 0, true);
  // Token counts cuBLASLt refuses (status 15 for n = 86, 90, ...): the last n % 16 rows take the GEMV.
  linear_case(86, 2048, 7168, true, false, 0, false, 0, false);   // expert gate/up
  linear_case(90, 7168, 2048, true, false, 0, true, 0, false);    // expert down, ue8m0
  linear_case(46, 1536, 7168, true, false, 7168 + 64, false, 0, true);  // x_stride
  // The v2 GEMV (DSV3_GEMV=v2, path=gemv2): DeepSeek-V3 shapes at 1, 2, 5, 8 tokens; odd shapes: m not a multiple of
  // the 32-row tile, k not a multiple of 128 (k % 16 == 0), one or two K-blocks, strided x (16-byte rows and odd
  // strides: the bytewise x loads), f32 outputs, ue8m0 scales; k % 16 != 0 falls back to the v1 pair (gemv2->gemv).
  for (int n : {1, 2, 5, 8}) {
    linear_case(n, 1536, 7168, true, false, 0, false, 3, n < 8);   // q_a_proj
    linear_case(n, 576, 7168, true, n == 5, 0, false, 3, n < 8);   // kv_a_proj_with_mqa
    linear_case(n, 32768, 512, true, false, 0, n == 2, 3, false);  // kv_b_proj
    linear_case(n, 2048, 7168, true, false, 0, n == 8, 3, false);  // expert / shared expert gate, up
  }
  linear_case(1, 7168, 16384, true, false, 0, false, 3, false);  // o_proj
  linear_case(8, 7168, 16384, true, false, 0, true, 3, false);
  linear_case(8, 18432, 7168, true, false, 0, false, 3, false);  // dense gate/up
  linear_case(1, 7168, 18432, true, false, 0, false, 3, false);  // dense down
  linear_case(5, 24576, 1536, true, false, 0, false, 3, false);  // q_b_proj
  linear_case(2, 7168, 2048, true, true, 0, false, 3, false);    // expert down, f32
  linear_case(3, 100, 1040, true, false, 0, false, 3, true);
  linear_case(8, 4100, 1040, true, true, 0, false, 3, true);
  linear_case(5, 33, 256, true, false, 0, false, 3, true);
  linear_case(1, 129, 128, true, false, 0, true, 3, true);
  linear_case(2, 300, 400, true, false, 0, true, 3, true);
  linear_case(7, 1000, 2064, true, false, 2064 + 64, false, 3, true);
  linear_case(6, 256, 1024, true, true, 1027, false, 3, true);
  linear_case(4, 200, 1000, true, false, 1003, false, 3, true);   // k % 16 != 0: the v1 pair
  linear_case(9, 1536, 7168, true, false, 0, false, 3, true);     // 9 rows: the v1 GEMV
  // Stacked weights with out2 (q_a ‖ kv_a, shared-expert gate ‖ up; a partial last scale block; the halves above 8
  // rows and on the other backends; bf16).
  for (int n : {1, 3, 8}) linear_stacked_case(n, 1536, 576, 7168, true, 3, n < 8);
  linear_stacked_case(2, 2048, 2048, 7168, true, 3, false);
  linear_stacked_case(1, 256, 130, 208, true, 3, true);
  linear_stacked_case(5, 128, 100, 1040, true, 3, true);
  linear_stacked_case(9, 1536, 576, 7168, true, 3, true);
  linear_stacked_case(33, 256, 130, 1024, true, 3, true);
  linear_stacked_case(4, 256, 130, 1024, true, 0, true);
  linear_stacked_case(3, 256, 130, 208, true, 1, true);
  linear_stacked_case(2, 1536, 576, 7168, true, 2, true);
  linear_stacked_case(3, 37, 60, 200, false, 3, true);
  // Every K split (cluster size) forced, with the fused codes and scales checked bit for bit; the launcher's choice;
  // a split it must refuse (8 ranges of a 4-block K); the specials (inf, NaN, huge values) for the codes.
  for (int split : {1, 2, 4, 8}) {
    gemv2_direct_case(8, 4100, 1040, split, false, false, 0, false, true, split != 8);
    gemv2_direct_case(3, 1000, 2064, split, split == 2, split == 4, 0, false, true, true);
  }
  gemv2_direct_case(1, 7168, 16384, 0, false, false, 0, false, true, false);  // o_proj at the launcher's split
  gemv2_direct_case(8, 7168, 16384, 8, true, false, 0, false, true, false);
  gemv2_direct_case(2, 576, 7168, 4, false, false, 0, false, true, true);
  gemv2_direct_case(5, 33, 256, 2, false, false, 0, false, true, true);
  gemv2_direct_case(8, 128, 128, 1, true, true, 0, false, true, true);
  gemv2_direct_case(5, 300, 1040, 4, false, false, 1043, false, true, true);  // bytewise x loads
  gemv2_direct_case(4, 256, 512, 8, false, false, 0, false, false, true);      // split 8 > 4 K-blocks: refused
  gemv2_direct_case(4, 256, 1024, 2, false, false, 0, true, true, true);
  gemv2_direct_case(7, 256, 1024, 1, true, false, 0, true, true, true);
  gemv2_graph_case();
  // Every sweep configuration (gemv2_sweep_configs) on shapes that reach its paths: k % 128 != 0 (a bulk config runs
  // its cp twin), a partial tile with a forced split, kv_a at split 8 (two tiles per cluster, a partial stage),
  // 8 tokens at the cost model's split, the bytewise x loads with f32 out, several tiles per CTA without a cluster,
  // 8..32 stages per tile (the ring wraps within a tile), and the inf/NaN/huge-value codes.
  for (const cuda::GemvV2Config& c : gemv2_sweep_configs()) {
    gemv2_direct_case(8, 4100, 1040, 0, false, false, 0, false, true, false, c);
    gemv2_direct_case(3, 1000, 2048, 2, true, false, 0, false, true, true, c);
    gemv2_direct_case(1, 576, 7168, 8, false, false, 0, false, true, false, c);
    gemv2_direct_case(8, 2048, 7168, 0, false, false, 0, false, true, false, c);
    gemv2_direct_case(5, 300, 1024, 0, false, true, 1043, false, true, false, c);
    gemv2_direct_case(1, 16384, 1024, 1, false, false, 0, false, true, false, c);
    gemv2_direct_case(1, 2048, 16384, 1, false, false, 0, false, true, false, c);
    gemv2_direct_case(4, 256, 1024, 2, false, false, 0, true, true, false, c);
  }
  gemv2_graph_case(cuda::parse_gemv_v2_config("rows=16,stage_kb=16,stages=4,ctas=1,copy=bulk", "test"));
  gemv2_graph_case(cuda::parse_gemv_v2_config("rows=16,stage_kb=8,stages=4,ctas=2,copy=cp,split=2", "test"));
}

}  // namespace dsv3::ops_test
