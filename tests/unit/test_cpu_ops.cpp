// test_cpu_ops.cpp: CPU reference ops against math worked out in the test (tests/unit).
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/io/tiny_model.h"
#include "dsv3/model/rope.h"

namespace dsv3 {
namespace {

Tensor bf16_tensor(Shape s, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (auto& x : v) x = nd(rng);
  return make_host_tensor(DType::kBF16, s, v.data());
}
float at(const Tensor& t, int64_t i) { return load_float(t.view(), i); }

TEST(Rope, YarnFrequenciesOfDeepSeekV3) {
  // model-spec §3.6 step 6: dims 0-10 unchanged, 23-31 divided by 40, 11-22 blended; example values.
  const auto f = rope_inv_freq(tiny_model_preset("v3-slice"));
  ASSERT_EQ(f.size(), 32u);
  for (int i = 0; i <= 10; ++i) EXPECT_NEAR(f[i], std::pow(10000.0, -i / 32.0), 1e-6 * f[i]) << i;
  for (int i = 23; i < 32; ++i) EXPECT_NEAR(f[i], std::pow(10000.0, -i / 32.0) / 40, 1e-6 * f[i]) << i;
  for (int i = 11; i <= 22; ++i) {
    const double r = (i - 10) / 13.0;
    EXPECT_NEAR(f[i], std::pow(10000.0, -i / 32.0) * (1 - r + r / 40), 1e-6 * f[i]) << i;
  }
  // fp32 values: relative 1e-6 (an fp32 ulp is 6e-8, pow/blend add a few)
  EXPECT_NEAR(f[11], 3.900692657e-02, 3.900692657e-02 * 1e-6);
  EXPECT_NEAR(f[16], 5.5e-03, 5.5e-03 * 1e-6);
  EXPECT_NEAR(f[22], 1.778279410e-04, 1.778279410e-04 * 1e-6);
  EXPECT_NEAR(f[23], 3.333803580e-05, 3.333803580e-05 * 1e-6);
  EXPECT_NEAR(f[31], 3.333803580e-06, 3.333803580e-06 * 1e-6);
}

TEST(Rope, RotatesAdjacentPairsInPlace) {
  CpuBackend be;
  std::mt19937 rng(1);
  const int64_t n = 3, heads = 2, width = 10, offset = 2, half = 4;
  Tensor x = bf16_tensor({n, heads, width}, rng);
  Tensor orig = bf16_tensor({n, heads, width}, rng);
  std::memcpy(orig.view().data, x.view().data, x.nbytes());
  std::vector<float> fv = {1.0f, 0.5f, 0.1f, 0.01f};
  Tensor f = make_host_tensor(DType::kF32, {half}, fv.data());
  Tensor pos(DType::kI32, {n});
  pos.as<int32_t>()[0] = 0, pos.as<int32_t>()[1] = 5, pos.as<int32_t>()[2] = 1000;
  be.rope({.x = x, .positions = pos, .inv_freq = f, .offset = offset});
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t base = (t * heads + h) * width;
      for (int64_t c = 0; c < width; ++c) {
        if (c < offset || c >= offset + 2 * half) {
          EXPECT_EQ(at(x, base + c), at(orig, base + c));  // outside the rope dims: untouched
          continue;
        }
        const int64_t i = (c - offset) / 2;
        const double th = static_cast<double>(pos.as<int32_t>()[t]) * fv[i];
        const double x0 = at(orig, base + offset + 2 * i), x1 = at(orig, base + offset + 2 * i + 1);
        const double want = (c - offset) % 2 == 0 ? x0 * std::cos(th) - x1 * std::sin(th)
                                                  : x0 * std::sin(th) + x1 * std::cos(th);
        EXPECT_NEAR(at(x, base + c), want, 1e-2 * (std::fabs(want) + 1e-1)) << t << " " << h << " " << c;
      }
    }
}

TEST(RmsNorm, MatchesTheFormulaWithAndWithoutResidual) {
  CpuBackend be;
  std::mt19937 rng(2);
  const int64_t n = 4, d = 37;
  Tensor x = bf16_tensor({n, d}, rng, 3.0f), w = bf16_tensor({d}, rng), res = bf16_tensor({n, d}, rng);
  Tensor res0 = bf16_tensor({n, d}, rng);
  std::memcpy(res0.view().data, res.view().data, res.nbytes());
  Tensor out(DType::kBF16, {n, d}), out2(DType::kBF16, {n, d});
  be.rms_norm({.x = x, .weight = w, .out = out, .eps = 1e-6f});
  be.rms_norm({.x = x, .residual = res, .weight = w, .out = out2, .eps = 1e-6f});
  for (int64_t t = 0; t < n; ++t) {
    double ss = 0, ss2 = 0;
    std::vector<double> r(d);
    for (int64_t i = 0; i < d; ++i) {
      ss += std::pow(at(x, t * d + i), 2);
      r[i] = round_bf16(at(res0, t * d + i) + at(x, t * d + i));
      ss2 += r[i] * r[i];
      EXPECT_EQ(at(res, t * d + i), r[i]);  // residual updated in place, rounded to bf16
    }
    for (int64_t i = 0; i < d; ++i) {
      const double want = at(x, t * d + i) / std::sqrt(ss / d + 1e-6) * at(w, i);
      EXPECT_NEAR(at(out, t * d + i), want, std::fabs(want) / 128 + 1e-6);
      const double want2 = r[i] / std::sqrt(ss2 / d + 1e-6) * at(w, i);
      EXPECT_NEAR(at(out2, t * d + i), want2, std::fabs(want2) / 128 + 1e-6);
    }
  }
}

// Router on hand-made logits: x = [1] and gate[e] = z_e, so the logits are exactly z.
struct RouterCase {
  std::vector<float> z, bias;
  RouterScoring scoring;
  RouterTopk method;
  int64_t n_group, topk_group, top_k;
  bool norm;
  float scale;
};
std::pair<std::vector<int32_t>, std::vector<float>> route(const RouterCase& rc) {
  CpuBackend be;
  const int64_t E = static_cast<int64_t>(rc.z.size());
  float one = 1.0f;
  Tensor x = make_host_tensor(DType::kBF16, {1, 1}, &one);
  Tensor gate = make_host_tensor(DType::kBF16, {E, 1}, rc.z.data());
  Tensor bias = rc.bias.empty() ? Tensor() : make_host_tensor(DType::kF32, {E}, rc.bias.data());
  Tensor ids(DType::kI32, {1, rc.top_k}), w(DType::kF32, {1, rc.top_k});
  be.router({.x = x, .gate = gate, .bias = bias.empty() ? TensorView{} : bias.view(), .topk_ids = ids,
             .topk_weights = w, .scoring = rc.scoring, .method = rc.method, .n_group = rc.n_group,
             .topk_group = rc.topk_group, .top_k = rc.top_k, .norm_topk_prob = rc.norm,
             .routed_scaling_factor = rc.scale});
  return {std::vector<int32_t>(ids.as<int32_t>(), ids.as<int32_t>() + rc.top_k),
          std::vector<float>(w.as<float>(), w.as<float>() + rc.top_k)};
}
double sig(double v) { return 1 / (1 + std::exp(-v)); }

TEST(Router, NoauxTcGroupMaskBiasSelectsOnlyAndNormalizedWeights) {
  // sigmoid(z) + bias: b = .6225 .2689 -2.1192 .9526 | .8775 1.0622 .7311 .1192 (pairs are groups 0..3)
  // group top-2 sums: .8914, -1.1666, 1.9397, .8503 -> keep groups 2 and 0. Without the group mask expert 3
  // (b .9526) would beat expert 4; with it the top-2 is {5, 4}. Weights use the un-biased sigmoid.
  RouterCase rc{{0.5f, -1.f, 2.f, 3.f, -0.5f, 0.25f, 1.f, -2.f}, {0, 0, -3, 0, 0.5f, 0.5f, 0, 0},
                RouterScoring::kSigmoid, RouterTopk::kNoauxTc, 4, 2, 2, true, 2.5f};
  auto [ids, w] = route(rc);
  EXPECT_EQ(ids, (std::vector<int32_t>{5, 4}));
  const double s5 = sig(0.25), s4 = sig(-0.5);
  EXPECT_NEAR(w[0], s5 / (s5 + s4) * 2.5, 1e-6);
  EXPECT_NEAR(w[1], s4 / (s5 + s4) * 2.5, 1e-6);
  // topk_group = 4 keeps every group: then expert 3 wins second place.
  rc.topk_group = 4;
  EXPECT_EQ(route(rc).first, (std::vector<int32_t>{5, 3}));
}

TEST(Router, SoftmaxGreedyAndGroupLimitedGreedy) {
  const std::vector<float> z = {0.5f, 2.0f, -1.0f, 1.75f, 0.0f, 1.5f};
  double sum = 0;
  for (float v : z) sum += std::exp(v);
  // greedy: plain top-3 of the softmax, weights not renormalized, times the scale
  RouterCase g{z, {}, RouterScoring::kSoftmax, RouterTopk::kGreedy, 1, 1, 3, false, 16.0f};
  auto [ids, w] = route(g);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 3, 5}));
  EXPECT_NEAR(w[0], std::exp(2.0) / sum * 16, 1e-5);
  EXPECT_NEAR(w[2], std::exp(1.5) / sum * 16, 1e-5);
  // group_limited_greedy, 3 groups of 2 ranked by their max: {1: 2.0}, {3: 1.75}, {5: 1.5}; keep 2 groups ->
  // experts 0,1,2,3 -> top-3 {1, 3, 0}
  RouterCase gl{z, {}, RouterScoring::kSoftmax, RouterTopk::kGroupLimitedGreedy, 3, 2, 3, false, 1.0f};
  EXPECT_EQ(route(gl).first, (std::vector<int32_t>{1, 3, 0}));
}

