// cases_moe.cpp: test_ops cases of the MoE ops: router (noaux_tc / greedy / group-limited, ties, the tiled logit
// kernels) and moe_experts on every path (loop, grouped, decode kernels, fallback, reference), at odd and
// DeepSeek-V3 dims, and router + decode kernels inside a CUDA graph.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dsv3/backend/cuda/cuda_backend.h"
#include "dsv3/base/hash.h"
#include "ops_cases.h"
#include "ops_env.h"

namespace dsv3::ops_test {

void router_case(RouterCfg c, bool refnum) {
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

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace

void register_moe_cases() {
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

}  // namespace dsv3::ops_test
