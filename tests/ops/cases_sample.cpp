// cases_sample.cpp: test_ops cases of sample: the drawn tokens must equal the CPU reference's (greedy, temperature,
// top-k / top-p / min-p, ties, masked and bad rows, strided logits, the V3 vocabulary and odd sizes), logprobs to an
// fp32 ulp; the inputs are redrawn away from the razor edges where the two could legitimately differ.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dsv3/base/sampling.h"
#include "ops_cases.h"
#include "ops_env.h"

namespace dsv3::ops_test {

// ------------------------------------------------------------------------------------------------- sample

namespace {

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

}  // namespace

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

}  // namespace dsv3::ops_test
