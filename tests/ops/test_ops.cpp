// test_ops.cpp: every op of backend.h run on the CPU reference and on CUDA, compared element by element
// (tests/ops, CTest label gpu). Modes: test (default) and --perf (TFLOPS / GB/s against performance.md's ceilings).
// Filters: -o OP (exact op name), -p REGEX (on "op(vars)"), --quick (the small cases, for compute-sanitizer).
// Each case states its tolerance and why; outputs are poisoned (NaN) and guarded (sentinels) on the device.
// Without a GPU the binary prints SKIP and exits 77 (CTest's skip code).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <numeric>
#include <regex>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dsv3/backend/backend.h"
#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/staged_upload.h"
#include "dsv3/backend/cuda/cuda_backend.h"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/base/sampling.h"
#include "dsv3/base/hash.h"
#include "dsv3/base/numeric.h"
#include "dsv3/base/thread_pool.h"
#include "dsv3/base/timer.h"
#include "dsv3/io/synthetic.h"
#include "dsv3/io/tiny_model.h"
#include "dsv3/io/weight_source.h"
#include "dsv3/model/deepseek_v3.h"
#include "dsv3/model/weights.h"
#include "ops_harness.h"

namespace dsv3::ops_test {
namespace {

struct Env {
  Backend* cpu = nullptr;
  Backend* gpu = nullptr;         // cuBLASLt + mma.sync decode (the production configuration, but DSV3_GEMV=v1)
  Backend* gpu_fb = nullptr;      // own GEMM kernels (DSV3_CUDA_GEMM=fallback)
  Backend* gpu_simple = nullptr;  // CUDA-core mla_decode, mla_prefill (DSV3_MLA_DECODE=simple, DSV3_MLA_PREFILL=simple)
  Backend* gpu_nogemv = nullptr;  // production without the FP8 decode GEMV (DSV3_CUDA_FP8_GEMV=0), for --perf
  Backend* gpu_wmma = nullptr;    // WMMA mla_decode (DSV3_MLA_DECODE=wmma)
  Backend* gpu_moe_loop = nullptr;     // production with DSV3_MOE=loop (per-expert linear() calls)
  Backend* gpu_moe_grouped = nullptr;  // production with DSV3_MOE=grouped (moe_grouped.cu at every batch size)
  Backend* gpu_prefill64 = nullptr;  // tensor-core mla_prefill with 64 query rows per CTA (DSV3_MLA_PREFILL=mma64)
  Backend* gpu_p_bf16 = nullptr;       // P in bf16 in the tensor-core MLA kernels (DSV3_MLA_P_BF16=1), 64-head decode
  Backend* gpu_wmma_p_bf16 = nullptr;  // WMMA mla_decode with P in bf16
  bool p_bf16 = false;                 // DSV3_MLA_P_BF16=1 was set: every backend above rounds P to bf16
  Backend* gpu_gemv2 = nullptr;        // production (DSV3_GEMV=v2, the default: gemv_fp8_v2.cu for FP8 linears of 1..8 rows)
  Backend* gpu_moe_decode = nullptr;   // production with DSV3_MOE=decode (moe_decode.cu up to 128 entries)
  Backend* gpu_ref = nullptr;          // reference numerics (DSV3_NUMERICS=reference): bitwise the CPU's
  Backend* gpu_mma16 = nullptr;        // mla_decode: the 16-head kernel at every batch size (DSV3_MLA_DECODE=mma16)
  Backend* gpu_mma64 = nullptr;        // mla_decode: the 64-head kernel at every batch size (DSV3_MLA_DECODE=mma)
  Backend* gpu_mma16_split64 = nullptr;   // mma16 with pieces of 64 keys (DSV3_MLA_DECODE_SPLIT=64)
  Backend* gpu_mma16_split192 = nullptr;  // mma16 with pieces of 192 keys (3 tiles per CTA)
  Backend* gpu_mma16_p_bf16 = nullptr;    // mma16 with P rounded to bf16 (DSV3_MLA_P_BF16=1)
  Backend* gpu_absorb_slice = nullptr;    // mla_absorb_q/v: the slice kernels at every token count (DSV3_MLA_ABSORB=slice)
  Backend* gpu_absorb_tile = nullptr;     // ... the token-tile kernels at every token count (DSV3_MLA_ABSORB=tile)
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
// Tensor-core attention (mla_prefill_mma.cu, mla_decode_mma.cu, mla_decode_wmma.cu) with P split into bf16 hi + lo:
// P enters P·V as P (1 + d), |d| <= 2^-16 (mma_sm80.cuh), the products with bf16 V are exact, and everything else is
// fp32 in another order than the reference's sequential sums. Both outputs are then rounded to bf16, so per element
// (within_attn_bound) |got - ref| <= ulp(max(|got|, |ref|)) + 2^-12 · Σ_t w_t |v_t|: one bf16 step where the two
// fp32 values straddle a rounding boundary, plus their difference, which is relative to Σ w|v| (not to |out|: an
// output that cancels keeps the absolute error of its terms): 2^-16 from P, the rest from fp32 sums over up to 8192
// keys, random-walk ~sqrt(n) · 2^-24 each (n · 2^-24 only if every rounding had the same sign). 2^-12 = 16x the
// split's own 2^-16. dev/kernels/mla_p_split_numerics.py (both computations in numpy, the tensor core's accumulation
// modelled pessimistically: every term truncated to the largest one's 24-bit grid) measures at 300 to 8192 keys at
// most 0.2 · 2^-16 Σ w|v| beyond one step, 0.1-0.3% of the outputs one step apart, NMSE 3e-9 .. 1.5e-8 — and for P
// rounded to bf16 (DSV3_MLA_P_BF16=1) 6-150 · 2^-16, 18-41% of the outputs apart (4-12% by 2+ steps), NMSE 1.3-6e-6.
// This Tol: one bf16 step (2^-7 relative) plus 0.4% of the rms per element; NMSE 3e-7, 20x the model's worst split
// and 4x below its best P in bf16 (1 - cos is half the NMSE).
const Tol kTolAttnSplit{.atol = 0, .rtol = 1.0 / 128, .atol_rms = 4e-3, .min_cos = 0.99999985, .max_nmse = 3e-7};
// The same kernels with P rounded to bf16 (DSV3_MLA_P_BF16=1: the former numerics, kept for measurement).
// Decode (mma and wmma): relative 2^-9 per weight, averaging out over the keys; measured in a numpy emulation of the
// mma kernel: ~1.4e-3 relative rms against an fp64 softmax.
const Tol kTolDecodePBf16{.atol = 0, .rtol = 1.0 / 32, .atol_rms = 1e-2, .min_cos = 0.9999, .max_nmse = 1e-4};
// Prefill: the row sum keeps the fp32 values, so out = Σ_t w_t (1 + δ_t) v_t with |δ_t| <= u = 2^-8, rounded once to
// bf16 like the reference: per element |got - ref| <= u · (Σ_t w_t |v_t| + 2 |ref|), which prefill_case checks
// exactly (within_attn_bound). On top, this Tol's statistics: NMSE 1-6e-6 (mla_p_split_numerics.py) from 300 to
// 4096 tokens. Its per-element slack is 5% of the rms, not 1%: the first rows of a long prompt see few keys, so their
// outputs (and their ~u·|o| errors) are several times the tensor's rms.
const Tol kTolPrefillPBf16{.atol = 0, .rtol = 1.0 / 32, .atol_rms = 5e-2, .min_cos = 0.99999, .max_nmse = 2e-5};
// MoE: two GEMMs in a chain with bf16 intermediates. Where the first GEMM's result differs by a bf16 ulp, the FP8
// re-quantization of the down projection's input can move a code by one e4m3 step (12.5%) — for ~1-2% of the
// inputs, so ~1% relative error in the output is expected from a correct kernel; bf16 weights flip only bf16 ulps.
const Tol kTolMoeFp8{.atol = 0, .rtol = 0.1, .atol_rms = 0.1, .min_cos = 0.999, .max_nmse = 5e-4};
const Tol kTolMoeBf16{.atol = 0, .rtol = 1.0 / 32, .atol_rms = 1e-2, .min_cos = 0.9999, .max_nmse = 1e-4};
const Tol kBitwise{.bitwise = true};

// Reference numerics (CudaBackendOptions::reference_numerics, DSV3_NUMERICS=reference): every op must give the CPU
// reference's outputs BIT FOR BIT — bf16, fp32 and i32 outputs compared as bits (kBitwise: max |gpu - cpu| == 0), no
// tolerance — because both sides run the same functions (backend/ref_math.h) in the same order. The cases take
// random inputs (never zero), odd sizes, one token, shuffled block tables, FP8 and bf16 weights; their vars start
// with "refnum", so `test_ops -p refnum` runs exactly them. The ops that keep their kernels in this mode (embedding,
// the KV cache ops, fill_token_ids, greedy sample) are checked on the same backend.
const char* refnum_tag(bool refnum) { return refnum ? "refnum," : ""; }

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

// in_place (refnum only): out is x itself (x_stride == out_stride), as the model's q_a / kv_a norms run.
void rms_norm_case(int n, int dim, bool residual, int x_stride, int out_stride, bool quick, bool refnum = false,
                   bool in_place = false) {
  add_case("rms_norm", fmt::format("{}n={},dim={},residual={},x_stride={},out_stride={}{}", refnum_tag(refnum), n, dim,
                                   residual, x_stride, out_stride, in_place ? ",in_place" : ""),
           quick, [=](Env& env) {
             Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
             Rng rng(1000 + n * 7 + dim + (refnum ? 50000 : 0));
             const int xs = x_stride ? x_stride : dim, os = out_stride ? out_stride : dim;
             Tensor x = rand_bf16(rng, {n, xs}), w = rand_bf16(rng, {dim}, 0.5f);
             Tensor res = residual ? rand_bf16(rng, {n, dim}) : Tensor();
             Tensor out = rand_bf16(rng, {n, os});  // rows wider than dim keep their other columns
             Dev d(gpu);
             TensorView dx = d.up(x, "x"), dw = d.up(w, "weight"), dres = residual ? d.up(res, "residual") : TensorView{};
             TensorView dout = in_place ? dx : out_stride ? d.up(out, "out") : d.out(DType::kBF16, {n, os}, "out");
             env.cpu->rms_norm({.x = x, .x_stride = x_stride, .residual = res.view(), .weight = w,
                                .out = in_place ? x.view() : out.view(), .out_stride = out_stride});
             gpu.rms_norm({.x = dx, .x_stride = x_stride, .residual = dres, .weight = dw, .out = dout,
                           .out_stride = out_stride});
             bool ok = compare("out", in_place ? x : out, d.get(dout), refnum ? kBitwise : kTolBf16Ulp);
             if (residual) ok &= compare("residual", res, d.get(dres), kBitwise);  // bf16(res + x): one rounding
             return ok && d.guards_ok;
           });
}

// out = x (the model normalizes q_a's output in place): the register-resident kernel reads the whole row before
// its block-wide sum, so no element is overwritten before it is read.
void rms_norm_inplace_case(int n, int dim) {
  add_case("rms_norm", fmt::format("n={},dim={},in_place", n, dim), true, [=](Env& env) {
    Rng rng(1500 + n + dim);
    Tensor x = rand_bf16(rng, {n, dim}), w = rand_bf16(rng, {dim}, 0.5f);
    Dev d(*env.gpu);
    TensorView dx = d.up(x, "x"), dw = d.up(w, "weight");
    env.cpu->rms_norm({.x = x, .weight = w, .out = x});
    env.gpu->rms_norm({.x = dx, .weight = dw, .out = dx});
    return compare("out", x, d.get(dx), kTolBf16Ulp) && d.guards_ok;
  });
}

void embedding_case(int n, int vocab, int dim, bool refnum = false) {
  add_case("embedding", fmt::format("{}n={},vocab={},d={}", refnum_tag(refnum), n, vocab, dim), true, [=](Env& env) {
    Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
    Rng rng(2000 + n);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = rng.uniform_int(0, vocab - 1);
    if (n > 2) ids[1] = ids[0];  // repeated ids
    Tensor tid = host_i32({n}, ids), table = rand_bf16(rng, {vocab, dim}), out(DType::kBF16, {n, dim});
    Dev d(gpu);
    TensorView dout = d.out(DType::kBF16, {n, dim}, "out");
    env.cpu->embedding({.ids = tid, .table = table, .out = out});
    gpu.embedding({.ids = d.up(tid, "ids"), .table = d.up(table, "table"), .out = dout});
    return compare("out", out, d.get(dout), kBitwise) && d.guards_ok;  // a row copy
  });
}

void rope_case(int n, int heads, int stride, int offset, int rope_dim, int max_pos, bool refnum = false) {
  add_case("rope", fmt::format("{}n={},heads={},stride={},offset={},rope_dim={},max_pos={}", refnum_tag(refnum), n,
                               heads, stride, offset, rope_dim, max_pos),
           true, [=](Env& env) {
             Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
             Rng rng(3000 + n + heads);
             Tensor x = rand_bf16(rng, {n, heads, stride});
             std::vector<int32_t> pos(static_cast<size_t>(n));
             for (auto& p : pos) p = rng.uniform_int(0, max_pos);
             std::vector<float> f(static_cast<size_t>(rope_dim / 2));
             for (size_t i = 0; i < f.size(); ++i)  // 10000^(-2i/d), YaRN-like damping on the low frequencies
               f[i] = static_cast<float>(std::pow(10000.0, -2.0 * static_cast<double>(i) / rope_dim) / (i < 4 ? 40.0 : 1.0));
             Tensor tpos = host_i32({n}, pos), tf = make_host_tensor(DType::kF32, {rope_dim / 2}, f.data());
             Dev d(gpu);
             TensorView dx = d.up(x, "x");
             env.cpu->rope({.x = x, .positions = tpos, .inv_freq = tf, .offset = offset});
             gpu.rope({.x = dx, .positions = d.up(tpos, "positions"), .inv_freq = d.up(tf, "inv_freq"),
                       .offset = offset});
             // Both use ref::sincos; the fast kernel's products may round differently: one bf16 step at most.
             return compare("x", x, d.get(dx), refnum ? kBitwise : kTolBf16Ulp) && d.guards_ok;
           });
}

// gate_std: 3 in the model's range; refnum adds 40 (exp far into its tails: e^-g overflows for g < -88.7, underflows
// to subnormals and 0 for g > 87).
void silu_add_case(int rows, int cols, bool refnum = false, float gate_std = 3.f) {
  add_case("silu_mul", fmt::format("{}rows={},cols={},gate_std={}", refnum_tag(refnum), rows, cols, gate_std), true,
           [=](Env& env) {
    Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
    Rng rng(4000 + rows);
    Tensor g = rand_bf16(rng, {rows, cols}, gate_std), u = rand_bf16(rng, {rows, cols}), out(DType::kBF16, {rows, cols});
    Dev d(gpu);
    TensorView dout = d.out(DType::kBF16, {rows, cols}, "out");
    env.cpu->silu_mul({.gate = g, .up = u, .out = out});
    gpu.silu_mul({.gate = d.up(g, "gate"), .up = d.up(u, "up"), .out = dout});
    return compare("out", out, d.get(dout), refnum ? kBitwise : kTolBf16Ulp) && d.guards_ok;  // fast: an exp ulp
  });
  add_case("add", fmt::format("{}rows={},cols={}", refnum_tag(refnum), rows, cols), true, [=](Env& env) {
    Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
    Rng rng(4500 + rows);
    Tensor a = rand_bf16(rng, {rows, cols}), b = rand_bf16(rng, {rows, cols}), out(DType::kBF16, {rows, cols});
    Dev d(gpu);
    TensorView dout = d.out(DType::kBF16, {rows, cols}, "out");
    env.cpu->add({.a = a, .b = b, .out = out});
    gpu.add({.a = d.up(a, "a"), .b = d.up(b, "b"), .out = dout});
    return compare("out", out, d.get(dout), kBitwise) && d.guards_ok;  // one fp32 add, one rounding
  });
}

std::vector<int32_t> shuffled(Rng& rng, int n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  std::shuffle(v.begin(), v.end(), rng.gen());
  return v;
}

void kv_store_case(int n, int n_blocks, int bs, int entry, bool refnum = false) {
  add_case("kv_cache_store", fmt::format("{}n={},n_blocks={},block_size={},entry={}", refnum_tag(refnum), n, n_blocks,
                                         bs, entry),
           true, [=](Env& env) {
             Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
             Rng rng(5000 + n);
             Tensor kv = rand_bf16(rng, {n, entry}), cache = rand_bf16(rng, {n_blocks, bs, entry});
             std::vector<int32_t> perm = shuffled(rng, n_blocks * bs);
             perm.resize(static_cast<size_t>(n));  // distinct slots in shuffled blocks
             Tensor slots = host_i32({n}, perm);
             Dev d(gpu);
             TensorView dcache = d.up(cache, "cache");
             env.cpu->kv_cache_store({.kv_new = kv, .cache = cache, .slots = slots});
             gpu.kv_cache_store({.kv_new = d.up(kv, "kv_new"), .cache = dcache, .slots = d.up(slots, "slots")});
             return compare("cache", cache, d.get(dcache), kBitwise) && d.guards_ok;  // data movement
           });
}

void kv_gather_case(std::vector<int> lens, int bs, int rank, int rope, bool refnum = false) {
  std::string v;
  for (int l : lens) v += fmt::format("{}{}", v.empty() ? "" : "/", l);
  const bool quick = std::accumulate(lens.begin(), lens.end(), 0) < 2000;
  add_case("kv_cache_gather", fmt::format("{}lens={},block_size={},rank={},rope={}", refnum_tag(refnum), v, bs, rank,
                                          rope),
           quick, [=](Env& env) {
             Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
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
             Dev d(gpu);
             TensorView dlat = d.out(DType::kBF16, {n_kv, rank}, "latent_out"), dpe = d.out(DType::kBF16, {n_kv, rope}, "pe_out");
             env.cpu->kv_cache_gather({.cache = cache, .block_table = bt, .cu_kv = tcu, .latent_out = lat, .pe_out = pe});
             gpu.kv_cache_gather({.cache = d.up(cache, "cache"), .block_table = d.up(bt, "block_table"),
                                       .cu_kv = d.up(tcu, "cu_kv"), .latent_out = dlat, .pe_out = dpe});
             bool ok = compare("latent_out", lat, d.get(dlat), kBitwise);
             ok &= compare("pe_out", pe, d.get(dpe), kBitwise);
             return ok && d.guards_ok;
           });
}

// Linear: `which` picks the backend (0 production with DSV3_GEMV=v1, 1 fallback kernels, 2 reference numerics, 3
// production with DSV3_GEMV=v2, the default). Production
// runs FP8 weights with at most kGemvRows rows through the decode GEMV (gemv_fp8.cu), larger ones through cuBLASLt
// (or the fallback it rejects); with v2, FP8 weights with at most 8 rows and k % 16 == 0 run gemv_fp8_v2.cu.
constexpr int kGemvRows = 16;
// fill_token_ids, the overlap scheduler's hand-off: ids[map[j][0]] = src[map[j][1]], a negative source (a sampler
// failure code) written as 0. Rows distinct and shuffled, sources repeated, ~10% failure codes; one pair, a subset,
// every row, more pairs than one thread block. The expected ids are worked out here, and both backends must give
// them bit for bit; rows outside the map keep their ids (and the guards catch a write beyond ids).
void fill_token_ids_case(int n, int m, int k, bool refnum = false) {
  add_case("fill_token_ids", fmt::format("{}n={},m={},k={}", refnum_tag(refnum), n, m, k), true, [=](Env& env) {
    Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
    Rng rng(9000 + static_cast<uint64_t>(n) * 7 + m);
    std::vector<int32_t> ids(static_cast<size_t>(n)), src(static_cast<size_t>(k)), map;
    for (auto& v : ids) v = rng.uniform_int(0, 129279);
    for (auto& v : src) {
      const int c = rng.uniform_int(0, 19);
      v = c == 0 ? kSampleInvalidLogits : c == 1 ? kSampleAllMasked : rng.uniform_int(0, 129279);
    }
    const std::vector<int32_t> rows = shuffled(rng, n);
    std::vector<int32_t> want = ids;
    for (int j = 0; j < m; ++j) {
      const int32_t row = rows[static_cast<size_t>(j)], idx = rng.uniform_int(0, k - 1);
      map.push_back(row);
      map.push_back(idx);
      want[static_cast<size_t>(row)] = std::max(src[static_cast<size_t>(idx)], 0);
    }
    Tensor tids = host_i32({n}, ids), tsrc = host_i32({k}, src), tmap = host_i32({m, 2}, map);
    Tensor twant = host_i32({n}, want);
    Dev d(gpu);
    TensorView dids = d.up(tids, "ids");
    gpu.fill_token_ids({.ids = dids, .map = d.up(tmap, "map"), .src = d.up(tsrc, "src")});
    env.cpu->fill_token_ids({.ids = tids, .map = tmap, .src = tsrc});
    bool ok = compare("ids (cpu)", twant, tids, kBitwise);
    ok &= compare("ids", twant, d.get(dids), kBitwise);  // data movement
    return ok && d.guards_ok;
  });
}

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

// which: 0 the default backend (slice kernels up to kAbsorbSliceMaxTokens tokens, token tiles beyond), 1 the fallback
// GEMM (DSV3_CUDA_GEMM=fallback), 2 the slice kernels forced (DSV3_MLA_ABSORB=slice: > 8 tokens in tiles of 8 inside
// one CTA), 3 the token-tile kernels forced (=tile), 4 reference numerics (refnum). The case name says which kernel
// runs; every one sums in the reference's order, so all are bitwise (cuBLASLt runs only shapes no kernel takes:
// absorb_v's kTolGemmBf16).
void absorb_case(int n, int H, int nope, int rope, int vd, int rank, int which, bool quick) {
  const bool q_slice = cuda::absorb_q_slice_supported(rank, nope, rope), v_slice = cuda::absorb_v_slice_supported(rank, vd);
  const bool v_tile = cuda::absorb_v_kernel_supported(rank, vd), q_tile = cuda::absorb_q_kernel_supported(rank, nope, rope);
  auto path = [&](bool slice_ok, bool tile_ok) -> std::string {
    if (which == 1) return "fallback";
    if (which == 4) return "reference";
    const bool slice = slice_ok && (which == 2 || (which == 0 && n <= cuda::kAbsorbSliceMaxTokens));
    return fmt::format("{}{}", which == 0 ? "default, " : which == 2 ? "forced slice, " : "forced tile, ",
                       slice ? "slice kernel" : tile_ok ? "tile kernel" : "cuBLASLt");
  };
  auto backend = [which](Env& env) -> Backend& {
    return which == 1   ? *env.gpu_fb
           : which == 2 ? *env.gpu_absorb_slice
           : which == 3 ? *env.gpu_absorb_tile
           : which == 4 ? *env.gpu_ref
                        : *env.gpu;
  };
  const std::string dims =
      fmt::format("{}n={},H={},nope={},rope={},v={},rank={}", refnum_tag(which == 4), n, H, nope, rope, vd, rank);
  add_case("mla_absorb_q", fmt::format("{},path={}", dims, path(q_slice, q_tile)), quick, [=](Env& env) {
    Backend& gpu = backend(env);
    Rng rng(8000 + n + H);
    Tensor q = rand_bf16(rng, {n, H, nope + rope}), kvb = rand_bf16(rng, {H * (nope + vd), rank}, 0.05f);
    Tensor qa(DType::kBF16, {n, H, rank + rope});
    Dev d(gpu);
    TensorView dqa = d.out(DType::kBF16, {n, H, rank + rope}, "q_abs");
    env.cpu->mla_absorb_q({.q = q, .kv_b = kvb, .q_abs = qa, .qk_nope_head_dim = nope, .v_head_dim = vd});
    gpu.mla_absorb_q({.q = d.up(q, "q"), .kv_b = d.up(kvb, "kv_b"), .q_abs = dqa, .qk_nope_head_dim = nope, .v_head_dim = vd});
    // Every path sums in the reference's order: the slice and token-tile kernels (mla_absorb.cu) and the fallback GEMM.
    return compare("q_abs", qa, d.get(dqa), kBitwise) && d.guards_ok;
  });
  add_case("mla_absorb_v", fmt::format("{},path={}", dims, path(v_slice, v_tile)), quick, [=](Env& env) {
    Backend& gpu = backend(env);
    Rng rng(8500 + n + H);
    Tensor o = rand_bf16(rng, {n, H, rank}), kvb = rand_bf16(rng, {H * (nope + vd), rank}, 0.05f);
    Tensor out(DType::kBF16, {n, H, vd});
    Dev d(gpu);
    TensorView dout = d.out(DType::kBF16, {n, H, vd}, "out");
    env.cpu->mla_absorb_v({.o_latent = o, .kv_b = kvb, .out = out, .qk_nope_head_dim = nope, .v_head_dim = vd});
    gpu.mla_absorb_v({.o_latent = d.up(o, "o_latent"), .kv_b = d.up(kvb, "kv_b"), .out = dout, .qk_nope_head_dim = nope,
                      .v_head_dim = vd});
    const bool slice = v_slice && which != 1 && which != 3 && (which == 2 || n <= cuda::kAbsorbSliceMaxTokens);
    return compare("out", out, d.get(dout), which == 1 || slice || v_tile ? kBitwise : kTolGemmBf16) && d.guards_ok;
  });
}

double ulp_bf16(double x) {  // the spacing of bf16 values at |x| (8 significant bits)
  int e = 0;
  std::frexp(std::max(std::fabs(x), 0x1p-126), &e);
  return std::ldexp(1.0, e - 8);
}

// The per-element bounds of the tensor-core attention kernels on [rows, heads, width] bf16 outputs, abs_wv[i] =
// Σ_t w_t |v_t| of element i: with the P split (kTolAttnSplit), |got - ref| <= ulp(max(|got|, |ref|)) + 2^-12 Σ w|v|;
// with P in bf16 (kTolPrefillPBf16), |got - ref| <= 1.1 · 2^-8 · (Σ w|v| + 2 |ref|). The split prints how many
// elements differ at all (a few tenths of a percent expected; 18-41% with P in bf16).
bool within_attn_bound(const Tensor& ref, const Tensor& got, const std::vector<float>& abs_wv, bool split_p) {
  const int64_t n = ref.numel();
  CHECK(got.numel() == n && static_cast<int64_t>(abs_wv.size()) == n, "within_attn_bound: sizes");
  int64_t bad = 0, first = -1, worst = -1, unequal = 0;
  double worst_ratio = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double r = bf16_to_f32(ref.as<const bf16>()[i]), g = bf16_to_f32(got.as<const bf16>()[i]);
    const double awv = abs_wv[static_cast<size_t>(i)];
    const double lim = split_p ? ulp_bf16(std::max(std::fabs(g), std::fabs(r))) + std::ldexp(awv, -12)
                               : 1.1 * std::ldexp(1.0, -8) * (awv + 2 * std::fabs(r)) + 1e-6;
    const double ratio = std::isfinite(g) ? std::fabs(g - r) / lim : 1e30;
    unequal += g != r;
    if (ratio > 1) {
      ++bad;
      if (first < 0) first = i;
    }
    if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  const char* name = split_p ? "split-P" : "P-rounding";
  if (split_p)
    fmt::print("    out: {:.3f}% of {} elements differ; {} bound: worst {:.3g}x\n",
               100.0 * static_cast<double>(unequal) / static_cast<double>(n ? n : 1), n, name, worst_ratio);
  if (bad == 0) return true;
  const int64_t heads = ref.shape()[1], width = ref.shape()[2];
  auto at = [&](int64_t i) {
    return fmt::format("[{}, {}, {}]: ref {:.8g} got {:.8g} sum w|v| {:.6g}", i / (heads * width), i / width % heads,
                       i % width, bf16_to_f32(ref.as<const bf16>()[i]), bf16_to_f32(got.as<const bf16>()[i]),
                       abs_wv[static_cast<size_t>(i)]);
  };
  fmt::print("    out: {} of {} elements outside the {} bound; first at {}\n", bad, n, name, at(first));
  fmt::print("    worst at {} ({:.3g}x the bound)\n", at(worst), worst_ratio);
  return false;
}

double nmse_bf16(const Tensor& ref, const Tensor& got) {  // Σ (got - ref)² / Σ ref²
  double num = 0, den = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = bf16_to_f32(ref.as<const bf16>()[i]), g = bf16_to_f32(got.as<const bf16>()[i]);
    num += (g - r) * (g - r), den += r * r;
  }
  return den > 0 ? num / den : num;
}

// The long-context cases run twice on the same inputs: split (kTolAttnSplit) and P in bf16. The latter must pass its
// own Tol and fail kTolAttnSplit's NMSE (measured ~4e-6 against 3e-7), which shows in every run that the split's
// tolerance tells the two numerics apart.
bool split_tol_rejects(const Tensor& ref, const Tensor& got) {
  const double nmse = nmse_bf16(ref, got);
  const bool rejected = nmse > kTolAttnSplit.max_nmse;
  fmt::print("    P in bf16: NMSE {:.3e} {} kTolAttnSplit's {:.1e}{}\n", nmse, rejected ? ">" : "<=",
             kTolAttnSplit.max_nmse, rejected ? "" : ": the split's tolerance no longer tells P in bf16 apart");
  return rejected;
}

// Sequences given as (queries, keys) pairs: keys >= queries; a chunked prefill has keys > queries (the earlier chunks
// are in the cache: kv and k_pe hold all keys, q only the new queries). which: 0 production (the tensor-core kernel,
// 128 query rows per CTA, for nope 128 / rope 64 / v 128; other dims fall back to the CUDA-core kernel), 1 the
// CUDA-core kernel (DSV3_MLA_PREFILL=simple), 2 the tensor-core kernel with 64 query rows (DSV3_MLA_PREFILL=mma64),
// 3 the tensor-core kernel with P rounded to bf16 (DSV3_MLA_P_BF16=1). The tensor-core kernels split P into bf16
// hi + lo (kTolAttnSplit) unless DSV3_MLA_P_BF16=1 is set, under which their cases with more than a few keys fail.
// q_std scales the queries: scores of std ~q_std, so 4 makes the softmax peaky and moves the running max often.
// With more than 16 heads the GPU runs all of them and the CPU reference 4 of them (the first two, a middle one, the
// last: a head enters the kernel only through its offsets), which keeps the reference's time in seconds for H = 128
// at 4096 tokens.
void prefill_case(std::vector<std::pair<int, int>> seqs, int H, int nope, int rope, int vd, int which, bool quick,
                  float q_std = 1.f) {
  std::string v;
  for (auto [q, k] : seqs) v += fmt::format("{}{}:{}", v.empty() ? "" : "/", q, k);
  if (seqs.size() > 6) v = fmt::format("{}_seqs", seqs.size());  // their lengths: register_cases()
  const char* kernel =
      which == 1 ? "simple" : which == 2 ? "mma64" : which == 3 ? "mma-pbf16" : which == 4 ? "reference" : "default";
  add_case("mla_prefill", fmt::format("{}seqs={},H={},nope={},rope={},v={},q_std={},kernel={}", refnum_tag(which == 4),
                                      v, H, nope, rope, vd, q_std, kernel),
           quick, [=](Env& env) {
    Backend& gpu = which == 1   ? *env.gpu_simple
                   : which == 2 ? *env.gpu_prefill64
                   : which == 3 ? *env.gpu_p_bf16
                   : which == 4 ? *env.gpu_ref
                                : *env.gpu;
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
    if (which == 4) return compare("out", out, got_ref, kBitwise) && d.guards_ok;
    const bool mma = which != 1 && nope == 128 && rope == 64 && vd == 128;
    if (!mma) return compare("out", out, got_ref, kTolAttn) && d.guards_ok;
    const bool split_p = which != 3;
    bool ok = compare("out", out, got_ref, split_p ? kTolAttnSplit : kTolPrefillPBf16);
    // The per-element bound of the Tol's comment: Σ_t w_t |v_t| is the reference's output for |v| (its own bf16
    // rounding moves the bound by 2^-8 of itself).
    for (int64_t e = 0; e < kv_ref.numel(); ++e)
      if (e % kvd >= nope) kv_ref.as<bf16>()[e].bits &= 0x7fff;
    Tensor abs_out(DType::kBF16, {nq, hs, vd});
    p.out = abs_out;
    env.cpu->mla_prefill(p);
    std::vector<float> abs_wv(static_cast<size_t>(abs_out.numel()));
    for (size_t i = 0; i < abs_wv.size(); ++i) abs_wv[i] = bf16_to_f32(abs_out.as<const bf16>()[i]);
    ok &= within_attn_bound(out, got_ref, abs_wv, split_p);
    if (!split_p && nk >= 4096 && !gpu.host_visible()) ok &= split_tol_rejects(out, got_ref);  // not --self-check
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

// Σ_t w_t |v_t| of mla_decode per output element [n, H, rank], in float64 from the inputs (w: the softmax weights of
// the row's keys, v: the first rank columns of their cache entries): the scale of within_attn_bound. The CPU
// reference cannot give it as prefill_case's does: |v| would change the keys too.
std::vector<float> decode_abs_wv(const Tensor& q, const Tensor& cache, const std::vector<int32_t>& table,
                                 int max_blocks, const std::vector<int>& lens, int rank, float scale) {
  const int64_t n = q.shape()[0], H = q.shape()[1], entry = q.shape()[2], bs = cache.shape()[1];
  std::vector<float> out(static_cast<size_t>(n * H * rank));
  parallel_for(n * H, [&](int64_t b, int64_t e) {
    std::vector<double> w, acc(static_cast<size_t>(rank));
    for (int64_t job = b; job < e; ++job) {
      const int64_t t = job / H, len = lens[static_cast<size_t>(t)];
      const bf16* qr = q.as<const bf16>() + job * entry;
      auto key = [&](int64_t k) {
        const int64_t block = table[static_cast<size_t>(t * max_blocks + k / bs)];
        return cache.as<const bf16>() + (block * bs + k % bs) * entry;
      };
      w.assign(static_cast<size_t>(len), 0.0);
      double mx = -INFINITY, sum = 0;
      for (int64_t k = 0; k < len; ++k) {
        const bf16* kr = key(k);
        double dot = 0;
        for (int64_t c = 0; c < entry; ++c) dot += static_cast<double>(bf16_to_f32(qr[c])) * bf16_to_f32(kr[c]);
        w[static_cast<size_t>(k)] = dot * scale;
        mx = std::max(mx, dot * scale);
      }
      for (double& x : w) sum += (x = std::exp(x - mx));
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t k = 0; k < len; ++k) {
        const bf16* kr = key(k);
        const double wk = w[static_cast<size_t>(k)];
        for (int64_t c = 0; c < rank; ++c) acc[static_cast<size_t>(c)] += wk * std::fabs(bf16_to_f32(kr[c]));
      }
      float* o = out.data() + job * rank;
      for (int64_t c = 0; c < rank; ++c) o[c] = static_cast<float>(acc[static_cast<size_t>(c)] / sum);
    }
  });
  return out;
}

// Rows with their own context lengths over one shuffled pool of cache blocks, on the backend that selects `kernel`
// (DSV3_MLA_DECODE). The case name says which kernel runs, as CudaBackend::mla_decode picks it: auto (the default)
// takes mma16 (entry 576, rank 512, H % 16 == 0) while rows x H <= 256, then mma (H % 64 == 0), then wmma (entry 576,
// rank 512), then simple; a forced kernel falls back the same way. The tensor-core kernels split P into bf16 hi + lo
// (kTolAttnSplit); "-pbf16" marks them with P rounded to bf16 (DSV3_MLA_P_BF16=1, kTolDecodePBf16). With
// DSV3_MLA_P_BF16=1 set, the split cases with more than a few keys fail. extra_blocks widens the block table beyond
// the longest row (unused entries -1), as a captured CUDA graph's table is max_seq_len wide: the host then sizes the
// splits for that width and each row cuts its own length into them (mla_decode_common.cuh decode_row).
enum class DecodeWhich { kDefault, kSimple, kWmma, kPBf16, kWmmaPBf16, kMma64, kMma16, kMma16Split64, kMma16Split192,
                         kMma16PBf16, kReference };
void decode_case(std::vector<int> lens, int H, int rank, int rope, int bs, DecodeWhich which, bool quick,
                 int extra_blocks = 0) {
  std::string v;
  for (int l : lens) v += fmt::format("{}{}", v.empty() ? "" : "/", l);
  if (v.size() > 60) v = fmt::format("{} rows of {}..{}", lens.size(), *std::min_element(lens.begin(), lens.end()),
                                     *std::max_element(lens.begin(), lens.end()));
  const int entry = rank + rope, n_rows = static_cast<int>(lens.size());
  const bool wmma_ok = entry == 576 && rank == 512, mma_ok = wmma_ok && H % 64 == 0, mma16_ok = wmma_ok && H % 16 == 0;
  const bool p_bf16 = which == DecodeWhich::kPBf16 || which == DecodeWhich::kWmmaPBf16 || which == DecodeWhich::kMma16PBf16;
  const std::string kernel = [&]() -> std::string {
    const std::string pb = p_bf16 ? "-pbf16" : "";
    if (which == DecodeWhich::kReference) return "reference";
    if (which == DecodeWhich::kSimple || !wmma_ok) return "simple";
    if (which == DecodeWhich::kWmma || which == DecodeWhich::kWmmaPBf16) return "wmma" + pb;
    const bool want16 = which == DecodeWhich::kMma16 || which == DecodeWhich::kMma16Split64 ||
                        which == DecodeWhich::kMma16Split192 || which == DecodeWhich::kMma16PBf16 ||
                        (which == DecodeWhich::kDefault && static_cast<int64_t>(n_rows) * H <= 256);
    if (want16 && mma16_ok) {
      return "mma16" + pb + (which == DecodeWhich::kMma16Split64    ? "-split64"
                             : which == DecodeWhich::kMma16Split192 ? "-split192"
                                                                    : "");
    }
    return (mma_ok ? "mma" : "wmma") + pb;
  }();
  add_case("mla_decode", fmt::format("{}lens={},H={},rank={},rope={},block_size={},kernel={}{}",
                                     refnum_tag(which == DecodeWhich::kReference), v, H, rank, rope, bs, kernel,
                                     extra_blocks ? fmt::format(",table+{}", extra_blocks) : ""),
           quick, [=](Env& env) {
             Backend& gpu = which == DecodeWhich::kReference       ? *env.gpu_ref
                            : which == DecodeWhich::kSimple        ? *env.gpu_simple
                            : which == DecodeWhich::kWmma          ? *env.gpu_wmma
                            : which == DecodeWhich::kPBf16         ? *env.gpu_p_bf16
                            : which == DecodeWhich::kWmmaPBf16     ? *env.gpu_wmma_p_bf16
                            : which == DecodeWhich::kMma64         ? *env.gpu_mma64
                            : which == DecodeWhich::kMma16         ? *env.gpu_mma16
                            : which == DecodeWhich::kMma16Split64  ? *env.gpu_mma16_split64
                            : which == DecodeWhich::kMma16Split192 ? *env.gpu_mma16_split192
                            : which == DecodeWhich::kMma16PBf16    ? *env.gpu_mma16_p_bf16
                                                                   : *env.gpu;
             Rng rng(10000 + H + rank);
             const int n = static_cast<int>(lens.size());
             int max_blocks = 0, total = 0;
             for (int l : lens) max_blocks = std::max(max_blocks, (l + bs - 1) / bs), total += (l + bs - 1) / bs;
             max_blocks += extra_blocks;
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
             const std::string& k = kernel;
             if (k == "reference") return compare("out", out, d.get(dout), kBitwise) && d.guards_ok;
             if (k == "simple") return compare("out", out, d.get(dout), kTolAttn) && d.guards_ok;
             if (p_bf16) {
               const Tensor got = d.get(dout);
               const bool long_ctx = *std::max_element(lens.begin(), lens.end()) >= 4096 && !gpu.host_visible();
               return compare("out", out, got, kTolDecodePBf16) && (!long_ctx || split_tol_rejects(out, got)) &&
                      d.guards_ok;
             }
             const Tensor got = d.get(dout);
             bool ok = compare("out", out, got, kTolAttnSplit);
             ok &= within_attn_bound(out, got, decode_abs_wv(q, cache, table, max_blocks, lens, rank, scale), true);
             return ok && d.guards_ok;
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

void router_case(RouterCfg c, bool refnum = false) {
  add_case("router", fmt::format("{}{},n={},d={},E={},groups={}/{},top_k={},ties={}", refnum_tag(refnum), c.name, c.n,
                                 c.d, c.E, c.topk_group, c.n_group, c.top_k, c.ties),
           true, [=](Env& env) {
             Backend& gpu = refnum ? *env.gpu_ref : *env.gpu;
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
             Dev d(gpu);
             TensorView dids = d.out(DType::kI32, {c.n, c.top_k}, "topk_ids"), dw = d.out(DType::kF32, {c.n, c.top_k}, "topk_weights");
             RouterParams p{.x = x, .gate = gate, .bias = bias.view(), .topk_ids = ids, .topk_weights = wts,
                            .scoring = c.scoring, .method = c.method, .n_group = c.n_group, .topk_group = c.topk_group,
                            .top_k = c.top_k, .norm_topk_prob = c.norm, .routed_scaling_factor = c.scale};
             env.cpu->router(p);
             p.x = d.up(x, "x"), p.gate = d.up(gate, "gate"), p.bias = bias.empty() ? TensorView{} : d.up(bias, "bias");
             p.topk_ids = dids, p.topk_weights = dw;
             gpu.router(p);
             // Logits are bitwise the reference's (sequential fp32 dot products), so the selection is exact.
             bool ok = compare("topk_ids", ids, d.get(dids), kBitwise);
             ok &= compare("topk_weights", wts, d.get(dw),
                           refnum ? kBitwise : Tol{.atol = 0, .rtol = 1e-6, .min_cos = 0.9999999});
             if (c.ties) {  // tie order: the lower index of each identical pair
               // A twin in a group the router dropped cannot be chosen; a dropped group has no chosen expert at all
               // (a kept group would have given the twin, equal in value and lower in index, before this expert).
               const bool grouped = c.method != RouterTopk::kGreedy && c.n_group > 1;
               auto group = [&](int e) { return grouped ? e / (c.E / c.n_group) : 0; };
               Tensor gi = d.get(dids);
               for (int t = 0; t < c.n; ++t)
                 for (int k = 0; k < c.top_k; ++k) {
                   const int id = gi.as<int32_t>()[t * c.top_k + k], twin = id == c.E - 2 ? 1 : 3;
                   bool has_twin = false, twin_group_used = false;
                   for (int k2 = 0; k2 < c.top_k; ++k2) {
                     const int other = gi.as<int32_t>()[t * c.top_k + k2];
                     has_twin |= other == twin;
                     twin_group_used |= group(other) == group(twin);
                   }
                   if ((id == c.E - 2 || id == 4) && !has_twin && twin_group_used) {
                     fmt::print("    token {}: expert {} chosen without its lower-index twin\n", t, id);
                     ok = false;
                   }
                 }
             }
             return ok && d.guards_ok;
           });
}

// MoE: `path` picks the backend — production (auto: with FP8 experts the grouped kernels for n·top_k <= 16·E, the
// per-expert loop beyond), fallback kernels (always the loop),
// DSV3_MOE=loop, DSV3_MOE=grouped, DSV3_MOE=decode (n·top_k <= 128; with split / prefetch set: a backend of its own
// with DSV3_MOE_SPLIT / DSV3_MOE_PREFETCH), reference numerics (refnum, bitwise).
enum class MoePath { kAuto, kFallback, kLoop, kGrouped, kDecode, kReference };
// Routing: kRandom: top_k distinct experts per token, experts with id % 7 == 3 never chosen (zero rows) when
// enough remain. kHot (grouped chunking): expert 5 in every token (n rows: chunks of 16 and a remainder), expert 2
// in tokens 0..16 (17 rows: 16 + 1), expert E-1 in tokens 0..15 (exactly 16 rows), the rest random as kRandom.
enum class MoeRouting { kRandom, kHot };
struct MoeCfg {
  int n, d, f, E, top_k;
  bool fp8 = true, ue8m0 = false;
  MoePath path = MoePath::kAuto;
  MoeRouting routing = MoeRouting::kRandom;
  bool hit_only = false;  // real dims: distinct weights for the routed experts only, one shared set for the others
  bool quick = true;
  int split = 0;      // kDecode: forced K ranges per gate/up tile (0: the launcher's choice)
  int prefetch = -1;  // kDecode: forced L2 prefetch distance (-1: the default)
};

// Random e4m3 weights at memory speed for the real-dims cases: codes drawn from a 4096-entry table of
// rand_fp8_weight's distribution (never zero, no NaN) by a splitmix64 stream; random positive scale_inv.
HostLinear fast_fp8_weight(Rng& rng, const std::vector<uint8_t>& table, int64_t m, int64_t k) {
  HostLinear w;
  w.weight = Tensor(DType::kFP8E4M3, {m, k});
  auto* c = w.weight.as<uint8_t>();
  uint64_t key = rng.gen()();
  const int64_t total = m * k;
  for (int64_t i = 0; i < total; i += 5) {
    uint64_t r = splitmix64(key++);
    for (int64_t j = i; j < std::min(total, i + 5); ++j, r >>= 12) c[j] = table[r & 4095];
  }
  w.scale_inv = rand_f32(rng, {(m + 127) / 128, (k + 127) / 128}, 2e-4f, 6e-4f);
  return w;
}

void moe_case(MoeCfg c) {
  const int entries = c.n * c.top_k;  // the backend's rules (CudaBackend::moe_experts)
  // auto never takes the decode kernels (kMoeDecodeAutoEntries = 0 in cuda_backend.cpp: measured slower)
  const bool auto_decode = false;
  const bool grouped = c.path == MoePath::kGrouped || (c.path == MoePath::kAuto && c.fp8 && entries <= 16 * c.E);
  const bool decode = (c.path == MoePath::kDecode && c.fp8 && entries <= 128) || auto_decode;
  std::string path = c.path == MoePath::kReference  ? "reference"
                     : c.path == MoePath::kFallback ? "fallback"
                     : c.path == MoePath::kLoop   ? "loop"
                     : c.path == MoePath::kGrouped ? (c.fp8 ? "grouped" : "grouped(bf16:loop)")
                     : c.path == MoePath::kDecode ? (decode                      ? "decode"
                                                     : !c.fp8                     ? "decode(bf16:loop)"
                                                     : entries <= 16 * c.E        ? "decode(>128:grouped)"
                                                                                  : "decode(>128:loop)")
                     : auto_decode                 ? "auto:decode"
                     : grouped                     ? "auto:grouped"
                                                   : "auto:loop";
  if (c.split > 0) path += fmt::format(",split={}", c.split);
  if (c.prefetch >= 0) path += fmt::format(",prefetch={}", c.prefetch);
  add_case("moe_experts", fmt::format("{}n={},d={},f={},E={},top_k={},w={},ue8m0={},routing={},path={}",
                                      refnum_tag(c.path == MoePath::kReference), c.n, c.d, c.f, c.E, c.top_k,
                                      c.fp8 ? "fp8" : "bf16", c.ue8m0, c.routing == MoeRouting::kHot ? "hot" : "random",
                                      path),
           c.quick, [=](Env& env) {
             std::unique_ptr<Backend> own;  // forced split / prefetch: a backend with those options
             if ((c.split > 0 || c.prefetch >= 0) && !env.gpu->host_visible()) {
               CudaBackendOptions o;
               o.sync_each_op = true;
               o.moe_path = CudaMoePath::kDecode;
               o.moe_decode_split = c.split;
               if (c.prefetch >= 0) o.moe_decode_prefetch = c.prefetch;
               own = make_cuda_backend(o);
             }
             Backend& gpu = own                            ? *own
                            : c.path == MoePath::kReference ? *env.gpu_ref
                            : c.path == MoePath::kFallback ? *env.gpu_fb
                            : c.path == MoePath::kLoop     ? *env.gpu_moe_loop
                            : c.path == MoePath::kGrouped  ? *env.gpu_moe_grouped
                            : c.path == MoePath::kDecode   ? *env.gpu_moe_decode
                                                           : *env.gpu;
             Rng rng(12000 + c.n + c.E + c.d);
             // Routing first (hit_only makes weights for the routed experts only).
             std::vector<int32_t> ids;
             std::vector<float> wv;
             for (int t = 0; t < c.n; ++t) {
               std::vector<int32_t> pick;
               if (c.routing == MoeRouting::kHot) {
                 pick.push_back(5 % c.E);
                 if (t < 17) pick.push_back(2);
                 if (t < 16) pick.push_back(c.E - 1);
               }
               const int zero_rows = (c.E + 3) / 7;  // experts with id % 7 == 3
               const bool exclude = c.E - zero_rows >= c.top_k + 3;
               for (int32_t e : shuffled(rng, c.E)) {
                 if (static_cast<int>(pick.size()) == c.top_k) break;
                 if ((exclude && e % 7 == 3) || std::find(pick.begin(), pick.end(), e) != pick.end()) continue;
                 pick.push_back(e);
               }
               CHECK(static_cast<int>(pick.size()) == c.top_k, "moe_case: routing");
               std::shuffle(pick.begin(), pick.end(), rng.gen());  // the hot experts at any k
               if (t % 5 == 0) std::sort(pick.begin(), pick.end(), std::greater<>());  // descending ids
               for (int32_t e : pick) ids.push_back(e), wv.push_back(rng.uniform(0.1f, 1.f));
             }
             std::vector<bool> hit(static_cast<size_t>(c.E), false);
             for (int32_t e : ids) hit[static_cast<size_t>(e)] = true;
             std::vector<uint8_t> table;
             if (c.hit_only) {
               HostLinear src = rand_fp8_weight(rng, 1, 4096);
               table.assign(src.weight.as<uint8_t>(), src.weight.as<uint8_t>() + 4096);
             }
             auto make = [&](int64_t m, int64_t k) {
               if (c.hit_only) return fast_fp8_weight(rng, table, m, k);
               if (c.fp8) return rand_fp8_weight(rng, m, k);
               return rand_bf16_weight(rng, m, k, 1.f / std::sqrt(static_cast<float>(k)));
             };
             std::deque<HostLinear> ws;  // per expert gate, up, down (hit_only: the routed ones, then the shared set)
             std::vector<ExpertWeights> hw, dw;
             Dev d(gpu);
             std::vector<LinearWeight> shared_dev;
             for (int e = 0; e < c.E; ++e) {
               if (c.hit_only && !hit[static_cast<size_t>(e)]) continue;
               for (int i = 0; i < 3; ++i) ws.push_back(i < 2 ? make(c.f, c.d) : make(c.d, c.f));
             }
             if (c.hit_only)
               for (int i = 0; i < 3; ++i) {
                 ws.push_back(i < 2 ? make(c.f, c.d) : make(c.d, c.f));
                 shared_dev.push_back(d.weight(ws.back()));
               }
             for (int e = 0, next = 0; e < c.E; ++e) {
               if (c.hit_only && !hit[static_cast<size_t>(e)]) {
                 const size_t s0 = ws.size() - 3;
                 hw.push_back({ws[s0].view(), ws[s0 + 1].view(), ws[s0 + 2].view()});
                 dw.push_back({shared_dev[0], shared_dev[1], shared_dev[2]});
                 continue;
               }
               hw.push_back({ws[next].view(), ws[next + 1].view(), ws[next + 2].view()});
               dw.push_back({d.weight(ws[next]), d.weight(ws[next + 1]), d.weight(ws[next + 2])});
               next += 3;
             }
             Tensor x = rand_bf16(rng, {c.n, c.d}), tid = host_i32({c.n, c.top_k}, ids);
             Tensor tw = make_host_tensor(DType::kF32, {c.n, c.top_k}, wv.data()), out(DType::kBF16, {c.n, c.d});
             TensorView dout = d.out(DType::kBF16, {c.n, c.d}, "out");
             env.cpu->moe_experts({.x = x, .topk_ids = tid, .topk_weights = tw, .experts = hw.data(), .n_experts = c.E,
                                   .out = out, .ue8m0 = c.ue8m0});
             const MoeExpertsParams gp{.x = d.up(x, "x"), .topk_ids = d.up(tid, "topk_ids"),
                                       .topk_weights = d.up(tw, "topk_weights"), .experts = dw.data(),
                                       .n_experts = c.E, .out = dout, .ue8m0 = c.ue8m0};
             gpu.moe_experts(gp);
             // kTolMoeFp8 for every FP8 path: the grouped kernels sum each 128-K block on the tensor cores in their
             // own order (as the decode GEMV, linear ... path=gemv), so gate/up differ from the reference by bf16
             // ulps and h's re-quantization flips e4m3 codes for a few percent of the inputs (see kTolMoeFp8).
             const Tol tol = c.path == MoePath::kReference ? kBitwise : c.fp8 ? kTolMoeFp8 : kTolMoeBf16;
             bool ok = compare("out", out, d.get(dout), tol);
             if (decode) {  // deterministic: a second call (the work queue hands out items in another order) agrees
               TensorView dout2 = d.out(DType::kBF16, {c.n, c.d}, "out (second call)");
               MoeExpertsParams gp2 = gp;
               gp2.out = dout2;
               gpu.moe_experts(gp2);
               ok &= compare("second call vs first", d.get(dout), d.get(dout2), kBitwise);
             }
             return ok && d.guards_ok;
           });
}

// The decode step's MoE inside a CUDA graph: router (fused chain + selection) then moe_experts (decode kernels) at
// 1 token, captured once on a backend with default options (the tests' per-op synchronization refuses captures),
// replayed with a new x: the ids must be bitwise the CPU router's and the output the CPU experts' on those ids; a
// second replay gives the same bits (the per-call counters are left or reset to zero).
void moe_decode_graph_case() {
  add_case("moe_experts", "graph: router + decode kernels captured at 1 token, replayed twice with a new x", true,
           [](Env& env) {
    if (env.gpu->host_visible()) {
      fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
      return true;
    }
    CudaBackendOptions decode_opts;
    decode_opts.moe_path = CudaMoePath::kDecode;  // auto would run the grouped kernels
    std::unique_ptr<Backend> gpu = make_cuda_backend(decode_opts);
    const int d = 1024, f = 256, E = 16, top_k = 4;
    Rng rng(12500);
    std::deque<HostLinear> ws;
    std::vector<ExpertWeights> hw, dw;
    Dev dv(*gpu);
    for (int e = 0; e < E; ++e) {
      for (int i = 0; i < 3; ++i) ws.push_back(i < 2 ? rand_fp8_weight(rng, f, d) : rand_fp8_weight(rng, d, f));
      const size_t b = ws.size() - 3;
      hw.push_back({ws[b].view(), ws[b + 1].view(), ws[b + 2].view()});
      dw.push_back({dv.weight(ws[b]), dv.weight(ws[b + 1]), dv.weight(ws[b + 2])});
    }
    Tensor gate = rand_bf16(rng, {E, d}, 0.03f), bias = rand_f32(rng, {E}, -0.05f, 0.05f);
    Tensor x0 = rand_bf16(rng, {1, d}), x1 = rand_bf16(rng, {1, d});
    TensorView dx = dv.up(x0, "x"), dgate = dv.up(gate, "gate"), dbias = dv.up(bias, "bias");
    TensorView dids = dv.out(DType::kI32, {1, top_k}, "topk_ids"), dwts = dv.out(DType::kF32, {1, top_k}, "topk_weights");
    TensorView dout = dv.out(DType::kBF16, {1, d}, "out");
    RouterParams rp{.x = dx, .gate = dgate, .bias = dbias, .topk_ids = dids, .topk_weights = dwts,
                    .scoring = RouterScoring::kSigmoid, .method = RouterTopk::kNoauxTc, .n_group = 4, .topk_group = 2,
                    .top_k = top_k, .norm_topk_prob = true, .routed_scaling_factor = 2.5f};
    const MoeExpertsParams mp{.x = dx, .topk_ids = dids, .topk_weights = dwts, .experts = dw.data(), .n_experts = E,
                              .out = dout};
    gpu->router(rp);  // eager first: grows the scratch (a capture may not allocate)
    gpu->moe_experts(mp);
    gpu->synchronize();
    std::unique_ptr<BackendGraph> graph = gpu->capture([&] {
      gpu->router(rp);
      gpu->moe_experts(mp);
    });
    if (!graph) {
      fmt::print("    the capture was refused\n");
      return false;
    }
    gpu->copy(dx, x1.view());
    graph->replay();
    gpu->synchronize();
    Tensor got_ids = dv.get(dids), got_out = dv.get(dout);
    Tensor ids(DType::kI32, {1, top_k}), wts(DType::kF32, {1, top_k}), out(DType::kBF16, {1, d});
    env.cpu->router({.x = x1, .gate = gate, .bias = bias, .topk_ids = ids, .topk_weights = wts,
                     .scoring = RouterScoring::kSigmoid, .method = RouterTopk::kNoauxTc, .n_group = 4, .topk_group = 2,
                     .top_k = top_k, .norm_topk_prob = true, .routed_scaling_factor = 2.5f});
    env.cpu->moe_experts({.x = x1, .topk_ids = ids, .topk_weights = wts, .experts = hw.data(), .n_experts = E,
                          .out = out});
    bool ok = compare("replayed topk_ids", ids, got_ids, kBitwise);
    ok &= compare("replayed out", out, got_out, kTolMoeFp8);
    graph->replay();
    gpu->synchronize();
    ok &= compare("second replay vs first", got_out, dv.get(dout), kBitwise);
    return ok && dv.guards_ok;
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

// ------------------------------------------------------------------------------------------------- sample

// sample: the drawn tokens must EQUAL the CPU reference's. Exact equality is expected because both sides do the same
// arithmetic in the same precision: z = l / T as one IEEE fp32 division; e = exp(double(z) - double(z_max)) and the
// Gumbel scores z - log(-log(u)) in fp64 from the same Philox counters; argmaxes with the same (value desc, id asc)
// tie rule; top-k's cut is pure ordering. Where a mismatch could legitimately happen:
//  (a) top-p: the host sums q = e / total sequentially in fp64, the GPU sums floor(e * 2^45) as integers (error
//      below ~4e-9 of the mass); a sorted prefix sum within that distance of top_p can move the cut by one token;
//  (b) CUDA's fp64 exp/log may differ from libm's by one ulp (~1e-16): that moves a draw only when the two best
//      Gumbel scores agree to ~1e-16, or when some e lies within ~1e-16 of min_p.
// The inputs avoid those razor edges: each row is re-drawn until its top-p decision sums are > 5e-8 away from top_p
// (over 10x the bound of (a)), no e is within 1e-12 of min_p, and the two best scores differ by > 1e-9 (checked with
// the host functions below).
// The chosen token's logprob is a parallel fp64 sum (another order) cast to fp32: equal to ~1 fp32 ulp.
const Tol kTolLogprob{.atol = 1e-6, .rtol = 1e-6, .min_cos = 0.999999};

struct SampleSpec {
  std::string name;
  int rows = 1, vocab = 1;
  int stride = 0;                      // 0: vocab
  std::vector<SampleRowParams> kinds;  // row i uses kinds[i % size] (seed and step vary per row)
  float mask_frac = 0.f;               // fraction of -inf logits in every row
  bool ties = false;                   // exact ties: 3 ids share the maximum, 20 share the value at rank 45
  bool quantized = false;              // logits rounded to multiples of 1/4: ties everywhere (and -0 / +0)
  bool bad_rows = false;               // row 0 holds a NaN, row 1 is all -inf
  bool tie_cut = false;                // 2 ids at max + 4.5, 40 at max + 4: top-p cuts inside the group of 40
  bool logprobs = false;
  bool quick = false;
  bool refnum = false;                 // on the reference-numerics backend
};

// Is this row's reference draw away from every razor edge of the comment above?
bool sample_row_is_robust(std::span<const float> l, const SampleRowParams& p) {
  if (sampling_greedy(p.temperature)) return true;
  std::vector<float> z(l.begin(), l.end());
  sampling::apply_temperature(z, p.temperature);
  float z_max = -INFINITY;
  for (float v : z) z_max = std::max(z_max, v);
  if (z_max == -INFINITY) return true;
  if (p.min_p > 0)
    for (float v : z)
      if (v != -INFINITY && std::fabs(std::exp(double(v) - double(z_max)) - double(p.min_p)) < 1e-12) return false;
  std::vector<float> w = z;
  sampling::apply_top_k(w, p.top_k);
  if (p.top_p < 1.0f) {
    std::vector<int32_t> ids;
    for (size_t v = 0; v < w.size(); ++v)
      if (w[v] != -INFINITY) ids.push_back(static_cast<int32_t>(v));
    double total = 0;
    for (int32_t v : ids) total += std::exp(double(w[v]) - double(z_max));
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); });
    double before = 0;
    for (size_t i = 0; i < ids.size(); ++i) {  // the decisions the host makes, up to and including the cut
      if (i > 0 && std::fabs(before - double(p.top_p)) < 5e-8) return false;
      if (before >= double(p.top_p)) break;
      before += std::exp(double(w[ids[i]]) - double(z_max)) / total;
    }
  }
  sampling::apply_top_p(w, p.top_p);
  sampling::apply_min_p(w, p.min_p);
  double s1 = -INFINITY, s2 = -INFINITY;
  for (size_t v = 0; v < w.size(); ++v) {
    if (w[v] == -INFINITY) continue;
    const double s = gumbel_score(w[v], sampling_uniform(p.seed, p.seq_index, p.step, static_cast<uint32_t>(v)));
    if (s > s1) {
      s2 = s1;
      s1 = s;
    } else if (s > s2) {
      s2 = s;
    }
  }
  return s2 == -INFINITY || s1 - s2 > 1e-9;
}

void sample_case(SampleSpec spec) {
  add_case("sample", fmt::format("{}{},rows={},vocab={}{}{}", refnum_tag(spec.refnum), spec.name, spec.rows, spec.vocab,
                                 spec.stride ? fmt::format(",stride={}", spec.stride) : "",
                                 spec.logprobs ? ",logprobs" : ""),
           spec.quick, [spec](Env& env) {
             Backend& gpu = spec.refnum ? *env.gpu_ref : *env.gpu;
             const int r = spec.rows, V = spec.vocab, stride = spec.stride ? spec.stride : V;
             Rng rng(7000 + static_cast<uint64_t>(r) * 131 + V);
             std::vector<SampleRowParams> params(static_cast<size_t>(r));
             Tensor logits(DType::kF32, {r, stride});
             float* L = logits.as<float>();
             for (int i = 0; i < r; ++i) {
               SampleRowParams p = spec.kinds[static_cast<size_t>(i) % spec.kinds.size()];
               p.seed = 0x1234'5678'9abc'def0ull + static_cast<uint64_t>(i) * 0x9e37'79b9'7f4a'7c15ull;
               p.step = static_cast<uint32_t>(i * 3);
               p.seq_index = static_cast<uint32_t>(i % 2);
               std::span<float> row(L + static_cast<int64_t>(i) * stride, static_cast<size_t>(V));
               for (int attempt = 0;; ++attempt) {
                 const float sigma = rng.uniform(1.5f, 4.f);
                 for (float& x : row) {
                   x = rng.normal(sigma);
                   if (spec.quantized) x = std::nearbyint(x * 4.f) / 4.f;
                   if (spec.mask_frac > 0 && rng.uniform(0.f, 1.f) < spec.mask_frac) x = -INFINITY;
                 }
                 if (spec.ties && V >= 100) {
                   std::vector<float> sorted(row.begin(), row.end());
                   std::sort(sorted.begin(), sorted.end(), std::greater<float>());
                   const float top = sorted[0] + 0.5f, at45 = sorted[45];
                   for (int t = 0; t < 3; ++t) row[static_cast<size_t>(rng.uniform_int(0, V - 1))] = top;
                   for (int t = 0; t < 20; ++t) row[static_cast<size_t>(rng.uniform_int(0, V - 1))] = at45;
                 }
                 if (spec.tie_cut && V >= 100) {  // the nucleus boundary inside a group of equal logits
                   const float top = *std::max_element(row.begin(), row.end()) + 4.f;
                   for (int t = 0; t < 40; ++t) row[static_cast<size_t>(rng.uniform_int(0, V - 1))] = top;
                   for (int t = 0; t < 2; ++t) row[static_cast<size_t>(rng.uniform_int(0, V - 1))] = top + 0.5f;
                 }
                 row[static_cast<size_t>(rng.uniform_int(0, V - 1))] = rng.normal(1.f);  // at least one live token
                 if (sample_row_is_robust(row, p)) break;
                 EXPECT(attempt < 50, "sample case: no robust draw for row {} in 50 attempts", i);
                 p.seed += 1;  // another draw as well as other logits
               }
               for (int c = V; c < stride; ++c) row.data()[c] = std::nanf("");  // padding the op must not read
               params[static_cast<size_t>(i)] = p;
             }
             if (spec.bad_rows && r >= 2) {
               L[3] = std::nanf("");
               for (int v = 0; v < V; ++v) L[stride + v] = -INFINITY;
             }
             Tensor ref_tok(DType::kI32, {r}), ref_lp(DType::kF32, {r});
             TensorView hlog = logits.view();
             hlog.shape = Shape{r, V};  // the view the op sees; rows are `stride` apart
             env.cpu->sample({.logits = hlog, .logits_stride = spec.stride, .rows = params.data(), .tokens = ref_tok,
                              .logprobs = spec.logprobs ? ref_lp.view() : TensorView{}});
             Dev d(gpu);
             TensorView dlog = d.up(logits, "logits");
             TensorView dtok = d.out(DType::kI32, {r}, "tokens");
             TensorView dlp = spec.logprobs ? d.out(DType::kF32, {r}, "logprobs") : TensorView{};
             dlog.shape = Shape{r, V};  // the view the op sees; rows are `stride` apart
             gpu.sample({.logits = dlog, .logits_stride = spec.stride, .rows = params.data(), .tokens = dtok,
                         .logprobs = dlp});
             bool ok = compare("tokens", ref_tok, d.get(dtok), kBitwise);
             if (spec.logprobs) ok &= compare("logprobs", ref_lp, d.get(dlp), kTolLogprob);
             if (spec.bad_rows && r >= 2)
               ok &= ref_tok.as<int32_t>()[0] == kSampleInvalidLogits && ref_tok.as<int32_t>()[1] == kSampleAllMasked;
             return ok && d.guards_ok;
           });
}

void register_sample_cases() {
  const int kV3 = 129280;
  const SampleRowParams greedy{.temperature = 0.f}, temp{.temperature = 0.8f}, hot{.temperature = 1.5f};
  const SampleRowParams k1{.temperature = 1.f, .top_k = 1}, k50{.temperature = 0.9f, .top_k = 50};
  const SampleRowParams p09{.temperature = 1.f, .top_p = 0.9f}, p05{.temperature = 0.7f, .top_p = 0.5f};
  const SampleRowParams minp{.temperature = 1.f, .min_p = 0.05f};
  const SampleRowParams combo{.temperature = 0.7f, .top_k = 50, .top_p = 0.9f, .min_p = 0.02f};
  const SampleRowParams combo2{.temperature = 1.2f, .top_k = 400, .top_p = 0.95f};
  const SampleRowParams kbig{.temperature = 1.f, .top_k = 1 << 20, .top_p = 0.98f};  // k >= live: no top-k cut
  const std::vector<SampleRowParams> mixed{greedy, temp, hot, k1, k50, p09, p05, minp, combo, combo2, kbig};
  for (int V : {kV3, 1001}) {
    const bool big = V == kV3;
    sample_case({.name = "greedy", .rows = 1, .vocab = V, .kinds = {greedy}, .quick = true});
    sample_case({.name = "greedy-ties", .rows = 4, .vocab = V, .kinds = {greedy}, .ties = true, .logprobs = true,
                 .quick = true});
    sample_case({.name = "temperature", .rows = 1, .vocab = V, .kinds = {temp}, .logprobs = true, .quick = true});
    sample_case({.name = "top_k=1", .rows = 3, .vocab = V, .kinds = {k1}, .ties = true, .quick = true});
    sample_case({.name = "top_k=50", .rows = 4, .vocab = V, .kinds = {k50}, .ties = true, .quick = true});
    sample_case({.name = "top_p=0.9", .rows = 4, .vocab = V, .kinds = {p09}, .quick = true});
    sample_case({.name = "top_p=0.5", .rows = 4, .vocab = V, .kinds = {p05}, .quick = !big});
    sample_case({.name = "min_p=0.05", .rows = 4, .vocab = V, .kinds = {minp}, .quick = !big});
    sample_case({.name = "combo", .rows = 4, .vocab = V, .kinds = {combo, combo2}, .ties = true, .quick = true});
    sample_case({.name = "quantized-ties", .rows = 11, .vocab = V, .kinds = mixed, .quantized = true,
                 .logprobs = true, .quick = !big});
    sample_case({.name = "masked", .rows = 11, .vocab = V, .kinds = mixed, .mask_frac = 0.3f, .bad_rows = true,
                 .logprobs = true, .quick = true});
    sample_case({.name = "mixed", .rows = 128, .vocab = V, .stride = big ? 0 : V + 7, .kinds = mixed,
                 .ties = true, .logprobs = true, .quick = !big});
  }
  // Plain top-p and temperature (sample.cu v2: up to 32 CTAs per row, radix levels over per-chunk histograms, the
  // cut's tie group split over chunks) at DeepSeek-R1's recommended settings (T 0.6, top_p 0.95) and around them: one
  // row (the most chunks), a few and many rows (fewer chunks each), at the V3 vocabulary and at sizes whose last chunk
  // is short (50001) or that fit one chunk (1000).
  const SampleRowParams r1{.temperature = 0.6f, .top_p = 0.95f}, p05t1{.temperature = 1.0f, .top_p = 0.5f},
      p999{.temperature = 1.7f, .top_p = 0.999f}, p95hot{.temperature = 1.7f, .top_p = 0.95f},
      p05cold{.temperature = 0.6f, .top_p = 0.5f}, p999t1{.temperature = 1.0f, .top_p = 0.999f},
      t06{.temperature = 0.6f}, t17{.temperature = 1.7f};
  const std::vector<SampleRowParams> nucleus{r1, p05t1, p999, p95hot, p05cold, t06, p999t1, t17};
  for (int V : {kV3, 50001, 1000}) {
    const bool big = V == kV3;
    for (const auto& [name, kind] : {std::pair{"top_p=0.95,T=0.6", r1}, std::pair{"top_p=0.5,T=1", p05t1},
                                     std::pair{"top_p=0.999,T=1.7", p999}, std::pair{"top_p=0.5,T=0.6", p05cold},
                                     std::pair{"T=1.7", t17}})
      sample_case({.name = name, .rows = 1, .vocab = V, .kinds = {kind}, .logprobs = true, .quick = !big});
    sample_case({.name = "top_p=0.95,T=0.6", .rows = 2, .vocab = V, .kinds = {r1}, .quick = true});
    sample_case({.name = "nucleus-ties", .rows = 3, .vocab = V, .kinds = {p05t1, p999, p95hot}, .ties = true,
                 .quick = true});
    sample_case({.name = "nucleus-masked", .rows = 8, .vocab = V, .kinds = nucleus, .mask_frac = 0.4f,
                 .bad_rows = true, .logprobs = true, .quick = true});
    sample_case({.name = "nucleus-tie-cut", .rows = 8, .vocab = V, .kinds = nucleus, .tie_cut = true,
                 .logprobs = true, .quick = true});
    sample_case({.name = "nucleus-tie-cut", .rows = 20, .vocab = V, .kinds = nucleus, .tie_cut = true,
                 .quick = !big});
    sample_case({.name = "nucleus-quantized", .rows = 8, .vocab = V, .kinds = nucleus, .quantized = true,
                 .logprobs = true, .quick = !big});
    sample_case({.name = "nucleus-many", .rows = big ? 128 : 300, .vocab = V, .stride = big ? 0 : V + 3,
                 .kinds = nucleus, .ties = true, .logprobs = true, .quick = !big});
  }
  // Nearly everything masked: top-k larger than the live set; a single live token.
  sample_case({.name = "sparse", .rows = 11, .vocab = 257, .kinds = mixed, .mask_frac = 0.97f, .quick = true});
  sample_case({.name = "tiny-vocab", .rows = 11, .vocab = 1, .kinds = mixed, .quick = true});
}

// Staged uploads (backend/staged_upload.h through the backend's pinned staging sink): random host buffers, most of
// them small, some spanning several chunks, through n_slots pinned chunks of slot_kb KB; every byte must arrive (FP8
// tensors: byte-granular sizes, compared bitwise) and no guard may be hit. Few slots force the slot rotation to wait
// for in-flight DMA.
void staged_upload_case(int n_slots, int slot_kb, int n_tensors, int max_kb, int threads, bool quick) {
  add_case("staged_upload", fmt::format("slots={},slot_kb={},tensors={},max_kb={},threads={}", n_slots, slot_kb,
                                        n_tensors, max_kb, threads),
           quick, [=](Env& env) {
             auto sink = env.gpu->make_staging_sink(n_slots, static_cast<size_t>(slot_kb) << 10);
             if (!sink) {
               fmt::print("    skipped: backend {} has no staging sink\n", env.gpu->name());
               return env.gpu->host_visible();
             }
             StagedUploader up(std::move(sink), threads);
             Rng rng(static_cast<uint64_t>(31 * n_slots + slot_kb + n_tensors));
             Dev d(*env.gpu);
             std::vector<Tensor> src;
             std::vector<TensorView> dst;
             uint64_t total = 0;
             for (int i = 0; i < n_tensors; ++i) {
               const int64_t n = rng.uniform_int(0, 3) == 0 ? rng.uniform_int(1, max_kb * 1024) : rng.uniform_int(1, 3000);
               Tensor h(DType::kFP8E4M3, {n});
               for (int64_t j = 0; j < n; ++j) h.as<uint8_t>()[j] = static_cast<uint8_t>(rng.gen()());
               dst.push_back(d.out(DType::kFP8E4M3, {n}, fmt::format("t{}", i)));
               up.add(dst.back().data, h.view().data, static_cast<size_t>(n));
               src.push_back(std::move(h));
               total += static_cast<uint64_t>(n);
             }
             up.flush();
             bool ok = up.stats().bytes == total;
             for (int i = 0; i < n_tensors; ++i) ok &= compare(fmt::format("t{}", i), src[i], d.get(dst[i]), kBitwise);
             fmt::print("    {} tensors, {:.1f} MB in {} chunks, {} transfers\n", n_tensors, total / 1e6,
                        up.stats().chunks, up.stats().transfers);
             return ok && d.guards_ok;
           });
}

// The loader end to end from a checkpoint on disk (mmap -> staging chunks -> device), against the CPU's load of the
// same files, tensor by tensor, byte for byte. chunk_mb > 0 overrides the staging chunk size (DSV3_LOAD_CHUNK_MB), so
// a small model still spans several chunks and reuses slots.
void checkpoint_load_case(std::string preset, Numerics numerics, int chunk_mb, bool quick) {
  add_case("checkpoint_load", fmt::format("preset={},numerics={},chunk_mb={}", preset,
                                          numerics == Numerics::kFp8 ? "fp8" : "bf16", chunk_mb),
           quick, [=](Env& env) {
             const std::string dir = fmt::format("/tmp/dsv3_test_ops_ckpt_{}", preset);
             if (!std::filesystem::exists(dir + "/model.safetensors.index.json")) {
               TinyModelOptions o;
               o.out_dir = dir;
               o.seed = 21;
               write_tiny_model(tiny_model_preset(preset), o);
             }
             if (chunk_mb > 0) setenv("DSV3_LOAD_CHUNK_MB", std::to_string(chunk_mb).c_str(), 1);
             auto host_src = WeightSource::open(dir, LoadFormat::kAuto), dev_src = WeightSource::open(dir, LoadFormat::kAuto);
             ModelWeights h = load_model_weights(*host_src, *env.cpu, numerics);
             const double t0 = now_seconds();
             ModelWeights g = load_model_weights(*dev_src, *env.gpu, numerics);
             const double dt = now_seconds() - t0;
             unsetenv("DSV3_LOAD_CHUNK_MB");
             auto hv = named_weights(h), gv = named_weights(g);
             bool ok = hv.size() == gv.size() && g.bytes_loaded == h.bytes_loaded;
             if (!env.gpu->host_visible() && g.staged.bytes != g.bytes_loaded) {
               fmt::print("    staged {} of {} bytes\n", g.staged.bytes, g.bytes_loaded);
               ok = false;
             }
             for (size_t i = 0; ok && i < hv.size(); ++i) {
               const TensorView& a = hv[i].second;
               const TensorView& b = gv[i].second;
               if (a.dtype != b.dtype || !(a.shape == b.shape)) {
                 fmt::print("    {}: {} {} vs {} {}\n", hv[i].first, dtype_name(a.dtype), a.shape.str(), dtype_name(b.dtype),
                            b.shape.str());
                 ok = false;
                 break;
               }
               Tensor got(b.dtype, b.shape);
               env.gpu->copy(got.view(), b);
               env.gpu->synchronize();
               if (!compare(hv[i].first, a, got, kBitwise)) ok = false;
             }
             fmt::print("    {} tensors, {:.1f} MB in {} chunks ({} transfers) in {:.3f} s\n", gv.size(),
                        g.bytes_loaded / 1e6, g.staged.chunks, g.staged.transfers, dt);
             return ok;
           });
}

// Out of device memory is a dsv3::Error naming the bytes, what they were for and the free/total memory of that moment
// (not an abort), and the device stays usable after it.
void device_oom_case() {
  add_case("device_oom", "1 PiB", true, [](Env& env) {
    if (env.gpu->host_visible()) {
      fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
      return true;
    }
    bool ok = false;
    try {
      AllocationPurpose why("the device_oom test");
      Tensor t(DType::kU8, {int64_t{1} << 50}, env.gpu->allocator());
      fmt::print("    a 1 PiB allocation succeeded\n");
    } catch (const Error& e) {
      const std::string m = e.what();
      fmt::print("    {}\n", m);
      ok = m.find("CUDA out of memory on device") != std::string::npos &&
           m.find("(1125899906842624 bytes) for the device_oom test; ") != std::string::npos &&
           m.find(" free of ") != std::string::npos;
    }
    Rng rng(5);
    Tensor h = rand_bf16(rng, {1000});
    Dev d(*env.gpu);
    const TensorView v = d.up(h, "x");
    return compare("after the failed allocation", h, d.get(v), kBitwise) && d.guards_ok && ok;
  });
}

// A CUDA graph captured at one row keeps working after a larger eager call grew the backend's scratch buffers
// (the grown-out buffer must outlive the graph; freeing it made the replay fault). A fresh backend, so that the
// capture sees the smallest scratch, with default options (the tests' per-op synchronization refuses captures).
void graph_scratch_case() {
  add_case("graph_scratch_growth", "fp8 linear captured at 1 row, scratch grown by 64 rows, replayed", true, [](Env& env) {
    if (env.gpu->host_visible()) {
      fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
      return true;
    }
    std::unique_ptr<Backend> gpu = make_cuda_backend(CudaBackendOptions{});
    Rng rng(77);
    const int m = 256, k = 1024;
    HostLinear w = rand_fp8_weight(rng, m, k);
    Tensor x1 = rand_bf16(rng, {1, k}), x1b = rand_bf16(rng, {1, k}), x64 = rand_bf16(rng, {64, k});
    Dev d(*gpu);
    const LinearWeight dw = d.weight(w);
    TensorView dx1 = d.up(x1, "x1"), dx64 = d.up(x64, "x64");
    TensorView dout1 = d.out(DType::kBF16, {1, m}, "out1"), dout64 = d.out(DType::kBF16, {64, m}, "out64");
    gpu->linear({.x = dx1, .w = dw, .out = dout1});  // eager first (as the model's warm-up): sizes the scratch
    gpu->synchronize();
    std::unique_ptr<BackendGraph> graph = gpu->capture([&] { gpu->linear({.x = dx1, .w = dw, .out = dout1}); });
    if (!graph) {
      fmt::print("    the capture was refused\n");
      return false;
    }
    gpu->linear({.x = dx64, .w = dw, .out = dout64});  // grows the FP8 code and scale scratch past the captured size
    gpu->copy(dx1, x1b.view());
    graph->replay();
    gpu->synchronize();
    Tensor ref1(DType::kBF16, {1, m}), ref64(DType::kBF16, {64, m});
    env.cpu->linear({.x = x1b, .w = w.view(), .out = ref1});
    env.cpu->linear({.x = x64, .w = w.view(), .out = ref64});
    bool ok = compare("replayed 1-row output (new input)", ref1, d.get(dout1), kTolGemmFp8);
    ok &= compare("64-row output", ref64, d.get(dout64), kTolGemmFp8);
    return ok && d.guards_ok;
  });
}

// ------------------------------------------------------------------------------------------------- refnum

// The whole model on the reference-numerics backend against the CPU: a dummy model (the same random weights on both,
// dummy_load checks that), a 13-token prompt in two chunks (naive MLA, the second chunk over cached keys), then
// three decode steps (absorbed MLA over the paged cache in reversed blocks); every logit bit for bit.
void refnum_model_case(std::string preset, Numerics numerics, bool quick) {
  add_case("model_forward", fmt::format("refnum,preset={},numerics={},steps=9+4 prompt,3 decode", preset,
                                        numerics == Numerics::kFp8 ? "fp8" : "bf16"),
           quick, [=](Env& env) {
             const ModelConfig c = tiny_model_preset(preset);
             const int n = 16;
             std::vector<int32_t> ids(static_cast<size_t>(n));
             for (int i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13) % c.vocab_size);
             auto run = [&](Backend& be) {
               auto src = WeightSource::dummy(c, 7);  // outlives the model (host backends use its tensors in place)
               DeepseekV3 model(c, load_model_weights(*src, be, numerics, false), be, numerics);
               KvCache cache(model.n_cache_layers(), 3, 64, c.kv_entry_dim(), be.allocator());
               const std::vector<int32_t> blocks = {2, 0};
               std::vector<float> logits;
               const int steps[][3] = {{0, 9, 0}, {9, 4, 0}, {13, 1, 1}, {14, 1, 1}, {15, 1, 1}};  // start, len, absorbed
               for (const auto& st : steps) {
                 ForwardBatch b;
                 b.token_ids.assign(ids.begin() + st[0], ids.begin() + st[0] + st[1]);
                 b.seqs.push_back({st[1], st[0], st[2] != 0, blocks});
                 for (int i = 0; i < st[1]; ++i) b.logit_rows.push_back(i);
                 ForwardOutput o = model.forward(b, cache);
                 logits.insert(logits.end(), o.logits.begin(), o.logits.end());
               }
               return make_host_tensor(DType::kF32, {n, c.vocab_size}, logits.data());
             };
             const Tensor want = run(*env.cpu), got = run(*env.gpu_ref);
             return compare("logits", want, got, kBitwise);
           });
}

// Reference numerics inside a CUDA graph: once their scratch and the MoE expert table exist (an eager run first, as
// the model's warm-up does), the ops enqueue no host work, so a decode-like chain (rms_norm, FP8 linear, router, MoE
// on the router's device outputs) is captured and replayed on new inputs, bitwise the CPU's. A fresh backend without
// the tests' per-op synchronization (which refuses captures).
void refnum_graph_case() {
  add_case("graph_capture", "refnum,rms_norm+linear fp8+router+moe_experts fp8,n=3", true, [](Env& env) {
    if (env.gpu_ref->host_visible()) {
      fmt::print("    skipped: backend {} is host-visible\n", env.gpu_ref->name());
      return true;
    }
    CudaBackendOptions o;
    o.reference_numerics = true;
    std::unique_ptr<Backend> gpu = make_cuda_backend(o);
    const int n = 3, d = 256, f = 96, E = 8, top_k = 2;
    Rng rng(31337);
    Tensor x1 = rand_bf16(rng, {n, d}), x2 = rand_bf16(rng, {n, d}), nw = rand_bf16(rng, {d}, 0.5f);
    HostLinear lin = rand_fp8_weight(rng, d, d);
    Tensor gate = rand_bf16(rng, {E, d}, 0.05f), bias = rand_f32(rng, {E}, -0.05f, 0.05f);
    std::deque<HostLinear> ew;
    std::vector<ExpertWeights> hx, dx;
    Dev dv(*gpu);
    for (int e = 0; e < E; ++e) {
      for (int i = 0; i < 3; ++i) ew.push_back(i < 2 ? rand_fp8_weight(rng, f, d) : rand_fp8_weight(rng, d, f));
      const size_t b = ew.size() - 3;
      hx.push_back({ew[b].view(), ew[b + 1].view(), ew[b + 2].view()});
      dx.push_back({dv.weight(ew[b]), dv.weight(ew[b + 1]), dv.weight(ew[b + 2])});
    }
    // The chain on any backend, on its tensors.
    struct Io {
      TensorView x, nw, gate, bias, xn, h, ids, wts, out;
      LinearWeight lin;
      const ExpertWeights* experts;
    };
    auto chain = [&](Backend& be, const Io& t) {
      be.rms_norm({.x = t.x, .weight = t.nw, .out = t.xn});
      be.linear({.x = t.xn, .w = t.lin, .out = t.h});
      be.router({.x = t.h, .gate = t.gate, .bias = t.bias, .topk_ids = t.ids, .topk_weights = t.wts,
                 .scoring = RouterScoring::kSigmoid, .method = RouterTopk::kNoauxTc, .n_group = 4, .topk_group = 2,
                 .top_k = top_k, .norm_topk_prob = true, .routed_scaling_factor = 2.5f});
      be.moe_experts({.x = t.h, .topk_ids = t.ids, .topk_weights = t.wts, .experts = t.experts, .n_experts = E,
                      .out = t.out});
    };
    Tensor xn(DType::kBF16, {n, d}), h(DType::kBF16, {n, d}), ids(DType::kI32, {n, top_k}), wts(DType::kF32, {n, top_k});
    Tensor out(DType::kBF16, {n, d});
    chain(*env.cpu, {x2, nw, gate, bias, xn, h, ids, wts, out, lin.view(), hx.data()});
    const Io dio{dv.up(x1, "x"), dv.up(nw, "norm"), dv.up(gate, "gate"), dv.up(bias, "bias"),
                 dv.out(DType::kBF16, {n, d}, "xn"), dv.out(DType::kBF16, {n, d}, "h"),
                 dv.out(DType::kI32, {n, top_k}, "ids"), dv.out(DType::kF32, {n, top_k}, "wts"),
                 dv.out(DType::kBF16, {n, d}, "out"), dv.weight(lin), dx.data()};
    chain(*gpu, dio);  // eager: sizes the scratch, builds the expert table
    gpu->synchronize();
    std::unique_ptr<BackendGraph> graph = gpu->capture([&] { chain(*gpu, dio); });
    if (!graph) {
      fmt::print("    the capture was refused\n");
      return false;
    }
    gpu->copy(dio.x, x2.view());
    graph->replay();
    gpu->synchronize();
    bool ok = compare("topk_ids", ids, dv.get(dio.ids), kBitwise);
    ok &= compare("topk_weights", wts, dv.get(dio.wts), kBitwise);
    ok &= compare("out", out, dv.get(dio.out), kBitwise);
    return ok && dv.guards_ok;
  });
}

void register_refnum_cases() {
  for (int n : {1, 7}) rms_norm_case(n, 7168, n == 7, 0, 0, true, true);
  rms_norm_case(5, 512, false, 576, 576, true, true, true);  // kv_a_layernorm: in place, the latent of a wider row
  rms_norm_case(3, 256, false, 0, 0, true, true, true);      // q_a_layernorm: in place
  rms_norm_case(3, 1536, false, 0, 2112, true, true);        // into a wider row
  rms_norm_case(9, 100, true, 0, 0, true, true);
  embedding_case(1, 1000, 7168, true);
  embedding_case(5, 37, 33, true);
  rope_case(1, 128, 192, 128, 64, 100, true);
  rope_case(33, 16, 192, 128, 64, 163839, true);  // positions up to max_position_embeddings
  rope_case(7, 1, 576, 512, 64, 4095, true);
  rope_case(3, 3, 20, 4, 10, 500, true);
  silu_add_case(5, 18432, true);
  silu_add_case(3, 1001, true, 40.f);  // exp's overflow, subnormal and underflow ends
  kv_store_case(1, 37, 64, 576, true);
  kv_store_case(13, 9, 16, 40, true);
  kv_gather_case({1, 130, 64}, 64, 512, 64, true);
  kv_gather_case({5, 17, 3}, 16, 24, 8, true);
  fill_token_ids_case(7, 3, 5, true);
  fill_token_ids_case(1000, 333, 500, true);
  linear_case(1, 1536, 7168, true, false, 0, false, 2, true);     // q_a_proj, one token
  linear_case(17, 576, 7168, true, false, 0, true, 2, true);      // kv_a_proj_with_mqa, ue8m0
  linear_case(3, 100, 200, true, false, 0, false, 2, true);       // partial blocks
  linear_case(9, 1024, 1536, true, false, 2000, false, 2, true);  // x_stride
  linear_case(2, 256, 1024, true, true, 0, false, 2, true);       // fp8 -> f32
  linear_case(5, 129, 300, true, true, 0, true, 2, true);         // odd, f32, ue8m0
  linear_case(17, 2048, 7168, false, false, 0, false, 2, false);  // bf16 weights
  linear_case(3, 1000, 7168, false, true, 0, false, 2, true);     // lm_head-like, f32 logits
  linear_case(4, 33, 70, false, false, 77, false, 2, true);       // odd bf16 with stride
  linear_case(1, 33, 70, false, true, 0, false, 2, true);
  absorb_case(1, 16, 128, 64, 128, 512, 4, true);
  absorb_case(4, 3, 24, 8, 16, 40, 4, true);
  absorb_case(9, 5, 32, 16, 64, 192, 4, true);
  prefill_case({{1, 1}}, 4, 128, 64, 128, 4, true);
  prefill_case({{77, 77}}, 2, 128, 64, 128, 4, true);
  prefill_case({{37, 37}, {16, 100}, {1, 300}}, 4, 128, 64, 128, 4, true);  // chunks over cached keys
  prefill_case({{0, 0}, {3, 3}, {0, 40}, {200, 200}, {2, 2}}, 3, 128, 64, 128, 4, true);
  prefill_case({{300, 300}, {45, 600}}, 2, 128, 64, 128, 4, true, 4.f);  // peaky; > 256 keys: several key chunks
  prefill_case({{20, 33}, {9, 9}}, 3, 24, 8, 40, 4, true);
  decode_case({1, 63, 64, 65, 300, 1000}, 16, 512, 64, 64, DecodeWhich::kReference, true);
  decode_case({17, 1}, 20, 512, 64, 64, DecodeWhich::kReference, true);
  decode_case({1}, 4, 512, 64, 64, DecodeWhich::kReference, true);
  decode_case({5, 200, 33}, 3, 64, 8, 16, DecodeWhich::kReference, true);
  router_case({"noaux_tc/sigmoid", 1, 7168, 256, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, true}, true);
  router_case({"noaux_tc/sigmoid", 33, 7168, 256, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, false}, true);
  router_case({"greedy/softmax", 17, 2048, 64, 1, 1, 6, RouterScoring::kSoftmax, RouterTopk::kGreedy, false, 1.f, true}, true);
  router_case({"group_limited/softmax", 9, 5120, 160, 8, 3, 6, RouterScoring::kSoftmax, RouterTopk::kGroupLimitedGreedy, false, 16.f, false}, true);
  router_case({"noaux_tc/softmax-odd", 5, 100, 12, 3, 2, 3, RouterScoring::kSoftmax, RouterTopk::kNoauxTc, true, 1.f, true}, true);
  router_case({"noaux_tc/sigmoid-E320", 3, 1024, 320, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, true}, true);
  moe_case({.n = 1, .d = 1024, .f = 256, .E = 16, .top_k = 4, .path = MoePath::kReference});
  moe_case({.n = 37, .d = 1024, .f = 512, .E = 16, .top_k = 4, .path = MoePath::kReference, .quick = false});
  moe_case({.n = 11, .d = 256, .f = 96, .E = 8, .top_k = 3, .fp8 = false, .path = MoePath::kReference});
  moe_case({.n = 5, .d = 144, .f = 80, .E = 8, .top_k = 3, .path = MoePath::kReference});
  moe_case({.n = 3, .d = 200, .f = 100, .E = 6, .top_k = 2, .path = MoePath::kReference});
  moe_case({.n = 9, .d = 1040, .f = 272, .E = 12, .top_k = 4, .ue8m0 = true, .path = MoePath::kReference});
  moe_case({.n = 45, .d = 384, .f = 200, .E = 10, .top_k = 4, .ue8m0 = true, .path = MoePath::kReference,
            .routing = MoeRouting::kHot});
  const SampleRowParams greedy{.temperature = 0.f};
  sample_case({.name = "greedy", .rows = 1, .vocab = 129280, .kinds = {greedy}, .quick = true, .refnum = true});
  sample_case({.name = "greedy-ties", .rows = 4, .vocab = 129280, .kinds = {greedy}, .ties = true, .quick = true,
               .refnum = true});
  sample_case({.name = "greedy-quantized-ties", .rows = 7, .vocab = 1001, .kinds = {greedy}, .quantized = true,
               .quick = true, .refnum = true});
  refnum_model_case("micro", Numerics::kFp8, true);
  refnum_model_case("micro", Numerics::kBf16, true);
  refnum_model_case("tiny", Numerics::kFp8, false);
  refnum_graph_case();
}

void register_cases() {
  register_refnum_cases();
  register_sample_cases();
  graph_scratch_case();
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
  staged_upload_case(1, 64, 50, 200, 1, true);     // one slot: every chunk waits for the previous DMA
  staged_upload_case(2, 256, 300, 1000, 4, true);  // tensors spanning up to 4 chunks
  staged_upload_case(4, 1024, 400, 4000, 8, false);
  checkpoint_load_case("micro", Numerics::kFp8, 1, true);   // ~5 MB through 1 MB chunks: 4 slots rotate
  checkpoint_load_case("micro", Numerics::kBf16, 1, true);  // host-dequantized temporaries, released once staged
  checkpoint_load_case("tiny", Numerics::kFp8, 0, false);   // the default 4 x 64 MB chunks
  device_oom_case();

  for (int n : {1, 7, 64}) rms_norm_case(n, 7168, n == 7, 0, 0, n < 64);
  rms_norm_case(5, 512, false, 576, 0, true);    // kv_a output: the latent part of a wider row
  rms_norm_case(3, 1536, false, 0, 2112, true);  // output into a wider row
  rms_norm_case(9, 100, true, 0, 0, true);
  // the register-resident kernel's 1, 2 and 4 vectors per thread, and rows it hands to the shared-memory kernel
  // (more than 4096 vectors; a stride that is not a multiple of 8)
  rms_norm_case(1, 7168, true, 0, 0, true);
  rms_norm_case(2, 16384, true, 0, 0, true);
  rms_norm_case(3, 20000, false, 0, 0, true);
  rms_norm_case(2, 40000, true, 0, 0, true);
  rms_norm_case(4, 512, false, 577, 0, true);
  rms_norm_case(2, 64, true, 0, 0, true);
  rms_norm_inplace_case(1, 1536);
  rms_norm_inplace_case(5, 7168);
  embedding_case(1, 1000, 7168);
  embedding_case(17, 129280, 64);
  embedding_case(5, 37, 33);
  rope_case(1, 128, 192, 128, 64, 100);
  rope_case(33, 16, 192, 128, 64, 32768);
  rope_case(7, 1, 576, 512, 64, 4095);
  rope_case(3, 3, 20, 4, 10, 500);
  rope_case(1, 1, 576, 512, 64, 1023);   // decode k_pe
  rope_case(2, 128, 192, 128, 64, 70000);
  silu_add_case(5, 18432);
  silu_add_case(3, 1001);
  kv_store_case(1, 37, 64, 576);
  kv_store_case(100, 37, 64, 576);
  kv_store_case(13, 9, 16, 40);
  kv_gather_case({1, 130, 64}, 64, 512, 64);
  kv_gather_case({8192}, 64, 512, 64);
  kv_gather_case({5, 17, 3}, 16, 24, 8);
  fill_token_ids_case(1, 1, 1);
  fill_token_ids_case(7, 3, 5);
  fill_token_ids_case(128, 128, 128);   // every row, one block
  fill_token_ids_case(1000, 333, 500);
  fill_token_ids_case(4096, 2048, 2048);  // 16 blocks of 128 pairs
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
  for (int which : {0, 1}) {
    absorb_case(1, 16, 128, 64, 128, 512, which, true);
    absorb_case(9, 16, 128, 64, 128, 512, which, false);
    absorb_case(4, 3, 24, 8, 16, 40, which, true);
  }
  absorb_case(17, 128, 128, 64, 128, 512, 0, true);   // a partial token tile, all 128 heads
  absorb_case(128, 128, 128, 64, 128, 512, 0, false);  // decode batch 128
  absorb_case(3, 5, 32, 16, 64, 192, 0, true);         // absorb_v at other dims: the slice kernel (rank 192)
  absorb_case(3, 5, 32, 16, 64, 192, 3, true);         // ... and the token-tile kernel (3 chunks, 64 rows)
  // The slice kernels at DeepSeek-V3 dims, every token-tile width (1, 2, 4, 8) and the auto switch around 8 tokens;
  // forced beyond 8 (tiles of 8 inside one CTA, a partial last tile) and the token-tile kernels forced below.
  for (int n : {1, 2, 3, 7, 8, 9, 33}) absorb_case(n, 128, 128, 64, 128, 512, 0, n <= 8);
  for (int n : {9, 33, 128}) absorb_case(n, 128, 128, 64, 128, 512, 2, n == 9);
  for (int n : {1, 8}) absorb_case(n, 128, 128, 64, 128, 512, 3, true);
  // Other dims the slice kernels take: nope 32 (row groups of 8), rank 256 (2 column slices, column groups of 64),
  // vd 64 (2 row slices), an odd head count; and rank 384 with nope 48 and rope 0.
  for (int n : {1, 5, 11}) absorb_case(n, 5, 32, 16, 64, 256, 2, true);
  absorb_case(6, 3, 48, 0, 32, 384, 0, true);
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
  // Long contexts, all 128 heads, P split and P in bf16 on the same inputs: the latter fails kTolAttnSplit
  // (split_tol_rejects). With DSV3_MLA_P_BF16=1 set, the split case fails too (its kernel rounds P to bf16).
  for (int which : {0, 3}) prefill_case({{2048, 8192}}, 128, 128, 64, 128, which, false);  // the end of 8192 tokens
  // P in bf16 (DSV3_MLA_P_BF16=1): the former numerics against their own bound.
  prefill_case({{100, 1000}, {1, 513}, {127, 255}, {5, 69}}, 2, 128, 64, 128, 3, true);
  prefill_case({{300, 300}, {45, 500}}, 2, 128, 64, 128, 3, true, 4.f);
  prefill_case({{1024, 1024}}, 128, 128, 64, 128, 3, false);
  prefill_error_case(0);
  prefill_error_case(1);
  for (DecodeWhich which : {DecodeWhich::kDefault, DecodeWhich::kSimple, DecodeWhich::kWmma}) {
    decode_case({1, 63, 64, 65, 1000, 8192}, 16, 512, 64, 64, which, false);
    decode_case({3000, 129}, 128, 512, 64, 64, which, false);
    decode_case({17, 1}, 20, 512, 64, 64, which, true);  // 20 heads: a partial head group
    decode_case({5, 200, 33}, 3, 64, 8, 16, which, true);  // odd dims: the CUDA-core kernel
  }
  // rank % 4 != 0 over 6 splits: mla_decode_combine's one-column path (rank % 4 == 0 takes float4 columns).
  decode_case({5, 700, 300}, 3, 62, 8, 16, DecodeWhich::kSimple, true);
  // The mma kernel (64 heads per block), forced (auto takes mma16 at 1-2 rows of 128 heads). With H/64 x rows < the
  // SM count the sequence is split (64 splits at most, >= 128 keys each) and mla_decode_combine merges; with >= 132
  // rows x head halves (an H200's SMs) it is not.
  for (int len : {1, 63, 64, 65, 1000}) decode_case({len}, 128, 512, 64, 64, DecodeWhich::kMma64, true);  // batch 1
  decode_case({8192}, 128, 512, 64, 64, DecodeWhich::kMma64, false);            // 64 splits of 128 keys
  decode_case({1, 63, 64, 65, 1000, 8192}, 64, 512, 64, 64, DecodeWhich::kMma64, false);  // 22 splits, mixed rows
  decode_case({3000, 129, 1, 700}, 128, 512, 64, 64, DecodeWhich::kMma64, true);
  decode_case({700, 33, 64, 129}, 64, 512, 64, 16, DecodeWhich::kMma64, true);  // tiles straddle 16-key blocks
  decode_case({300, 5}, 192, 512, 64, 128, DecodeWhich::kMma64, true);          // 3 head groups, 128-key blocks
  // Long contexts, many heads, P split and P in bf16 on the same inputs (the latter fails kTolAttnSplit:
  // split_tol_rejects): auto (mma16 for these 2 rows) and the 64-head kernel with P in bf16 at 128 heads, at 96
  // heads (not a multiple of 64) mma16 and wmma.
  for (DecodeWhich which : {DecodeWhich::kDefault, DecodeWhich::kPBf16}) {
    decode_case({4096, 8192}, 128, 512, 64, 64, which, false);
    decode_case({6000, 8192}, 96, 512, 64, 64, which, false);
  }
  decode_case({1000}, 128, 512, 64, 64, DecodeWhich::kMma64, true, 2560 - 16);  // a graph-wide table: per-row pieces
  // mma16 (16 heads per CTA, 64-key tiles, one buffer): auto at 1..2 rows of 128 heads, forced beyond; odd lengths
  // (tiles with 1..63 valid keys), block sizes 16 / 64 / 128 (tiles straddle blocks or share one), 16 / 48 heads.
  for (int len : {1, 2, 63, 64, 65, 1000, 1023}) decode_case({len}, 128, 512, 64, 64, DecodeWhich::kDefault, true);
  decode_case({3000, 129, 1, 700}, 128, 512, 64, 64, DecodeWhich::kMma16, true);
  decode_case({700, 33}, 128, 512, 64, 64, DecodeWhich::kDefault, true);
  decode_case({700, 33, 5}, 128, 512, 64, 64, DecodeWhich::kDefault, true);  // 3 rows, auto: mma
  decode_case({5, 1000, 64, 129, 2047, 1, 300}, 128, 512, 64, 64, DecodeWhich::kMma16, true);  // 7 rows
  decode_case({5, 1000, 64, 129, 2047, 1, 300, 77}, 128, 512, 64, 16, DecodeWhich::kMma16, true);  // 8 rows
  decode_case({5, 1000, 64, 129, 2047, 1, 300, 77, 640}, 128, 512, 64, 128, DecodeWhich::kMma16, true);  // 9 rows
  decode_case({5, 1000, 64, 129, 2047, 1, 300, 77, 640}, 128, 512, 64, 64, DecodeWhich::kDefault, true);  // auto: mma
  {
    std::vector<int> l33, l128;
    for (int r = 0; r < 33; ++r) l33.push_back(1 + (r * 97) % 700);
    for (int r = 0; r < 128; ++r) l128.push_back(1 + (r * 37) % 300);
    decode_case(l33, 128, 512, 64, 64, DecodeWhich::kMma16, true);
    decode_case(l128, 128, 512, 64, 64, DecodeWhich::kMma16, false);
  }
  decode_case({4096, 8192}, 128, 512, 64, 64, DecodeWhich::kMma16, false);  // 64 splits of up to 128 keys
  decode_case({300, 5}, 16, 512, 64, 64, DecodeWhich::kDefault, true);       // one head group
  decode_case({300, 5, 900}, 48, 512, 64, 64, DecodeWhich::kDefault, true);  // 3 head groups, H % 64 != 0
  // Graph-wide tables (163840 / 64 = 2560 blocks): the host sizes 33 splits for the width, each row its own pieces.
  decode_case({1000}, 128, 512, 64, 64, DecodeWhich::kDefault, true, 2560 - 16);
  decode_case({1, 64, 1100, 3000, 65, 5, 700, 2}, 128, 512, 64, 64, DecodeWhich::kMma16, true, 2560 - 47);
  // Split sizes forced: one tile per CTA (the most splits and partials), three tiles per CTA (the tile loop, the
  // next tile's copies behind P·V), and pieces beyond the 64-split cap.
  decode_case({1000, 1, 190, 64}, 128, 512, 64, 64, DecodeWhich::kMma16Split64, true);
  decode_case({1000, 1, 190, 193, 577}, 128, 512, 64, 16, DecodeWhich::kMma16Split192, true);
  decode_case({8192}, 128, 512, 64, 64, DecodeWhich::kMma16Split64, false);  // 128 tiles, 64 splits of 2
  decode_case({3000, 129, 1, 700}, 128, 512, 64, 64, DecodeWhich::kMma16PBf16, true);
  // P in bf16 (DSV3_MLA_P_BF16=1): the former numerics against their own Tol.
  decode_case({3000, 129, 1, 700}, 128, 512, 64, 64, DecodeWhich::kPBf16, true);
  decode_case({1, 63, 64, 65, 1000, 8192}, 16, 512, 64, 64, DecodeWhich::kWmmaPBf16, false);
  decode_case({17, 1}, 20, 512, 64, 64, DecodeWhich::kWmmaPBf16, true);
  {
    std::vector<int> lens;  // 140 rows (>= 132 blocks: no split), lengths 1..~2000 in one call
    for (int r = 0; r < 140; ++r) lens.push_back(r == 7 ? 2000 : r == 90 ? 1500 : 1 + (r * 37) % 300);
    decode_case(lens, 64, 512, 64, 64, DecodeWhich::kDefault, true);
    decode_case({2000, 1500, 1, 64, 65, 1000, 127, 129}, 64, 512, 64, 64, DecodeWhich::kDefault, true);
  }
  router_case({"noaux_tc/sigmoid", 33, 7168, 256, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, false});
  router_case({"noaux_tc/sigmoid", 1, 7168, 256, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, true});
  router_case({"greedy/softmax", 17, 2048, 64, 1, 1, 6, RouterScoring::kSoftmax, RouterTopk::kGreedy, false, 1.f, true});
  router_case({"group_limited/softmax", 9, 5120, 160, 8, 3, 6, RouterScoring::kSoftmax, RouterTopk::kGroupLimitedGreedy, false, 16.f, false});
  router_case({"noaux_tc/softmax-odd", 5, 100, 12, 3, 2, 3, RouterScoring::kSoftmax, RouterTopk::kNoauxTc, true, 1.f, true});
  // More experts than threads (the untiled path) and a prefill-size batch (the tiled path, many blocks).
  router_case({"noaux_tc/sigmoid-E320", 3, 1024, 320, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, true});
  router_case({"noaux_tc/sigmoid", 700, 7168, 256, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, false});
  // The fused selection's largest batch (255 tokens: every per-token counter) and 2 tokens.
  router_case({"noaux_tc/sigmoid", 255, 2048, 256, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, true});
  router_case({"noaux_tc/sigmoid", 2, 7168, 256, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, true});
  router_case({"group_limited/softmax", 90, 5120, 160, 8, 3, 6, RouterScoring::kSoftmax, RouterTopk::kGroupLimitedGreedy, false, 16.f, false});
  router_case({"noaux_tc/softmax-odd", 70, 100, 12, 3, 2, 3, RouterScoring::kSoftmax, RouterTopk::kNoauxTc, true, 1.f, true});
  // The tiled logit kernels (>= 256 tokens; >= 2048 the large tile): V3 dims, and odd d / E / token count (every tile has a tail).
  router_case({"noaux_tc/sigmoid", 2100, 7168, 256, 8, 4, 8, RouterScoring::kSigmoid, RouterTopk::kNoauxTc, true, 2.5f, false});
  router_case({"noaux_tc/softmax-odd", 2050, 300, 12, 3, 2, 3, RouterScoring::kSoftmax, RouterTopk::kNoauxTc, true, 1.f, true});
  router_case({"noaux_tc/softmax-odd", 300, 200, 12, 3, 2, 3, RouterScoring::kSoftmax, RouterTopk::kNoauxTc, true, 1.f, true});
  // MoE. The original shapes on every path (auto runs the grouped kernels for these: n·top_k <= 16·E).
  for (MoePath path : {MoePath::kAuto, MoePath::kFallback, MoePath::kLoop}) {
    moe_case({.n = 1, .d = 1024, .f = 256, .E = 16, .top_k = 4, .path = path});
    moe_case({.n = 37, .d = 1024, .f = 512, .E = 16, .top_k = 4, .path = path, .quick = false});
    moe_case({.n = 11, .d = 256, .f = 96, .E = 8, .top_k = 3, .fp8 = false, .path = path});
  }
  // The grouped kernels: odd dims (d, f multiples of 16 but not of 128: partial K blocks, a partial last gate/up
  // tile and down tile; and not multiples of 16: the bytewise loads), ue8m0 scales, experts with zero rows, one
  // expert with > 16 rows (chunks 16 + 16 + ... + rest, the 8-row switch), exactly 16 and 17 rows, a batch above
  // the auto threshold forced grouped, and bf16 experts (which stay on the loop).
  moe_case({.n = 5, .d = 144, .f = 80, .E = 8, .top_k = 3, .path = MoePath::kGrouped});
  moe_case({.n = 3, .d = 200, .f = 100, .E = 6, .top_k = 2, .path = MoePath::kGrouped});
  moe_case({.n = 9, .d = 1040, .f = 272, .E = 12, .top_k = 4, .ue8m0 = true, .path = MoePath::kGrouped});
  moe_case({.n = 40, .d = 512, .f = 256, .E = 16, .top_k = 4, .routing = MoeRouting::kHot});  // auto: grouped
  moe_case({.n = 45, .d = 384, .f = 200, .E = 10, .top_k = 4, .ue8m0 = true, .path = MoePath::kGrouped,
            .routing = MoeRouting::kHot});
  moe_case({.n = 70, .d = 256, .f = 128, .E = 4, .top_k = 2, .path = MoePath::kGrouped});  // 140 > 16·4
  moe_case({.n = 70, .d = 256, .f = 128, .E = 4, .top_k = 2});                             // auto: the loop
  moe_case({.n = 6, .d = 256, .f = 96, .E = 8, .top_k = 3, .fp8 = false, .path = MoePath::kGrouped});
  // The combine: more than 8 entries per token (its loads go in groups of 8), and d % 8 != 0 (its per-column path).
  moe_case({.n = 3, .d = 256, .f = 64, .E = 16, .top_k = 12, .path = MoePath::kGrouped});
  moe_case({.n = 4, .d = 100, .f = 48, .E = 6, .top_k = 2, .fp8 = false, .path = MoePath::kLoop});
  // The decode kernels (moe_decode.cu) at 1, 2, 3, 8, 9 tokens: partial K blocks and partial gate/up and down tiles
  // (d 144, f 80), the bytewise loads (d 200, f 100), ue8m0, hot experts (chunks of 16 + rest, 17 and exactly 16
  // rows, the 8-row switch) next to experts with zero rows, the most entries (128), forced K splits (1; 3: uneven
  // ranges; 8 with 2 K-blocks: empty ranges) and prefetch distances (0, 4). Every decode case also checks that a
  // second call gives the same bits.
  moe_case({.n = 1, .d = 1024, .f = 256, .E = 16, .top_k = 4, .path = MoePath::kDecode});
  moe_case({.n = 2, .d = 512, .f = 384, .E = 8, .top_k = 4, .path = MoePath::kDecode});
  moe_case({.n = 3, .d = 144, .f = 80, .E = 8, .top_k = 3, .path = MoePath::kDecode});
  moe_case({.n = 3, .d = 200, .f = 100, .E = 6, .top_k = 2, .path = MoePath::kDecode});
  moe_case({.n = 8, .d = 1040, .f = 272, .E = 12, .top_k = 4, .ue8m0 = true, .path = MoePath::kDecode});
  moe_case({.n = 9, .d = 384, .f = 200, .E = 10, .top_k = 4, .ue8m0 = true, .path = MoePath::kDecode,
            .routing = MoeRouting::kHot});
  moe_case({.n = 20, .d = 256, .f = 128, .E = 4, .top_k = 3, .path = MoePath::kDecode, .routing = MoeRouting::kHot});
  moe_case({.n = 32, .d = 256, .f = 256, .E = 40, .top_k = 4, .path = MoePath::kDecode});  // 128 entries
  moe_case({.n = 2, .d = 1024, .f = 256, .E = 16, .top_k = 4, .path = MoePath::kDecode, .split = 1});
  moe_case({.n = 2, .d = 1024, .f = 256, .E = 16, .top_k = 4, .path = MoePath::kDecode, .split = 3});
  moe_case({.n = 3, .d = 144, .f = 80, .E = 8, .top_k = 3, .path = MoePath::kDecode, .split = 8});
  moe_case({.n = 1, .d = 1024, .f = 256, .E = 16, .top_k = 4, .path = MoePath::kDecode, .prefetch = 0});
  moe_case({.n = 9, .d = 1024, .f = 512, .E = 16, .top_k = 4, .path = MoePath::kDecode, .routing = MoeRouting::kHot,
            .split = 2, .prefetch = 4});
  moe_case({.n = 40, .d = 256, .f = 128, .E = 16, .top_k = 4, .path = MoePath::kDecode});  // 160 > 128: grouped
  moe_case({.n = 6, .d = 256, .f = 96, .E = 8, .top_k = 3, .fp8 = false, .path = MoePath::kDecode});
  moe_decode_graph_case();
  // DeepSeek-V3 dims: E = 256, top_k = 8, d = 7168, f = 2048 (hit experts only get distinct weights).
  for (int n : {1, 4})
    for (MoePath path : {MoePath::kAuto, MoePath::kLoop})
      moe_case({.n = n, .d = 7168, .f = 2048, .E = 256, .top_k = 8, .ue8m0 = n == 4, .path = path, .hit_only = true,
                .quick = false});
  moe_case({.n = 2, .d = 7168, .f = 2048, .E = 256, .top_k = 8, .path = MoePath::kDecode, .hit_only = true,
            .quick = false});
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

// table_blocks > 0: block tables that many blocks wide (the rest unused), as a captured CUDA graph's table is
// max_seq_len / block_size wide (163840 / 64 = 2560 for DeepSeek-V3): the launcher sizes the splits for that width.
void perf_decode(Env& env, Backend& gpu, const char* label, const std::vector<int>& ctxs, const std::vector<int>& batches,
                 int table_blocks = 0) {
  const int H = 128, entry = 576, rank = 512, bs = 64;
  const int max_ctx = *std::max_element(ctxs.begin(), ctxs.end()), max_b = *std::max_element(batches.begin(), batches.end());
  const int64_t n_blocks = static_cast<int64_t>(max_b) * max_ctx / bs;
  fmt::print("\n== perf: mla_decode ({}), H={}, entry={}, block_size={}, {}{} ==\n", label, H, entry, bs,
             env.p_bf16 ? "P in bf16 (DSV3_MLA_P_BF16=1)" : "P split into bf16 hi + lo",
             table_blocks ? fmt::format(", block tables {} wide", table_blocks) : "");
  // At H=128 every KV byte meets 2 * 128 * (576 + 512) / 1152 = 242 FLOPs: the tensor cores' bf16 peak (~989
  // TFLOPS dense, less for mma.sync) caps the KV rate near 4.1 TB/s, so TFLOPS is printed next to the HBM share.
  fmt::print("{:>7} {:>6} {:>10} {:>10} {:>8} {:>8}\n", "context", "batch", "time_us", "KV_GB/s", "%4540", "TFLOPS");
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
      const int mb = ctx / bs, width = std::max(mb, table_blocks);
      std::vector<int32_t> perm = shuffled(rng, static_cast<int>(std::min<int64_t>(n_blocks, INT32_MAX)));
      std::vector<int32_t> table(static_cast<size_t>(B) * width, 0);
      for (int b = 0; b < B; ++b)
        for (int k = 0; k < mb; ++k) table[static_cast<size_t>(b) * width + k] = perm[static_cast<size_t>(b) * mb + k];
      Tensor bt = host_i32({B, width}, table), lens = host_i32({B}, std::vector<int32_t>(static_cast<size_t>(B), ctx));
      Tensor q = rand_bf16(rng, {B, H, entry}, 0.5f);
      Dev io(gpu);
      MlaDecodeParams p{.q_abs = io.up(q, "q"), .cache = cache, .block_table = io.up(bt, "bt"), .seq_lens = io.up(lens, "lens"),
                        .out = io.out(DType::kBF16, {B, H, rank}, "out"), .kv_lora_rank = rank,
                        .softmax_scale = 0.07f};
      const double t = time_it(gpu, [&](int) { gpu.mla_decode(p); });
      const double gbs = static_cast<double>(B) * ctx * entry * 2 / t;
      const double tflops = 2.0 * B * ctx * H * (entry + rank) / t / 1e12;
      fmt::print("{:>7} {:>6} {:>10.1f} {:>10.0f} {:>7.1f}% {:>8.1f}\n", ctx, B, t * 1e6, gbs / 1e9, 100 * gbs / kHbmRead,
                 tflops);
    }
  }
}

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

// Causal prefill attention at H = 128 (DeepSeek-V3): one 4096-token prompt, 8 prompts of 1024 (the v3-slice
// benchmark's batch) and a 1024-token chunk after 3072 cached tokens, on each kernel. FLOPs are counted exactly:
// Σ over queries of the keys it sees (kv_len - q_len + i + 1) x H x 2 x (192 + 128).
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

// mla_absorb_q / mla_absorb_v at DeepSeek-V3 dims: per decode step each reads its 16.8 MB half of kv_b once. kv_b
// rotates over 5 device copies (168 MB, past the 50 MB L2), as a model's layers do; µs per call of back-to-back
// launches and the weight read as % of 4540 GB/s, for the launcher's choice (auto: slice kernels up to 8 tokens),
// the slice kernels and the token-tile kernels forced (DSV3_MLA_ABSORB=slice|tile).
void perf_absorb(Env& env) {
  const int H = 128, nope = 128, rope = 64, vd = 128, rank = 512, copies = 5;
  const double bytes = H * 128.0 * rank * 2;
  fmt::print("\n== perf: mla_absorb_q / mla_absorb_v, H={}, rank={} (weight {:.1f} MB each, {} copies rotating) ==\n",
             H, rank, bytes / 1e6, copies);
  Rng rng(46);
  Tensor kvb = rand_bf16(rng, {H * (nope + vd), rank}, 0.05f);
  Dev dw(*env.gpu);
  std::vector<TensorView> dkvb{dw.up(kvb, "kv_b")};
  for (int c = 1; c < copies; ++c) {
    dkvb.push_back(dw.out(DType::kBF16, {H * (nope + vd), rank}, "kv_b copy"));
    env.gpu->copy(dkvb.back(), dkvb[0]);
  }
  env.gpu->synchronize();
  struct Variant {
    const char* name;
    Backend* gpu;
  };
  const Variant variants[] = {{"auto", env.gpu}, {"slice", env.gpu_absorb_slice}, {"tile", env.gpu_absorb_tile}};
  for (const char* op : {"mla_absorb_q", "mla_absorb_v"}) {
    fmt::print("{:<13} {:>5}", op, "n");
    for (const Variant& v : variants) fmt::print(" {:>9} {:>7}", fmt::format("{}_us", v.name), "%4540");
    fmt::print("\n");
    for (int n : {1, 2, 4, 8, 16, 32, 128}) {
      Tensor q = rand_bf16(rng, {n, H, nope + rope}), o = rand_bf16(rng, {n, H, rank});
      Dev d(*env.gpu);
      TensorView dq = d.up(q, "q"), dout_q = d.out(DType::kBF16, {n, H, rank + rope}, "q_abs");
      TensorView dlat = d.up(o, "o"), dout_v = d.out(DType::kBF16, {n, H, vd}, "out");
      fmt::print("{:<13} {:>5}", "", n);
      for (const Variant& v : variants) {
        Backend& gpu = *v.gpu;
        const double t = time_it(gpu, [&](int i) {
          const TensorView& w = dkvb[static_cast<size_t>(i % copies)];
          if (std::string(op) == "mla_absorb_q")
            gpu.mla_absorb_q({.q = dq, .kv_b = w, .q_abs = dout_q, .qk_nope_head_dim = nope, .v_head_dim = vd});
          else
            gpu.mla_absorb_v({.o_latent = dlat, .kv_b = w, .out = dout_v, .qk_nope_head_dim = nope, .v_head_dim = vd});
        });
        fmt::print(" {:>9.1f} {:>6.1f}%", t * 1e6, 100 * bytes / t / kHbmRead);
      }
      fmt::print("\n");
    }
  }
}

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
  fmt::print("\n== perf: mla_prefill, H={}, nope 128 + rope 64, v 128, causal, {} ==\n", H,
             env.p_bf16 ? "P in bf16 (DSV3_MLA_P_BF16=1)" : "P split into bf16 hi + lo");
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
    gpu = make_cuda_backend(o);
    o.force_gemm_fallback = true;
    gpu_fb = make_cuda_backend(o);
    o.force_gemm_fallback = false;
    o.mla_decode = MlaDecodeImpl::kSimple;
    o.simple_mla_prefill = true;
    gpu_simple = make_cuda_backend(o);
    o.simple_mla_prefill = false;
    o.mla_decode = MlaDecodeImpl::kWmma;
    gpu_wmma = make_cuda_backend(o);
    const bool p_bf16 = o.mla_p_bf16;
    o.mla_p_bf16 = true;
    gpu_wmma_p_bf16 = make_cuda_backend(o);
    o.mla_decode = MlaDecodeImpl::kMma;
    gpu_p_bf16 = make_cuda_backend(o);
    o.mla_decode = MlaDecodeImpl::kAuto;
    o.mla_p_bf16 = p_bf16;
    o.mla_prefill_q_rows = 64;
    gpu_prefill64 = make_cuda_backend(o);
    o.mla_prefill_q_rows = 128;
    o.no_fp8_gemv = true;
    if (perf) gpu_nogemv = make_cuda_backend(o);
    o.no_fp8_gemv = false;
    o.moe_path = CudaMoePath::kLoop;
    gpu_moe_loop = make_cuda_backend(o);
    o.moe_path = CudaMoePath::kGrouped;
    gpu_moe_grouped = make_cuda_backend(o);
    o.moe_path = CudaMoePath::kDecode;
    gpu_moe_decode = make_cuda_backend(o);
    o.moe_path = CudaMoePath::kAuto;
    o.gemv_v2 = true;
    gpu_gemv2 = make_cuda_backend(o);
    o.gemv_v2 = false;
    o.mla_decode = MlaDecodeImpl::kMma;
    gpu_mma64 = make_cuda_backend(o);
    o.mla_decode = MlaDecodeImpl::kMma16;
    gpu_mma16 = make_cuda_backend(o);
    o.mla_decode_split_keys = 64;
    gpu_mma16_split64 = make_cuda_backend(o);
    o.mla_decode_split_keys = 192;
    gpu_mma16_split192 = make_cuda_backend(o);
    o.mla_decode_split_keys = 0;
    o.mla_p_bf16 = true;
    gpu_mma16_p_bf16 = make_cuda_backend(o);
    o.mla_p_bf16 = p_bf16;
    o.mla_decode = MlaDecodeImpl::kAuto;
    o.mla_absorb = MlaAbsorbImpl::kSlice;
    gpu_absorb_slice = make_cuda_backend(o);
    o.mla_absorb = MlaAbsorbImpl::kTile;
    gpu_absorb_tile = make_cuda_backend(o);
    o.mla_absorb = MlaAbsorbImpl::kAuto;
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
