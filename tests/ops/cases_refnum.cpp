// cases_refnum.cpp: the reference-numerics cases (vars start with "refnum", `test_ops -p refnum`): every op on the
// DSV3_NUMERICS=reference backend against the CPU bit for bit, the whole model forward, and a decode-like chain
// inside a CUDA graph. register_refnum_cases runs first in the case list.
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dsv3/backend/cuda/cuda_backend.h"
#include "dsv3/io/tiny_model.h"
#include "dsv3/io/weight_source.h"
#include "dsv3/model/deepseek_v3.h"
#include "dsv3/model/weights.h"
#include "ops_cases.h"
#include "ops_env.h"

namespace dsv3::ops_test {

// ------------------------------------------------------------------------------------------------- refnum

namespace {

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

}  // namespace

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

}  // namespace dsv3::ops_test