TEST(Linear, Fp8BlockScaledGemmEqualsThePerBlockFormula) {
  // C[m,n] = Σ_kb (Σ_k qa·qw) · sa[m,kb] · sw[n/128,kb], with K = 200 (a partial K block) and 130 outputs (two
  // block rows), computed here in double from the quantized codes.
  CpuBackend be;
  std::mt19937 rng(3);
  const int64_t M = 3, K = 200, N = 130;
  Tensor x = bf16_tensor({M, K}, rng);
  Tensor w(DType::kFP8E4M3, {N, K}), s(DType::kF32, {2, 2});
  std::uniform_int_distribution<int> code(0, 0x7d);
  for (int64_t i = 0; i < N * K; ++i) w.as<uint8_t>()[i] = static_cast<uint8_t>(code(rng) | (i % 3 ? 0 : 0x80));
  const float sv[] = {0.01f, 0.02f, 0.003f, 0.5f};
  std::copy(sv, sv + 4, s.as<float>());
  Tensor out(DType::kF32, {M, N});
  be.linear({.x = x, .w = {w, s}, .out = out});
  for (int64_t m = 0; m < M; ++m) {
    std::vector<float> row(K), sa(2);
    std::vector<uint8_t> q(K);
    for (int64_t k = 0; k < K; ++k) row[k] = at(x, m * K + k);
    quantize_row_fp8(row.data(), K, false, q.data(), sa.data());
    for (int64_t n = 0; n < N; ++n) {
      double want = 0;
      for (int kb = 0; kb < 2; ++kb) {
        double blk = 0;
        for (int64_t k = kb * 128; k < std::min<int64_t>(K, kb * 128 + 128); ++k)
          blk += double(fp8e4m3_to_f32(q[k])) * fp8e4m3_to_f32(w.as<uint8_t>()[n * K + k]);
        want += blk * sa[kb] * sv[(n / 128) * 2 + kb];
      }
      EXPECT_NEAR(out.as<float>()[m * N + n], want, 1e-4 * (std::fabs(want) + 1)) << m << " " << n;
    }
  }
}

