// cases_attention.cpp: test_ops cases of the MLA ops: mla_absorb_q / mla_absorb_v (slice, token-tile and fallback
// kernels), mla_prefill and mla_decode on every kernel, with the per-element bounds of the tensor-core kernels
// (within_attn_bound) and the check that the P-split tolerance rejects P in bf16 (split_tol_rejects).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/base/numeric.h"
#include "dsv3/base/thread_pool.h"
#include "ops_cases.h"
#include "ops_env.h"

namespace dsv3::ops_test {

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

namespace {

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

}  // namespace

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
                  float q_std) {
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

namespace {

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

}  // namespace

// Rows with their own context lengths over one shuffled pool of cache blocks, on the backend that selects `kernel`
// (DSV3_MLA_DECODE). The case name says which kernel runs, as CudaBackend::mla_decode picks it: auto (the default)
// takes mma16 (entry 576, rank 512, H % 16 == 0) while rows x H <= 256, then mma (H % 64 == 0), then wmma (entry 576,
// rank 512), then simple; a forced kernel falls back the same way. The tensor-core kernels split P into bf16 hi + lo
// (kTolAttnSplit); "-pbf16" marks them with P rounded to bf16 (DSV3_MLA_P_BF16=1, kTolDecodePBf16). With
// DSV3_MLA_P_BF16=1 set, the split cases with more than a few keys fail. extra_blocks widens the block table beyond
// the longest row (unused entries -1), as a captured CUDA graph's table is max_seq_len wide: the host then sizes the
// splits for that width and each row cuts its own length into them (mla_decode_common.cuh decode_row).
void decode_case(std::vector<int> lens, int H, int rank, int rope, int bs, DecodeWhich which, bool quick,
                 int extra_blocks) {
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

void register_attention_cases() {
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
}

}  // namespace dsv3::ops_test
