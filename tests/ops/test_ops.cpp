// test_ops.cpp: every op of backend.h run on the CPU reference and on CUDA, compared element by element
// (tests/ops, CTest label gpu). Modes: test (default) and --perf (TFLOPS / GB/s against performance.md's ceilings).
// Filters: -o OP (exact op name), -p REGEX (on "op(vars)"), --quick (the small cases, for compute-sanitizer).
// Each case states its tolerance and why; outputs are poisoned (NaN) and guarded (sentinels) on the device.
// Without a GPU the binary prints SKIP and exits 77 (CTest's skip code).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <numeric>
#include <regex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dsv3/backend/backend.h"
#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/cuda/cuda_backend.h"
#include "dsv3/base/numeric.h"
#include "dsv3/base/timer.h"
#include "dsv3/io/synthetic.h"
#include "dsv3/io/tiny_model.h"
#include "dsv3/io/weight_source.h"
#include "dsv3/model/weights.h"
#include "ops_harness.h"

namespace dsv3::ops_test {
namespace {

struct Env {
  Backend* cpu = nullptr;
  Backend* gpu = nullptr;         // cuBLASLt + WMMA decode (the production configuration)
  Backend* gpu_fb = nullptr;      // own GEMM kernels (DSV3_CUDA_GEMM=fallback)
  Backend* gpu_simple = nullptr;  // CUDA-core mla_decode, mla_prefill (DSV3_MLA_DECODE=simple, DSV3_MLA_PREFILL=simple)
  Backend* gpu_nogemv = nullptr;  // production without the FP8 decode GEMV (DSV3_CUDA_FP8_GEMV=0), for --perf
  Backend* gpu_prefill64 = nullptr;  // tensor-core mla_prefill with 64 query rows per CTA (DSV3_MLA_PREFILL=mma64)
};

// One case's device tensors; a deque keeps references stable.
struct Dev {
  Backend& gpu;
  std::deque<DevTensor> keep;
  bool guards_ok = true;
  explicit Dev(Backend& g) : gpu(g) {}
  TensorView up(const TensorView& h, const std::string& name) {
    keep.push_back(upload(gpu, h, name));
    return keep.back().view;
  }
  TensorView out(DType dt, Shape s, const std::string& name) {
    keep.push_back(poisoned(gpu, dt, s, name));
    return keep.back().view;
  }
  Tensor get(const TensorView& v) {
    for (auto& t : keep)
      if (t.view.data == v.data) return download(gpu, t, &guards_ok);
    CHECK(false, "Dev::get of an unknown tensor");
    return {};
  }
  LinearWeight weight(const HostLinear& w) {
    LinearWeight lw{up(w.weight.view(), "weight"), {}};
    if (!w.scale_inv.empty()) lw.scale_inv = up(w.scale_inv.view(), "scale_inv");
    return lw;
  }
};

// Tolerances, with their reasons.
// bf16 elementwise results computed in fp32 with the reference's operation order: at most one bf16 rounding step
// apart where a reduction order differs (rms_norm's sum of squares) or a libm value differs by an ulp.
const Tol kTolBf16Ulp{.atol = 1e-6, .rtol = 1.0 / 128, .min_cos = 0.99999};
// bf16 x bf16 GEMMs with fp32 accumulation (cuBLASLt): only the summation order differs from the reference, so the
// fp32 results agree to ~1e-6 relative; after the bf16 rounding, one ulp (2^-7 relative) plus a little absolute
// slack for outputs near zero (cancellation).
const Tol kTolGemmBf16{.atol = 0, .rtol = 1.0 / 128, .atol_rms = 2e-3, .min_cos = 0.99999, .max_nmse = 1e-5};
// FP8 block-scaled GEMM on the tensor cores: the hardware accumulates each 128-K block with reduced precision
// before the fp32 promotion (DeepSeek-V3 report §3.3.2; measured ~1.7e-3 relative error in performance.md), so a
// few bf16 ulps per element, and up to ~1% of the output rms where an element cancels.
const Tol kTolGemmFp8{.atol = 0, .rtol = 1.0 / 32, .atol_rms = 2e-2, .min_cos = 0.9999, .max_nmse = 2e-5};
// Attention: fp32 online softmax (a different but exact-in-fp32 summation order) vs the reference's two passes.
const Tol kTolAttn{.atol = 0, .rtol = 1.0 / 64, .atol_rms = 4e-3, .min_cos = 0.99999, .max_nmse = 2e-5};
// Tensor-core decode: P is rounded to bf16 before P·V (relative 2^-9 per weight, averaging out over the keys).
const Tol kTolAttnWmma{.atol = 0, .rtol = 1.0 / 32, .atol_rms = 1e-2, .min_cos = 0.9999, .max_nmse = 1e-4};
// Tensor-core prefill (mla_prefill_mma.cu): P is rounded to bf16 (unit roundoff u = 2^-8) for P·V while the row sum
// keeps the fp32 values, so out = Σ_t w_t (1 + δ_t) v_t with |δ_t| <= u, rounded once to bf16 like the reference:
// per element |got - ref| <= u · (Σ_t w_t |v_t| + 2 |ref|), which prefill_case checks exactly (the reference run on
// |v| gives Σ w |v|; x1.1 for the fp32 sums and that run's own rounding). On top, this Tol's statistics: a numpy model
// of the kernel's arithmetic (dev/kernels/mla_prefill_mma_model.py numerics) gives NMSE 1-6e-6 (1 - cos about half
// that) from 300 to 4096 tokens, the bound's worst ratio 0.6, this Tol's 0.47. Its per-element
// slack is 5% of the rms, not 1%: the first rows of a long prompt see few keys, so their outputs (and their ~u·|o|
// errors) are several times the tensor's rms.
const Tol kTolAttnMma{.atol = 0, .rtol = 1.0 / 32, .atol_rms = 5e-2, .min_cos = 0.99999, .max_nmse = 2e-5};
// MoE: two GEMMs in a chain with bf16 intermediates. Where the first GEMM's result differs by a bf16 ulp, the FP8
// re-quantization of the down projection's input can move a code by one e4m3 step (12.5%) — for ~1-2% of the
// inputs, so ~1% relative error in the output is expected from a correct kernel; bf16 weights flip only bf16 ulps.
const Tol kTolMoeFp8{.atol = 0, .rtol = 0.1, .atol_rms = 0.1, .min_cos = 0.999, .max_nmse = 5e-4};
const Tol kTolMoeBf16{.atol = 0, .rtol = 1.0 / 32, .atol_rms = 1e-2, .min_cos = 0.9999, .max_nmse = 1e-4};
const Tol kBitwise{.bitwise = true};

struct Case {
  std::string op, vars;
  bool quick;
  std::function<bool(Env&)> run;
};
std::vector<Case>& registry() {
  static std::vector<Case> c;
  return c;
}
void add_case(std::string op, std::string vars, bool quick, std::function<bool(Env&)> run) {
  registry().push_back({std::move(op), std::move(vars), quick, std::move(run)});
}

// ------------------------------------------------------------------------------------------------- cases

void rms_norm_case(int n, int dim, bool residual, int x_stride, int out_stride, bool quick) {
  add_case("rms_norm", fmt::format("n={},dim={},residual={},x_stride={},out_stride={}", n, dim, residual, x_stride,
                                   out_stride),
           quick, [=](Env& env) {
             Rng rng(1000 + n * 7 + dim);
             const int xs = x_stride ? x_stride : dim, os = out_stride ? out_stride : dim;
             Tensor x = rand_bf16(rng, {n, xs}), w = rand_bf16(rng, {dim}, 0.5f);
             Tensor res = residual ? rand_bf16(rng, {n, dim}) : Tensor();
             Tensor out = rand_bf16(rng, {n, os});  // rows wider than dim keep their other columns
             Dev d(*env.gpu);
             TensorView dx = d.up(x, "x"), dw = d.up(w, "weight"), dres = residual ? d.up(res, "residual") : TensorView{};
             TensorView dout = out_stride ? d.up(out, "out") : d.out(DType::kBF16, {n, os}, "out");
             env.cpu->rms_norm({.x = x, .x_stride = x_stride, .residual = res.view(), .weight = w, .out = out,
                                .out_stride = out_stride});
             env.gpu->rms_norm({.x = dx, .x_stride = x_stride, .residual = dres, .weight = dw, .out = dout,
                                .out_stride = out_stride});
             bool ok = compare("out", out, d.get(dout), kTolBf16Ulp);
             if (residual) ok &= compare("residual", res, d.get(dres), kBitwise);  // bf16(res + x): one rounding
             return ok && d.guards_ok;
           });
}

void embedding_case(int n, int vocab, int dim) {
  add_case("embedding", fmt::format("n={},vocab={},d={}", n, vocab, dim), true, [=](Env& env) {
    Rng rng(2000 + n);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = rng.uniform_int(0, vocab - 1);
    if (n > 2) ids[1] = ids[0];  // repeated ids
    Tensor tid = host_i32({n}, ids), table = rand_bf16(rng, {vocab, dim}), out(DType::kBF16, {n, dim});
    Dev d(*env.gpu);
    TensorView dout = d.out(DType::kBF16, {n, dim}, "out");
    env.cpu->embedding({.ids = tid, .table = table, .out = out});
    env.gpu->embedding({.ids = d.up(tid, "ids"), .table = d.up(table, "table"), .out = dout});
    return compare("out", out, d.get(dout), kBitwise) && d.guards_ok;  // a row copy
  });
}

void rope_case(int n, int heads, int stride, int offset, int rope_dim, int max_pos) {
  add_case("rope", fmt::format("n={},heads={},stride={},offset={},rope_dim={},max_pos={}", n, heads, stride, offset,
                               rope_dim, max_pos),
           true, [=](Env& env) {
             Rng rng(3000 + n + heads);
             Tensor x = rand_bf16(rng, {n, heads, stride});
             std::vector<int32_t> pos(static_cast<size_t>(n));
             for (auto& p : pos) p = rng.uniform_int(0, max_pos);
             std::vector<float> f(static_cast<size_t>(rope_dim / 2));
             for (size_t i = 0; i < f.size(); ++i)  // 10000^(-2i/d), YaRN-like damping on the low frequencies
               f[i] = static_cast<float>(std::pow(10000.0, -2.0 * static_cast<double>(i) / rope_dim) / (i < 4 ? 40.0 : 1.0));
             Tensor tpos = host_i32({n}, pos), tf = make_host_tensor(DType::kF32, {rope_dim / 2}, f.data());
             Dev d(*env.gpu);
             TensorView dx = d.up(x, "x");
             env.cpu->rope({.x = x, .positions = tpos, .inv_freq = tf, .offset = offset});
             env.gpu->rope({.x = dx, .positions = d.up(tpos, "positions"), .inv_freq = d.up(tf, "inv_freq"),
                            .offset = offset});
             // sin/cos from double vs glibc's float functions: an ulp apart at most, so one bf16 step at most.
             return compare("x", x, d.get(dx), kTolBf16Ulp) && d.guards_ok;
           });
}

void silu_add_case(int rows, int cols) {
  add_case("silu_mul", fmt::format("rows={},cols={}", rows, cols), true, [=](Env& env) {
    Rng rng(4000 + rows);
    Tensor g = rand_bf16(rng, {rows, cols}, 3.f), u = rand_bf16(rng, {rows, cols}), out(DType::kBF16, {rows, cols});
    Dev d(*env.gpu);
    TensorView dout = d.out(DType::kBF16, {rows, cols}, "out");
    env.cpu->silu_mul({.gate = g, .up = u, .out = out});
    env.gpu->silu_mul({.gate = d.up(g, "gate"), .up = d.up(u, "up"), .out = dout});
    return compare("out", out, d.get(dout), kTolBf16Ulp) && d.guards_ok;  // exp: an ulp at most
  });
  add_case("add", fmt::format("rows={},cols={}", rows, cols), true, [=](Env& env) {
    Rng rng(4500 + rows);
    Tensor a = rand_bf16(rng, {rows, cols}), b = rand_bf16(rng, {rows, cols}), out(DType::kBF16, {rows, cols});
    Dev d(*env.gpu);
    TensorView dout = d.out(DType::kBF16, {rows, cols}, "out");
    env.cpu->add({.a = a, .b = b, .out = out});
    env.gpu->add({.a = d.up(a, "a"), .b = d.up(b, "b"), .out = dout});
    return compare("out", out, d.get(dout), kBitwise) && d.guards_ok;  // one fp32 add, one rounding
  });
}

std::vector<int32_t> shuffled(Rng& rng, int n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  std::shuffle(v.begin(), v.end(), rng.gen());
  return v;
}

void kv_store_case(int n, int n_blocks, int bs, int entry) {
  add_case("kv_cache_store", fmt::format("n={},n_blocks={},block_size={},entry={}", n, n_blocks, bs, entry), true,
           [=](Env& env) {
             Rng rng(5000 + n);
             Tensor kv = rand_bf16(rng, {n, entry}), cache = rand_bf16(rng, {n_blocks, bs, entry});
             std::vector<int32_t> perm = shuffled(rng, n_blocks * bs);
             perm.resize(static_cast<size_t>(n));  // distinct slots in shuffled blocks
             Tensor slots = host_i32({n}, perm);
             Dev d(*env.gpu);
             TensorView dcache = d.up(cache, "cache");
             env.cpu->kv_cache_store({.kv_new = kv, .cache = cache, .slots = slots});
             env.gpu->kv_cache_store({.kv_new = d.up(kv, "kv_new"), .cache = dcache, .slots = d.up(slots, "slots")});
             return compare("cache", cache, d.get(dcache), kBitwise) && d.guards_ok;  // data movement
           });
}

void kv_gather_case(std::vector<int> lens, int bs, int rank, int rope) {
  std::string v;
  for (int l : lens) v += fmt::format("{}{}", v.empty() ? "" : "/", l);
  const bool quick = std::accumulate(lens.begin(), lens.end(), 0) < 2000;
  add_case("kv_cache_gather", fmt::format("lens={},block_size={},rank={},rope={}", v, bs, rank, rope), quick,
           [=](Env& env) {
             Rng rng(6000 + bs);
             const int n_seqs = static_cast<int>(lens.size());
             int max_blocks = 0, total_blocks = 0;
             std::vector<int32_t> cu{0};
             for (int l : lens) {
               max_blocks = std::max(max_blocks, (l + bs - 1) / bs);
               total_blocks += (l + bs - 1) / bs;
               cu.push_back(cu.back() + l);
             }
             const int n_blocks = total_blocks + 3;
             std::vector<int32_t> pool = shuffled(rng, n_blocks), table(static_cast<size_t>(n_seqs * max_blocks), -1);
             int next = 0;
             for (int s = 0; s < n_seqs; ++s)
               for (int b = 0; b < (lens[static_cast<size_t>(s)] + bs - 1) / bs; ++b)
                 table[static_cast<size_t>(s * max_blocks + b)] = pool[static_cast<size_t>(next++)];
             Tensor cache = rand_bf16(rng, {n_blocks, bs, rank + rope}), bt = host_i32({n_seqs, max_blocks}, table);
             Tensor tcu = host_i32({n_seqs + 1}, cu);
             const int n_kv = cu.back();
             Tensor lat(DType::kBF16, {n_kv, rank}), pe(DType::kBF16, {n_kv, rope});
             Dev d(*env.gpu);
             TensorView dlat = d.out(DType::kBF16, {n_kv, rank}, "latent_out"), dpe = d.out(DType::kBF16, {n_kv, rope}, "pe_out");
             env.cpu->kv_cache_gather({.cache = cache, .block_table = bt, .cu_kv = tcu, .latent_out = lat, .pe_out = pe});
             env.gpu->kv_cache_gather({.cache = d.up(cache, "cache"), .block_table = d.up(bt, "block_table"),
                                       .cu_kv = d.up(tcu, "cu_kv"), .latent_out = dlat, .pe_out = dpe});
             bool ok = compare("latent_out", lat, d.get(dlat), kBitwise);
             ok &= compare("pe_out", pe, d.get(dpe), kBitwise);
             return ok && d.guards_ok;
           });
}

// Linear: `which` picks the backend (0 production, 1 fallback kernels). Production runs FP8 weights with at most
// kGemvRows rows through the decode GEMV (gemv_fp8.cu), larger ones through cuBLASLt (or the fallback it rejects).
constexpr int kGemvRows = 16;
void linear_case(int n, int m, int k, bool fp8, bool out_f32, int x_stride, bool ue8m0, int which, bool quick) {
  const bool gemv = which == 0 && fp8 && n <= kGemvRows;
  add_case("linear", fmt::format("n={},m={},k={},w={},out={},x_stride={},ue8m0={},path={}", n, m, k,
                                 fp8 ? "fp8" : "bf16", out_f32 ? "f32" : "bf16", x_stride, ue8m0,
                                 which ? "fallback" : gemv ? "gemv" : "cublaslt"),
           quick, [=](Env& env) {
             Backend& gpu = which ? *env.gpu_fb : *env.gpu;
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
             const bool lt_fp8_path = which == 0 && fp8 && !out_f32 && k % 512 == 0 && m % 16 == 0;
             const Tol tol = which ? kBitwise : gemv || lt_fp8_path ? kTolGemmFp8 : fp8 ? kBitwise : out_f32
                 ? Tol{.atol = 0, .rtol = 1e-4, .atol_rms = 1e-5, .min_cos = 0.999999, .max_nmse = 1e-9}
                 : kTolGemmBf16;
             return compare("out", out, d.get(dout), tol) && d.guards_ok;
           });
}

void absorb_case(int n, int H, int nope, int rope, int vd, int rank, int which, bool quick) {
  const std::string vars =
      fmt::format("n={},H={},nope={},rope={},v={},rank={},path={}", n, H, nope, rope, vd, rank, which ? "fallback" : "cublaslt");
  add_case("mla_absorb_q", vars, quick, [=](Env& env) {
    Backend& gpu = which ? *env.gpu_fb : *env.gpu;
    Rng rng(8000 + n + H);
    Tensor q = rand_bf16(rng, {n, H, nope + rope}), kvb = rand_bf16(rng, {H * (nope + vd), rank}, 0.05f);
    Tensor qa(DType::kBF16, {n, H, rank + rope});
    Dev d(gpu);
    TensorView dqa = d.out(DType::kBF16, {n, H, rank + rope}, "q_abs");
    env.cpu->mla_absorb_q({.q = q, .kv_b = kvb, .q_abs = qa, .qk_nope_head_dim = nope, .v_head_dim = vd});
    gpu.mla_absorb_q({.q = d.up(q, "q"), .kv_b = d.up(kvb, "kv_b"), .q_abs = dqa, .qk_nope_head_dim = nope, .v_head_dim = vd});
    return compare("q_abs", qa, d.get(dqa), which ? kBitwise : kTolGemmBf16) && d.guards_ok;
  });
  add_case("mla_absorb_v", vars, quick, [=](Env& env) {
    Backend& gpu = which ? *env.gpu_fb : *env.gpu;
    Rng rng(8500 + n + H);
    Tensor o = rand_bf16(rng, {n, H, rank}), kvb = rand_bf16(rng, {H * (nope + vd), rank}, 0.05f);
    Tensor out(DType::kBF16, {n, H, vd});
    Dev d(gpu);
    TensorView dout = d.out(DType::kBF16, {n, H, vd}, "out");
    env.cpu->mla_absorb_v({.o_latent = o, .kv_b = kvb, .out = out, .qk_nope_head_dim = nope, .v_head_dim = vd});
    gpu.mla_absorb_v({.o_latent = d.up(o, "o_latent"), .kv_b = d.up(kvb, "kv_b"), .out = dout, .qk_nope_head_dim = nope,
                      .v_head_dim = vd});
    return compare("out", out, d.get(dout), which ? kBitwise : kTolGemmBf16) && d.guards_ok;
  });
}

// The tensor-core prefill's per-element bound (kTolAttnMma): |got - ref| <= 1.1 · 2^-8 · (Σ w|v| + 2 |ref|).
bool within_p_rounding_bound(const Tensor& ref, const Tensor& got, const Tensor& abs_wv) {
  const int64_t n = ref.numel();
  int64_t bad = 0, first = -1, worst = -1;
  double worst_ratio = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double r = bf16_to_f32(ref.as<const bf16>()[i]), g = bf16_to_f32(got.as<const bf16>()[i]);
    const double lim = 1.1 * std::ldexp(1.0, -8) * (bf16_to_f32(abs_wv.as<const bf16>()[i]) + 2 * std::fabs(r)) + 1e-6;
    const double ratio = std::isfinite(g) ? std::fabs(g - r) / lim : 1e30;
    if (ratio > 1) {
      ++bad;
      if (first < 0) first = i;
    }
    if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  if (bad == 0) return true;
  const int64_t heads = ref.shape()[1], width = ref.shape()[2];
  auto at = [&](int64_t i) {
    return fmt::format("[{}, {}, {}]: ref {:.8g} got {:.8g} sum w|v| {:.6g}", i / (heads * width), i / width % heads,
                       i % width, bf16_to_f32(ref.as<const bf16>()[i]),
                       bf16_to_f32(got.as<const bf16>()[i]), bf16_to_f32(abs_wv.as<const bf16>()[i]));
  };
  fmt::print("    out: {} of {} elements outside the P-rounding bound; first at {}\n", bad, n, at(first));
  fmt::print("    worst at {} ({:.3g}x the bound)\n", at(worst), worst_ratio);
  return false;
}

// Sequences given as (queries, keys) pairs: keys >= queries; a chunked prefill has keys > queries (the earlier chunks
// are in the cache: kv and k_pe hold all keys, q only the new queries). which: 0 production (the tensor-core kernel,
// 128 query rows per CTA, for nope 128 / rope 64 / v 128; other dims fall back to the CUDA-core kernel), 1 the
// CUDA-core kernel (DSV3_MLA_PREFILL=simple), 2 the tensor-core kernel with 64 query rows (DSV3_MLA_PREFILL=mma64).
// q_std scales the queries: scores of std ~q_std, so 4 makes the softmax peaky and moves the running max often.
// With more than 16 heads the GPU runs all of them and the CPU reference 4 of them (the first two, a middle one, the
// last: a head enters the kernel only through its offsets), which keeps the reference's time in seconds for H = 128
// at 4096 tokens.
void prefill_case(std::vector<std::pair<int, int>> seqs, int H, int nope, int rope, int vd, int which, bool quick,
                  float q_std = 1.f) {
  std::string v;
  for (auto [q, k] : seqs) v += fmt::format("{}{}:{}", v.empty() ? "" : "/", q, k);
  if (seqs.size() > 6) v = fmt::format("{}_seqs", seqs.size());  // their lengths: register_cases()
  const char* kernel = which == 1 ? "simple" : which == 2 ? "mma64" : "default";
  add_case("mla_prefill", fmt::format("seqs={},H={},nope={},rope={},v={},q_std={},kernel={}", v, H, nope, rope, vd,
                                      q_std, kernel),
           quick, [=](Env& env) {
    Backend& gpu = which == 1 ? *env.gpu_simple : which == 2 ? *env.gpu_prefill64 : *env.gpu;
    Rng rng(9000 + H + nope + static_cast<int>(seqs.size()));
    std::vector<int32_t> cq{0}, ck{0};
    for (auto [q, k] : seqs) cq.push_back(cq.back() + q), ck.push_back(ck.back() + k);
    const int nq = cq.back(), nk = ck.back(), qd = nope + rope, kvd = nope + vd;
    Tensor q = rand_bf16(rng, {nq, H, qd}, q_std), kv = rand_bf16(rng, {nk, H, kvd}), kpe = rand_bf16(rng, {nk, rope});
    Tensor tcq = host_i32({static_cast<int64_t>(cq.size())}, cq), tck = host_i32({static_cast<int64_t>(ck.size())}, ck);
    const float scale = 1.f / std::sqrt(static_cast<float>(qd));
    Dev d(gpu);
    TensorView dout = d.out(DType::kBF16, {nq, H, vd}, "out");
    gpu.mla_prefill({.q = d.up(q, "q"), .kv = d.up(kv, "kv"), .k_pe = d.up(kpe, "k_pe"), .cu_q = d.up(tcq, "cu_q"),
                     .cu_kv = d.up(tck, "cu_kv"), .out = dout, .qk_nope_head_dim = nope, .v_head_dim = vd,
                     .softmax_scale = scale});
    Tensor got = d.get(dout);
    std::vector<int> heads;  // the heads the reference checks
    if (H <= 16) {
      for (int h = 0; h < H; ++h) heads.push_back(h);
    } else {
      heads = {0, 1, H / 2, H - 1};
    }
    const int hs = static_cast<int>(heads.size());
    auto pick = [&](const Tensor& t, int rows, int width) {  // [rows, H, width] -> [rows, hs, width]
      Tensor sub(DType::kBF16, {rows, hs, width});
      for (int r = 0; r < rows; ++r)
        for (int i = 0; i < hs; ++i)
          std::memcpy(sub.as<bf16>() + (static_cast<int64_t>(r) * hs + i) * width,
                      t.as<const bf16>() + (static_cast<int64_t>(r) * H + heads[static_cast<size_t>(i)]) * width,
                      static_cast<size_t>(width) * 2);
      return sub;
    };
    Tensor q_ref = hs == H ? std::move(q) : pick(q, nq, qd), kv_ref = hs == H ? std::move(kv) : pick(kv, nk, kvd);
    Tensor got_ref = hs == H ? std::move(got) : pick(got, nq, vd), out(DType::kBF16, {nq, hs, vd});
    MlaPrefillParams p{.q = q_ref, .kv = kv_ref, .k_pe = kpe, .cu_q = tcq, .cu_kv = tck, .out = out,
                       .qk_nope_head_dim = nope, .v_head_dim = vd, .softmax_scale = scale};
    env.cpu->mla_prefill(p);
    const bool mma = which != 1 && nope == 128 && rope == 64 && vd == 128;
    if (!mma) return compare("out", out, got_ref, kTolAttn) && d.guards_ok;
    bool ok = compare("out", out, got_ref, kTolAttnMma);
    // The exact bound of kTolAttnMma's comment: Σ_t w_t |v_t| is the reference's output for |v|.
    for (int64_t e = 0; e < kv_ref.numel(); ++e)
      if (e % kvd >= nope) kv_ref.as<bf16>()[e].bits &= 0x7fff;
    Tensor abs_out(DType::kBF16, {nq, hs, vd});
    p.out = abs_out;
    env.cpu->mla_prefill(p);
    ok &= within_p_rounding_bound(out, got_ref, abs_out);
    return ok && d.guards_ok;
  });
}

// Bad input the host cannot see (cu_q / cu_kv live on the device): a sequence with more queries than keys sets the
// device error bit, which the backend reports as dsv3::Error; the next call on the same backend works again.
void prefill_error_case(int which) {
  add_case("mla_prefill", fmt::format("error=more_queries_than_keys,kernel={}", which ? "simple" : "default"), true,
           [=](Env& env) {
    if (env.gpu->host_visible()) {  // --self-check: the CPU reference throws before computing anything
      fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
      return true;
    }
    Backend& gpu = which ? *env.gpu_simple : *env.gpu;
    Rng rng(9500);
    const int H = 2, nq = 10, nk = 12;
    Tensor q = rand_bf16(rng, {nq, H, 192}), kv = rand_bf16(rng, {nk, H, 256}), kpe = rand_bf16(rng, {nk, 64});
    Tensor bad_q = host_i32({3}, {0, 3, 10}), bad_k = host_i32({3}, {0, 10, 12});  // sequence 1: 7 queries, 2 keys
    Dev d(gpu);
    MlaPrefillParams p{.q = d.up(q, "q"), .kv = d.up(kv, "kv"), .k_pe = d.up(kpe, "k_pe"), .cu_q = d.up(bad_q, "cu_q"),
                       .cu_kv = d.up(bad_k, "cu_kv"), .out = d.out(DType::kBF16, {nq, H, 128}, "out"),
                       .qk_nope_head_dim = 128, .v_head_dim = 128, .softmax_scale = 0.07f};
    bool thrown = false;
    try {
      gpu.mla_prefill(p);
      gpu.synchronize();
    } catch (const Error& e) {
      thrown = std::string(e.what()).find("more queries than keys") != std::string::npos;
      if (!thrown) fmt::print("    unexpected error: {}\n", e.what());
    }
    if (!thrown) fmt::print("    no error for a sequence with 7 queries and 2 keys\n");
    p.cu_q = d.up(host_i32({3}, {0, 3, 10}), "cu_q"), p.cu_kv = d.up(host_i32({3}, {0, 4, 12}), "cu_kv");
    bool recovered = true;
    try {
      gpu.mla_prefill(p);
      gpu.synchronize();
    } catch (const Error& e) {
      fmt::print("    the error bit was not cleared: {}\n", e.what());
      recovered = false;
    }
    return thrown && recovered && d.guards_ok;
  });
}

// Rows with their own context lengths over one shuffled pool of cache blocks. which: 0 production, 1 simple kernel.
void decode_case(std::vector<int> lens, int H, int rank, int rope, int bs, int which, bool quick) {
  std::string v;
  for (int l : lens) v += fmt::format("{}{}", v.empty() ? "" : "/", l);
  add_case("mla_decode", fmt::format("lens={},H={},rank={},rope={},block_size={},kernel={}", v, H, rank, rope, bs,
                                     which ? "simple" : "default"),
           quick, [=](Env& env) {
             Backend& gpu = which ? *env.gpu_simple : *env.gpu;
             Rng rng(10000 + H + rank);
             const int n = static_cast<int>(lens.size()), entry = rank + rope;
             int max_blocks = 0, total = 0;
             for (int l : lens) max_blocks = std::max(max_blocks, (l + bs - 1) / bs), total += (l + bs - 1) / bs;
             const int n_blocks = total + 5;
             std::vector<int32_t> pool = shuffled(rng, n_blocks), table(static_cast<size_t>(n * max_blocks), -1);
             int next = 0;
             for (int r = 0; r < n; ++r)
               for (int b = 0; b < (lens[static_cast<size_t>(r)] + bs - 1) / bs; ++b)
                 table[static_cast<size_t>(r * max_blocks + b)] = pool[static_cast<size_t>(next++)];
             Tensor q = rand_bf16(rng, {n, H, entry}, 0.5f), cache = rand_bf16(rng, {n_blocks, bs, entry});
             Tensor bt = host_i32({n, max_blocks}, table), tl = host_i32({n}, std::vector<int32_t>(lens.begin(), lens.end()));
             Tensor out(DType::kBF16, {n, H, rank});
             const float scale = 1.f / std::sqrt(192.f);
             Dev d(gpu);
             TensorView dout = d.out(DType::kBF16, {n, H, rank}, "out");
             env.cpu->mla_decode({.q_abs = q, .cache = cache, .block_table = bt, .seq_lens = tl, .out = out,
                                  .kv_lora_rank = rank, .softmax_scale = scale});
             gpu.mla_decode({.q_abs = d.up(q, "q_abs"), .cache = d.up(cache, "cache"), .block_table = d.up(bt, "block_table"),
                             .seq_lens = d.up(tl, "seq_lens"), .out = dout, .kv_lora_rank = rank, .softmax_scale = scale});
             const bool wmma = which == 0 && entry == 576 && rank == 512;
             return compare("out", out, d.get(dout), wmma ? kTolAttnWmma : kTolAttn) && d.guards_ok;
           });
}

struct RouterCfg {
  const char* name;
  int n, d, E, n_group, topk_group, top_k;
  RouterScoring scoring;
  RouterTopk method;
  bool norm;
  float scale;
  bool ties;  // duplicate gate rows (and biases): exact ties that must go to the lower index
};

void router_case(RouterCfg c) {
  add_case("router", fmt::format("{},n={},d={},E={},groups={}/{},top_k={},ties={}", c.name, c.n, c.d, c.E, c.topk_group,
                                 c.n_group, c.top_k, c.ties),
           true, [=](Env& env) {
             Rng rng(11000 + c.E + c.n);
             Tensor x = rand_bf16(rng, {c.n, c.d}), gate = rand_bf16(rng, {c.E, c.d}, 0.03f);
             Tensor bias = c.method == RouterTopk::kNoauxTc ? rand_f32(rng, {c.E}, -0.05f, 0.05f) : Tensor();
             if (c.ties) {  // experts 1 and E-2, 3 and 4 identical; also in the bias
               auto* g = gate.as<bf16>();
               std::memcpy(g + static_cast<int64_t>(c.E - 2) * c.d, g + c.d, c.d * 2);
               std::memcpy(g + 4 * c.d, g + 3 * c.d, c.d * 2);
               if (!bias.empty()) bias.as<float>()[c.E - 2] = bias.as<float>()[1], bias.as<float>()[4] = bias.as<float>()[3];
             }
             Tensor ids(DType::kI32, {c.n, c.top_k}), wts(DType::kF32, {c.n, c.top_k});
             Dev d(*env.gpu);
             TensorView dids = d.out(DType::kI32, {c.n, c.top_k}, "topk_ids"), dw = d.out(DType::kF32, {c.n, c.top_k}, "topk_weights");
             RouterParams p{.x = x, .gate = gate, .bias = bias.view(), .topk_ids = ids, .topk_weights = wts,
                            .scoring = c.scoring, .method = c.method, .n_group = c.n_group, .topk_group = c.topk_group,
                            .top_k = c.top_k, .norm_topk_prob = c.norm, .routed_scaling_factor = c.scale};
             env.cpu->router(p);
             p.x = d.up(x, "x"), p.gate = d.up(gate, "gate"), p.bias = bias.empty() ? TensorView{} : d.up(bias, "bias");
             p.topk_ids = dids, p.topk_weights = dw;
             env.gpu->router(p);
             // Logits are bitwise the reference's (sequential fp32 dot products), so the selection is exact.
             bool ok = compare("topk_ids", ids, d.get(dids), kBitwise);
             ok &= compare("topk_weights", wts, d.get(dw), Tol{.atol = 0, .rtol = 1e-6, .min_cos = 0.9999999});
             if (c.ties) {  // tie order: the lower index of each identical pair
               Tensor gi = d.get(dids);
               for (int t = 0; t < c.n; ++t)
                 for (int k = 0; k < c.top_k; ++k) {
                   const int id = gi.as<int32_t>()[t * c.top_k + k];
                   bool has_twin = false;
                   for (int k2 = 0; k2 < c.top_k; ++k2) has_twin |= gi.as<int32_t>()[t * c.top_k + k2] == (id == c.E - 2 ? 1 : 3);
                   if ((id == c.E - 2 || id == 4) && !has_twin) {
                     fmt::print("    token {}: expert {} chosen without its lower-index twin\n", t, id);
                     ok = false;
                   }
                 }
             }
             return ok && d.guards_ok;
           });
}

void moe_case(int n, int d_model, int f, int E, int top_k, bool fp8, int which, bool quick) {
  add_case("moe_experts", fmt::format("n={},d={},f={},E={},top_k={},w={},path={}", n, d_model, f, E, top_k,
                                      fp8 ? "fp8" : "bf16", which ? "fallback" : "cublaslt"),
           quick, [=](Env& env) {
             Backend& gpu = which ? *env.gpu_fb : *env.gpu;
             Rng rng(12000 + n + E);
             std::vector<HostLinear> ws;
             for (int e = 0; e < E; ++e) {
               ws.push_back(fp8 ? rand_fp8_weight(rng, f, d_model) : rand_bf16_weight(rng, f, d_model, 1.f / std::sqrt(d_model)));
               ws.push_back(fp8 ? rand_fp8_weight(rng, f, d_model) : rand_bf16_weight(rng, f, d_model, 1.f / std::sqrt(d_model)));
               ws.push_back(fp8 ? rand_fp8_weight(rng, d_model, f) : rand_bf16_weight(rng, d_model, f, 1.f / std::sqrt(f)));
             }
             std::vector<int32_t> ids;
             std::vector<float> wv;
             for (int t = 0; t < n; ++t) {
               std::vector<int32_t> perm = shuffled(rng, E);
               if (t % 5 == 0) std::sort(perm.begin(), perm.begin() + top_k, std::greater<>());  // unsorted ids order
               for (int k = 0; k < top_k; ++k) ids.push_back(perm[static_cast<size_t>(k)]), wv.push_back(rng.uniform(0.1f, 1.f));
             }
             Tensor x = rand_bf16(rng, {n, d_model}), tid = host_i32({n, top_k}, ids);
             Tensor tw = make_host_tensor(DType::kF32, {n, top_k}, wv.data()), out(DType::kBF16, {n, d_model});
             std::vector<ExpertWeights> hw, dw;
             Dev d(gpu);
             for (int e = 0; e < E; ++e) {
               hw.push_back({ws[3 * e].view(), ws[3 * e + 1].view(), ws[3 * e + 2].view()});
               dw.push_back({d.weight(ws[3 * e]), d.weight(ws[3 * e + 1]), d.weight(ws[3 * e + 2])});
             }
             TensorView dout = d.out(DType::kBF16, {n, d_model}, "out");
             env.cpu->moe_experts({.x = x, .topk_ids = tid, .topk_weights = tw, .experts = hw.data(), .n_experts = E, .out = out});
             gpu.moe_experts({.x = d.up(x, "x"), .topk_ids = d.up(tid, "topk_ids"), .topk_weights = d.up(tw, "topk_weights"),
                              .experts = dw.data(), .n_experts = E, .out = dout});
             return compare("out", out, d.get(dout), fp8 ? kTolMoeFp8 : kTolMoeBf16) && d.guards_ok;
           });
}

// --load_format dummy on the device: the backend's generator against the host's (io/synthetic.cpp), byte for byte.
// The host side uses numeric.h's reference conversions, so this also checks the device's bf16 rounding and its
// integer e4m3 encoder on real data; shapes with partial 128x128 edge blocks and widths that are not a multiple of 4
// (the kernel's unpacked stores) are included.
void synth_case(std::string name, TensorRole role, DType dtype, Shape shape, uint64_t seed, bool quick) {
  add_case("synthesize", fmt::format("{},{},{},seed={}", name, dtype_name(dtype), shape.str(), seed), quick,
           [=](Env& env) {
             if (env.gpu->host_visible()) {  // --self-check: there is no device generator to check
               fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
               return true;
             }
             const TensorSpec spec{name, role, dtype, shape};
             const bool fp8 = dtype == DType::kFP8E4M3;
             Tensor ref(dtype, shape), ref_sc;
             Shape sc_shape;
             if (fp8) {
               sc_shape = Shape{ceil_div(shape[0], 128), ceil_div(shape[1], 128)};
               ref_sc = Tensor(DType::kF32, sc_shape);
               synth_fp8_linear(spec, seed, ref.as<uint8_t>(), ref_sc.as<float>());
             } else {
               synth_fill(spec, seed, ref.view().data);
             }
             Dev d(*env.gpu);
             TensorView out = d.out(dtype, shape, "out"), sc = fp8 ? d.out(DType::kF32, sc_shape, "scale_inv") : TensorView{};
             if (!env.gpu->synthesize({.rule = synth_rule(spec, seed), .out = out, .scale_inv = sc})) {
               fmt::print("    backend {} has no synthesize()\n", env.gpu->name());
               return false;
             }
             bool ok = compare("out", ref, d.get(out), kBitwise);
             if (fp8) ok &= compare("scale_inv", ref_sc, d.get(sc), kBitwise);
             return ok && d.guards_ok;
           });
}

// The loader end to end: a dummy model loaded for the GPU (made on the device) equals the same model loaded for the
// CPU (made on the host), tensor by tensor, byte for byte.
void dummy_load_case(std::string preset, bool fp8, Numerics numerics, bool quick) {
  add_case("dummy_load", fmt::format("preset={},fp8={},numerics={}", preset, fp8, numerics == Numerics::kFp8 ? "fp8" : "bf16"),
           quick, [=](Env& env) {
             if (env.gpu->host_visible()) {  // --self-check: there is no device generator to check
               fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
               return true;
             }
             ModelConfig c = tiny_model_preset(preset);
             c.quant.fp8 = fp8;
             auto host_src = WeightSource::dummy(c, 11), dev_src = WeightSource::dummy(c, 11);
             ModelWeights h = load_model_weights(*host_src, *env.cpu, numerics);
             ModelWeights g = load_model_weights(*dev_src, *env.gpu, numerics);
             auto hv = named_weights(h), gv = named_weights(g);
             if (hv.size() != gv.size()) {
               fmt::print("    {} host tensors vs {} device tensors\n", hv.size(), gv.size());
               return false;
             }
             bool ok = g.bytes_loaded == h.bytes_loaded;
             if (!ok) fmt::print("    bytes_loaded: host {} device {}\n", h.bytes_loaded, g.bytes_loaded);
             int checked = 0;
             for (size_t i = 0; i < hv.size(); ++i) {
               const TensorView& a = hv[i].second;
               const TensorView& b = gv[i].second;
               if (b.device != Device::kCuda || a.dtype != b.dtype || !(a.shape == b.shape)) {
                 fmt::print("    {}: host {} {} vs device {} {} ({})\n", hv[i].first, dtype_name(a.dtype), a.shape.str(),
                            dtype_name(b.dtype), b.shape.str(), b.device == Device::kCuda ? "cuda" : "host");
                 ok = false;
                 continue;
               }
               Tensor got(b.dtype, b.shape);
               env.gpu->copy(got.view(), b);
               env.gpu->synchronize();
               if (!compare(hv[i].first, a, got, kBitwise)) ok = false;
               ++checked;
             }
             fmt::print("    {} tensors, {:.1f} MB compared\n", checked, static_cast<double>(h.bytes_loaded) / 1e6);
             return ok;
           });
}

void register_cases() {
  // Synthetic weights: DeepSeek-V3 shapes (kv_a_proj_with_mqa 576 x 7168: a partial row block), partial blocks in both
  // dimensions, widths that are not a multiple of 4, a single partial block, and the non-FP8 roles.
  const std::string lp = "model.layers.3.";
  synth_case(lp + "self_attn.kv_a_proj_with_mqa.weight", TensorRole::kLinear, DType::kFP8E4M3, {576, 7168}, 0, true);
  synth_case(lp + "mlp.experts.17.down_proj.weight", TensorRole::kLinear, DType::kFP8E4M3, {7168, 2048}, 5, false);
  synth_case(lp + "self_attn.q_b_proj.weight", TensorRole::kLinear, DType::kFP8E4M3, {200, 300}, 1, true);
  synth_case(lp + "self_attn.o_proj.weight", TensorRole::kLinear, DType::kFP8E4M3, {129, 130}, 2, true);
  synth_case(lp + "mlp.up_proj.weight", TensorRole::kLinear, DType::kFP8E4M3, {7, 5}, 3, true);
  synth_case(lp + "mlp.down_proj.weight", TensorRole::kLinear, DType::kBF16, {300, 257}, 4, true);  // bf16 checkpoint
  synth_case("model.embed_tokens.weight", TensorRole::kEmbedding, DType::kBF16, {3001, 7168}, 0, false);
  synth_case("model.embed_tokens.weight", TensorRole::kEmbedding, DType::kBF16, {37, 33}, 9, true);
  synth_case("lm_head.weight", TensorRole::kLinearBf16, DType::kBF16, {1000, 7168}, 0, true);
  synth_case(lp + "input_layernorm.weight", TensorRole::kNorm, DType::kBF16, {7168}, 0, true);
  synth_case(lp + "self_attn.kv_a_layernorm.weight", TensorRole::kNorm, DType::kBF16, {512}, 6, true);
  synth_case(lp + "mlp.gate.e_score_correction_bias", TensorRole::kBias, DType::kF32, {256}, 0, true);
  synth_case(lp + "mlp.gate.e_score_correction_bias", TensorRole::kBias, DType::kF32, {1}, 8, true);
  dummy_load_case("micro", true, Numerics::kFp8, true);
  dummy_load_case("micro", true, Numerics::kBf16, true);  // FP8 linears dequantized on the host, the rest on the device
  dummy_load_case("micro", false, Numerics::kFp8, true);  // a bf16 checkpoint
  dummy_load_case("tiny", true, Numerics::kFp8, false);

  for (int n : {1, 7, 64}) rms_norm_case(n, 7168, n == 7, 0, 0, n < 64);
  rms_norm_case(5, 512, false, 576, 0, true);    // kv_a output: the latent part of a wider row
  rms_norm_case(3, 1536, false, 0, 2112, true);  // output into a wider row
  rms_norm_case(9, 100, true, 0, 0, true);
  embedding_case(1, 1000, 7168);
  embedding_case(17, 129280, 64);
  embedding_case(5, 37, 33);
  rope_case(1, 128, 192, 128, 64, 100);
  rope_case(33, 16, 192, 128, 64, 32768);
  rope_case(7, 1, 576, 512, 64, 4095);
  rope_case(3, 3, 20, 4, 10, 500);
  silu_add_case(5, 18432);
  silu_add_case(3, 1001);
  kv_store_case(1, 37, 64, 576);
  kv_store_case(100, 37, 64, 576);
  kv_store_case(13, 9, 16, 40);
  kv_gather_case({1, 130, 64}, 64, 512, 64);
  kv_gather_case({8192}, 64, 512, 64);
  kv_gather_case({5, 17, 3}, 16, 24, 8);
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
  for (int which : {0, 1}) {
    absorb_case(1, 16, 128, 64, 128, 512, which, true);
    absorb_case(9, 16, 128, 64, 128, 512, which, false);
    absorb_case(4, 3, 24, 8, 16, 40, which, true);
  }
  // mla_prefill: every kernel on the same shapes. Tile edges: 1..5 queries, odd lengths, 64/128 +- 1 (the query
  // tile and the key tile), ragged batches with empty sequences, chunks (q_len < kv_len: the diagonal at an offset
  // that is not a multiple of 64), a peaky softmax, many sequences (the tile map's search), and H = 128 at 1024 and
  // 4096 tokens.
  for (int which : {0, 1, 2}) {
    prefill_case({{1, 1}}, 4, 128, 64, 128, which, true);
    prefill_case({{5, 5}}, 3, 128, 64, 128, which, true);
    prefill_case({{77, 77}}, 2, 128, 64, 128, which, true);
    prefill_case({{130, 130}}, 2, 128, 64, 128, which, true);
    prefill_case({{63, 63}, {64, 64}, {65, 65}, {127, 127}, {128, 128}, {129, 129}}, 2, 128, 64, 128, which, true);
    prefill_case({{37, 37}, {16, 100}, {1, 300}}, 4, 128, 64, 128, which, true);
    prefill_case({{0, 0}, {3, 3}, {0, 40}, {200, 200}, {2, 2}}, 3, 128, 64, 128, which, true);
    prefill_case({{70, 300}, {64, 64}}, 2, 128, 64, 128, which, false);
    prefill_case({{100, 1000}, {1, 513}, {127, 255}, {5, 69}}, 2, 128, 64, 128, which, true);
    prefill_case({{300, 300}, {45, 500}}, 2, 128, 64, 128, which, true, 4.f);
    prefill_case({{64, 4096}}, 2, 128, 64, 128, which, false);
    {
      std::vector<std::pair<int, int>> many;
      for (int s = 0; s < 40; ++s) many.push_back({(s * 37) % 150 + (s % 7 == 0 ? 0 : 1), (s * 37) % 150 + 1 + (s % 3) * 50});
      prefill_case(many, 2, 128, 64, 128, which, true);
    }
    prefill_case({{1024, 1024}}, 128, 128, 64, 128, which, false);
    prefill_case({{20, 33}, {9, 9}}, 3, 24, 8, 40, which, true);  // odd dims: the CUDA-core kernel for every `which`
  }
  prefill_case({{4096, 4096}}, 128, 128, 64, 128, 0, false);
  prefill_case({{512, 4096}, {1024, 1024}}, 128, 128, 64, 128, 0, false);  // a 4096-token chunked prompt + a prompt
  prefill_error_case(0);
  prefill_error_case(1);
  for (int which : {0, 1}) {
    decode_case({1, 63, 64, 65, 1000, 8192}, 16, 512, 64, 64, which, false);
    decode_case({3000, 129}, 128, 512, 64, 64, which, false);
    decode_case({17, 1}, 20, 512, 64, 64, which, true);  // 20 heads: a partial head group
    decode_case({5, 200, 33}, 3, 64, 8, 16, which, true);  // odd dims: the CUDA-core kernel
  }
  router_case({"noaux_tc/sigmoid", 33, 7168, 256, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, false});
  router_case({"noaux_tc/sigmoid", 1, 7168, 256, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, true});
  router_case({"greedy/softmax", 17, 2048, 64, 1, 1, 6, RouterScoring::kSoftmax, RouterTopk::kGreedy, false, 1.f, true});
  router_case({"group_limited/softmax", 9, 5120, 160, 8, 3, 6, RouterScoring::kSoftmax, RouterTopk::kGroupLimitedGreedy, false, 16.f, false});
  router_case({"noaux_tc/softmax-odd", 5, 100, 12, 3, 2, 3, RouterScoring::kSoftmax, RouterTopk::kNoauxTc, true, 1.f, true});
  for (int which : {0, 1}) {
    moe_case(1, 1024, 256, 16, 4, true, which, true);
    moe_case(37, 1024, 512, 16, 4, true, which, false);
    moe_case(11, 256, 96, 8, 3, false, which, true);
  }
}

// ------------------------------------------------------------------------------------------------- perf

double time_it(Backend& gpu, const std::function<void(int)>& fn) {
  fn(0);
  gpu.synchronize();
  double t0 = now_seconds();
  fn(1);
  gpu.synchronize();
  const double one = now_seconds() - t0;
  const int iters = std::clamp(static_cast<int>(0.02 / std::max(one, 1e-6)), 3, 200);
  std::vector<double> samples;
  for (int rep = 0; rep < 5; ++rep) {
    t0 = now_seconds();
    for (int i = 0; i < iters; ++i) fn(i);
    gpu.synchronize();
    samples.push_back((now_seconds() - t0) / iters);
  }
  std::sort(samples.begin(), samples.end());
  return samples[2];
}

// Ceilings measured on the H200 (shared/docs/performance.md).
constexpr double kHbmRead = 4.54e12, kFp8BlockTflops = 1320e12, kBf16Tflops = 810e12;

void perf_linear(Env& env) {
  Backend& gpu = *env.gpu;
  // M <= 16 runs the decode GEMV; "no-gemv" is the same call with it switched off (cuBLASLt, or the fallback kernel
  // where cuBLASLt refuses the shape, e.g. M = 1).
  fmt::print("\n== perf: linear, FP8 block-scaled (GEMV for M <= 16, cuBLASLt above), DeepSeek-V3 shapes ==\n");
  fmt::print("{:<22} {:>5} {:>6} {:>6} {:>9} {:>10} {:>9} {:>7} {:>10} {:>7}\n", "weight", "M", "N", "K", "path",
             "time_us", "TFLOPS", "%1320", "weight_GB/s", "%4540");
  struct Shape3 {
    const char* name;
    int n, k;
  };
  const Shape3 shapes[] = {{"q_a_proj", 1536, 7168},  {"kv_a_proj", 576, 7168},  {"q_b_proj", 24576, 1536},
                           {"kv_b_proj", 32768, 512}, {"o_proj", 7168, 16384},   {"dense_gate_up", 18432, 7168},
                           {"dense_down", 7168, 18432}, {"expert_gate_up", 2048, 7168}, {"expert_down", 7168, 2048}};
  Rng rng(42);
  for (const auto& s : shapes) {
    HostLinear hw = rand_fp8_weight(rng, s.n, s.k, /*tiled=*/true);
    const size_t wbytes = static_cast<size_t>(s.n) * s.k;
    const int copies = static_cast<int>(std::clamp<size_t>((256u << 20) / wbytes + 1, 1, 16));  // rotate past L2
    Dev d(gpu);
    std::vector<LinearWeight> w;
    for (int c = 0; c < copies; ++c) w.push_back(d.weight(hw));
    for (int M : {1, 16, 64, 4096}) {
      Tensor x = tiled_bf16(rng, {M, s.k}, 1.f);
      Dev io(gpu);
      TensorView dx = io.up(x, "x"), dout = io.out(DType::kBF16, {M, s.n}, "out");
      for (int variant = 0; variant < (M <= kGemvRows && env.gpu_nogemv ? 2 : 1); ++variant) {
        Backend& b = variant ? *env.gpu_nogemv : gpu;  // same device: the buffers are shared
        const double t = time_it(b, [&](int i) { b.linear({.x = dx, .w = w[static_cast<size_t>(i % copies)], .out = dout}); });
        const double tflops = 2.0 * M * s.n * s.k / t, gbs = static_cast<double>(wbytes) / t;
        fmt::print("{:<22} {:>5} {:>6} {:>6} {:>9} {:>10.1f} {:>9.1f} {:>6.1f}% {:>10.0f} {:>6.1f}%\n", s.name, M, s.n,
                   s.k, variant ? "no-gemv" : M <= kGemvRows ? "gemv" : "cublaslt", t * 1e6, tflops / 1e12,
                   100 * tflops / kFp8BlockTflops, gbs / 1e9, 100 * gbs / kHbmRead);
      }
    }
  }
  fmt::print("\n== perf: linear, BF16 (cuBLASLt), lm_head 129280 x 7168, f32 logits ==\n");
  {
    HostLinear hw;
    hw.weight = tiled_bf16(rng, {129280, 7168}, 0.01f);
    Dev d(gpu);
    LinearWeight w = d.weight(hw);
    for (int M : {1, 64}) {
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

void perf_decode(Env& env, Backend& gpu, const char* label, const std::vector<int>& ctxs, const std::vector<int>& batches) {
  const int H = 128, entry = 576, rank = 512, bs = 64;
  const int max_ctx = *std::max_element(ctxs.begin(), ctxs.end()), max_b = *std::max_element(batches.begin(), batches.end());
  const int64_t n_blocks = static_cast<int64_t>(max_b) * max_ctx / bs;
  fmt::print("\n== perf: mla_decode ({}), H={}, entry={}, block_size={} ==\n", label, H, entry, bs);
  fmt::print("{:>7} {:>6} {:>10} {:>10} {:>8}\n", "context", "batch", "time_us", "KV_GB/s", "%4540");
  Rng rng(43);
  Dev d(gpu);
  // The cache: one random chunk, replicated on the device (random data; never zeros).
  const int64_t chunk_blocks = 256;
  Tensor chunk = rand_bf16(rng, {chunk_blocks, bs, entry});
  TensorView dchunk = d.up(chunk, "chunk");
  TensorView cache = d.out(DType::kBF16, {n_blocks, bs, entry}, "cache");
  for (int64_t b = 0; b < n_blocks; b += chunk_blocks) {  // device-to-device replication
    const int64_t cnt = std::min(chunk_blocks, n_blocks - b);
    gpu.copy(cache.rows(b, b + cnt), dchunk.rows(0, cnt));
  }
  gpu.synchronize();
  for (int ctx : ctxs) {
    for (int B : batches) {
      const int mb = ctx / bs;
      std::vector<int32_t> perm = shuffled(rng, static_cast<int>(std::min<int64_t>(n_blocks, INT32_MAX)));
      std::vector<int32_t> table(static_cast<size_t>(B) * mb);
      for (size_t i = 0; i < table.size(); ++i) table[i] = perm[i];
      Tensor bt = host_i32({B, mb}, table), lens = host_i32({B}, std::vector<int32_t>(static_cast<size_t>(B), ctx));
      Tensor q = rand_bf16(rng, {B, H, entry}, 0.5f);
      Dev io(gpu);
      MlaDecodeParams p{.q_abs = io.up(q, "q"), .cache = cache, .block_table = io.up(bt, "bt"), .seq_lens = io.up(lens, "lens"),
                        .out = io.out(DType::kBF16, {B, H, rank}, "out"), .kv_lora_rank = rank,
                        .softmax_scale = 0.07f};
      const double t = time_it(gpu, [&](int) { gpu.mla_decode(p); });
      const double gbs = static_cast<double>(B) * ctx * entry * 2 / t;
      fmt::print("{:>7} {:>6} {:>10.1f} {:>10.0f} {:>7.1f}%\n", ctx, B, t * 1e6, gbs / 1e9, 100 * gbs / kHbmRead);
    }
  }
}

// Causal prefill attention at H = 128 (DeepSeek-V3): one 4096-token prompt, 8 prompts of 1024 (the v3-slice
// benchmark's batch) and a 1024-token chunk after 3072 cached tokens, on each kernel. FLOPs are counted exactly:
// Σ over queries of the keys it sees (kv_len - q_len + i + 1) x H x 2 x (192 + 128).
void perf_prefill(Env& env) {
  const int H = 128;
  struct Config {
    const char* name;
    std::vector<std::pair<int, int>> seqs;  // (q_len, kv_len)
  };
  const Config configs[] = {{"1 x 4096", {{4096, 4096}}},
                            {"8 x 1024", std::vector<std::pair<int, int>>(8, {1024, 1024})},
                            {"chunk 1024 @ 4096", {{1024, 4096}}}};
  struct Kernel {
    const char* name;
    Backend* gpu;
  };
  const Kernel kernels[] = {{"mma (128 rows)", env.gpu}, {"mma64 (64 rows)", env.gpu_prefill64},
                            {"simple (CUDA cores)", env.gpu_simple}};
  fmt::print("\n== perf: mla_prefill, H={}, nope 128 + rope 64, v 128, causal ==\n", H);
  fmt::print("{:<18} {:<20} {:>10} {:>9} {:>7} {:>7}\n", "shape", "kernel", "time_ms", "TFLOPS", "%500", "%810");
  Rng rng(44);
  for (const Config& c : configs) {
    std::vector<int32_t> cq{0}, ck{0};
    double flops = 0;
    for (auto [nq, nk] : c.seqs) {
      cq.push_back(cq.back() + nq), ck.push_back(ck.back() + nk);
      for (int i = 0; i < nq; ++i) flops += static_cast<double>(nk - nq + i + 1) * H * 2 * (192 + 128);
    }
    const int nq = cq.back(), nk = ck.back();
    Tensor q = tiled_bf16(rng, {nq, H, 192}, 1.f), kv = tiled_bf16(rng, {nk, H, 256}, 1.f);
    Tensor kpe = rand_bf16(rng, {nk, 64});
    Tensor tcq = host_i32({static_cast<int64_t>(cq.size())}, cq), tck = host_i32({static_cast<int64_t>(ck.size())}, ck);
    for (const Kernel& k : kernels) {
      Backend& gpu = *k.gpu;
      Dev d(gpu);
      MlaPrefillParams p{.q = d.up(q, "q"), .kv = d.up(kv, "kv"), .k_pe = d.up(kpe, "k_pe"), .cu_q = d.up(tcq, "cu_q"),
                         .cu_kv = d.up(tck, "cu_kv"), .out = d.out(DType::kBF16, {nq, H, 128}, "out"),
                         .qk_nope_head_dim = 128, .v_head_dim = 128, .softmax_scale = 0.07f};
      const double t = time_it(gpu, [&](int) { gpu.mla_prefill(p); });
      const double tflops = flops / t / 1e12;
      fmt::print("{:<18} {:<20} {:>10.3f} {:>9.1f} {:>6.1f}% {:>6.1f}%\n", c.name, k.name, t * 1e3, tflops,
                 100 * tflops / 500, 100 * tflops * 1e12 / kBf16Tflops);
    }
  }
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
  std::unique_ptr<Backend> gpu, gpu_fb, gpu_simple, gpu_nogemv, gpu_prefill64;
  if (!self_check) {
    gpu = make_cuda_backend(o);
    o.force_gemm_fallback = true;
    gpu_fb = make_cuda_backend(o);
    o.force_gemm_fallback = false;
    o.simple_mla_decode = o.simple_mla_prefill = true;
    gpu_simple = make_cuda_backend(o);
    o.simple_mla_decode = o.simple_mla_prefill = false;
    o.mla_prefill_q_rows = 64;
    gpu_prefill64 = make_cuda_backend(o);
    o.mla_prefill_q_rows = 128;
    o.no_fp8_gemv = true;
    if (perf) gpu_nogemv = make_cuda_backend(o);
  }
  Env env = self_check ? Env{&cpu, &cpu2, &cpu2, &cpu2, &cpu2, &cpu2}
                       : Env{&cpu, gpu.get(), gpu_fb.get(), gpu_simple.get(), gpu_nogemv.get(), gpu_prefill64.get()};
  try {
    if (perf) {
      if (op_filter.empty() || op_filter == "linear") perf_linear(env);
      if (op_filter.empty() || op_filter == "mla_decode") {
        perf_decode(env, *env.gpu, "tensor cores (WMMA)", {1024, 4096, 16384, 32768}, {1, 8, 32, 128});
        perf_decode(env, *env.gpu_simple, "CUDA cores (simple)", {4096, 32768}, {1, 32});
      }
      if (op_filter.empty() || op_filter == "mla_prefill") perf_prefill(env);
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