TEST(Linear, StackedWeightSplitsTheColumnsOfOneLinear) {
  // w = [m1 + m2, k] with out2: out gets columns [0, m1), out2 the rest, each bit for bit the unsplit linear's
  // columns. FP8 splits at a multiple of 128 (whole scale blocks; the second part's last block partial), bf16 anywhere.
  CpuBackend be;
  std::mt19937 rng(5);
  const int64_t M = 3, K = 200;
  Tensor x = bf16_tensor({M, K}, rng);
  auto check = [&](const LinearWeight& w, int64_t m1, DType out_dtype) {
    const int64_t m = w.weight.dim(0);
    Tensor full(out_dtype, {M, m}), a(out_dtype, {M, m1}), b(out_dtype, {M, m - m1});
    be.linear({.x = x, .w = w, .out = full});
    be.linear({.x = x, .w = w, .out = a, .out2 = b});
    const size_t es = dtype_size(out_dtype);
    for (int64_t r = 0; r < M; ++r) {
      EXPECT_EQ(std::memcmp(a.as<char>() + r * m1 * es, full.as<char>() + r * m * es, m1 * es), 0) << r;
      EXPECT_EQ(std::memcmp(b.as<char>() + r * (m - m1) * es, full.as<char>() + (r * m + m1) * es, (m - m1) * es), 0)
          << r;
    }
  };
  Tensor w8(DType::kFP8E4M3, {256 + 130, K}), s8(DType::kF32, {4, 2});
  std::uniform_int_distribution<int> code(0, 0x7d);
  for (int64_t i = 0; i < w8.numel(); ++i) w8.as<uint8_t>()[i] = static_cast<uint8_t>(code(rng) | (i % 3 ? 0 : 0x80));
  for (int64_t i = 0; i < s8.numel(); ++i) s8.as<float>()[i] = 0.001f * static_cast<float>(i + 1);
  check({w8, s8}, 256, DType::kBF16);
  check({w8, s8}, 128, DType::kF32);
  Tensor w16 = bf16_tensor({37, K}, rng, 0.1f);
  check({w16, {}}, 5, DType::kBF16);
  // Bad splits are input errors that name the problem.
  Tensor o100(DType::kBF16, {M, 100}), o286(DType::kBF16, {M, 286}), o30(DType::kBF16, {M, 30});
  Tensor o258f(DType::kF32, {M, 130});
  auto message = [&](const LinearParams& p) {
    try {
      be.linear(p);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({.x = x, .w = {w8, s8}, .out = o100, .out2 = o286}).find("not a multiple of 128"),
            std::string::npos);
  EXPECT_NE(message({.x = x, .w = {w8, s8}, .out = o100, .out2 = o30}).find("stacked w"), std::string::npos);
  Tensor o256(DType::kBF16, {M, 256});
  EXPECT_NE(message({.x = x, .w = {w8, s8}, .out = o256, .out2 = o258f}).find("out2 dtype"), std::string::npos);
}

TEST(Mla, AbsorbedDecodeEqualsTheNaiveFormOverAPagedCache) {
  // The two MLA forms are algebraically identical (model-spec §3.8): run both on the same cache contents.
  CpuBackend be;
  std::mt19937 rng(4);
  const int64_t H = 3, nope = 16, rope = 8, vd = 12, rank = 24, entry = rank + rope, T = 70, bs = 16;
  const int64_t nb = (T + bs - 1) / bs;
  Tensor kv_b = bf16_tensor({H * (nope + vd), rank}, rng, 0.3f);
  Tensor cache = bf16_tensor({nb + 2, bs, entry}, rng);
  std::vector<int32_t> blocks = {5, 2, 0, 3, 1};  // shuffled
  Tensor q = bf16_tensor({1, H, nope + rope}, rng);
  Tensor bt(DType::kI32, {1, nb}), lens(DType::kI32, {1});
  std::copy(blocks.begin(), blocks.end(), bt.as<int32_t>());
  lens.as<int32_t>()[0] = T;
  const float scale = 0.2f;
  // absorbed
  Tensor q_abs(DType::kBF16, {1, H, entry}), o_lat(DType::kBF16, {1, H, rank}), o1(DType::kBF16, {1, H, vd});
  be.mla_absorb_q({.q = q, .kv_b = kv_b, .q_abs = q_abs, .qk_nope_head_dim = nope, .v_head_dim = vd});
  be.mla_decode({.q_abs = q_abs, .cache = cache, .block_table = bt, .seq_lens = lens, .out = o_lat,
                 .kv_lora_rank = rank, .softmax_scale = scale});
  be.mla_absorb_v({.o_latent = o_lat, .kv_b = kv_b, .out = o1, .qk_nope_head_dim = nope, .v_head_dim = vd});
  // naive: gather, kv_b_proj, attention of the last position
  Tensor lat(DType::kBF16, {T, rank}), pe(DType::kBF16, {T, rope}), kv(DType::kBF16, {T, H * (nope + vd)});
  Tensor cu_q(DType::kI32, {2}), cu_kv(DType::kI32, {2}), o2(DType::kBF16, {1, H, vd});
  cu_q.as<int32_t>()[0] = 0, cu_q.as<int32_t>()[1] = 1, cu_kv.as<int32_t>()[0] = 0, cu_kv.as<int32_t>()[1] = T;
  be.kv_cache_gather({.cache = cache, .block_table = bt, .cu_kv = cu_kv, .latent_out = lat, .pe_out = pe});
  for (int64_t t = 0; t < T; ++t)  // the gather reads the right slot of the right block
    EXPECT_EQ(lat.as<bf16>()[t * rank].bits, cache.as<bf16>()[(blocks[t / bs] * bs + t % bs) * entry].bits);
  be.linear({.x = lat, .w = {kv_b, {}}, .out = kv});
  be.mla_prefill({.q = q, .kv = kv.view().reshape({T, H, nope + vd}), .k_pe = pe, .cu_q = cu_q, .cu_kv = cu_kv,
                  .out = o2, .qk_nope_head_dim = nope, .v_head_dim = vd, .softmax_scale = scale});
  double num = 0, den = 0;
  for (int64_t i = 0; i < H * vd; ++i) {
    num += std::pow(at(o1, i) - at(o2, i), 2);
    den += std::pow(at(o2, i), 2);
  }
  EXPECT_LT(std::sqrt(num / den), 1e-2);  // bf16 rounding of q̃, õ, k_nope, v
}

TEST(Moe, ExpertsAreWeightedAndSummed) {
  // Two tokens, 3 bf16 experts; the output equals Σ_k w_k · down(silu(gate x) * up x) computed through the ops.
  CpuBackend be;
  std::mt19937 rng(5);
  const int64_t d = 8, f = 6, E = 3;
  std::vector<Tensor> keep;
  std::vector<ExpertWeights> ex;
  for (int e = 0; e < E; ++e) {
    keep.push_back(bf16_tensor({f, d}, rng, 0.5f));
    keep.push_back(bf16_tensor({f, d}, rng, 0.5f));
    keep.push_back(bf16_tensor({d, f}, rng, 0.5f));
    ex.push_back({{keep[keep.size() - 3], {}}, {keep[keep.size() - 2], {}}, {keep.back(), {}}});
  }
  Tensor x = bf16_tensor({2, d}, rng);
  Tensor ids(DType::kI32, {2, 2}), w(DType::kF32, {2, 2}), out(DType::kBF16, {2, d});
  const int32_t idv[] = {2, 0, 1, 2};
  const float wv[] = {0.7f, 1.3f, 0.25f, 2.0f};
  std::copy(idv, idv + 4, ids.as<int32_t>());
  std::copy(wv, wv + 4, w.as<float>());
  be.moe_experts({.x = x, .topk_ids = ids, .topk_weights = w, .experts = ex.data(), .n_experts = E, .out = out});
  for (int t = 0; t < 2; ++t) {
    std::vector<double> want(d, 0.0);
    for (int k = 0; k < 2; ++k) {
      const ExpertWeights& e = ex[idv[t * 2 + k]];
      for (int64_t o = 0; o < d; ++o) {
        double y = 0;
        for (int64_t j = 0; j < f; ++j) {
          double g = 0, u = 0;
          for (int64_t i = 0; i < d; ++i) {
            g += at(x, t * d + i) * load_float(e.gate.weight, j * d + i);
            u += at(x, t * d + i) * load_float(e.up.weight, j * d + i);
          }
          y += g / (1 + std::exp(-g)) * u * load_float(e.down.weight, o * f + j);
        }
        want[o] += wv[t * 2 + k] * y;
      }
    }
    for (int64_t o = 0; o < d; ++o) EXPECT_NEAR(at(out, t * d + o), want[o], 0.02 * std::fabs(want[o]) + 0.02);
  }
}

}  // namespace
}  // namespace dsv3
