// test_graph_replay.cpp: the model's CUDA-graph path, on the CPU (tests/unit). A recording backend implements
// Backend::capture as a CUDA graph behaves — ops enqueued during capture are recorded, not run, and a replay runs them
// again on the same pointers — over the CPU reference. Decode steps through captured, padded graphs must give the
// logits of plain eager steps bit for bit (every CPU op is row-independent), captures happen once per size, and a
// refused capture (what the CUDA backend does when an op needs the host) falls back to eager steps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/io/tiny_model.h"
#include "dsv3/io/weight_source.h"
#include "dsv3/model/deepseek_v3.h"
#include "unit/device_like_backend.h"

namespace dsv3 {
namespace {

class Recording final : public BackendGraph {
 public:
  std::vector<std::function<void()>> ops;
  void replay() override {
    for (auto& op : ops) op();
  }
};

class RecordingBackend final : public DeviceLikeBackend {
 public:
  explicit RecordingBackend(bool refuse_capture = false) : refuse_(refuse_capture) {}
  std::string name() const override { return "recording"; }
  void synchronize() override { EXPECT_EQ(rec_, nullptr) << "synchronize() inside a capture"; }

  std::unique_ptr<BackendGraph> capture(const std::function<void()>& body) override {
    ++captures;
    auto g = std::make_unique<Recording>();
    rec_ = &g->ops;
    body();
    rec_ = nullptr;
    if (refuse_) return nullptr;
    ops_recorded += static_cast<int>(g->ops.size());
    return g;
  }

  int captures = 0, ops_recorded = 0;

 private:
  void run(std::function<void()> op) override {
    if (rec_) rec_->push_back(std::move(op));
    else op();
  }
  bool refuse_;
  std::vector<std::function<void()>>* rec_ = nullptr;
};

constexpr int kBlock = 16, kBlocks = 16, kMaxBlocks = 4;

struct Model {
  ModelConfig config = tiny_model_preset("micro");
  RecordingBackend backend;
  std::unique_ptr<DeepseekV3> model;
  std::unique_ptr<KvCache> cache;
  bool stacked = false;  // q_a ‖ kv_a and gate ‖ up loaded as stacked weights (the loader's default off the CPU)
  explicit Model(bool graphs, bool refuse = false, bool stack = true) : backend(refuse) {
    auto src = WeightSource::dummy(config, 5);
    if (!stack) setenv("DSV3_STACK_PROJ", "0", 1);
    ModelWeights w = load_model_weights(*src, backend, Numerics::kFp8);
    unsetenv("DSV3_STACK_PROJ");
    stacked = w.layers[0].self_attn.q_kv_a.weight && w.layers[0].mlp.gate_up.weight;
    model = std::make_unique<DeepseekV3>(config, std::move(w), backend, Numerics::kFp8);
    cache = std::make_unique<KvCache>(model->n_cache_layers(), kBlocks, kBlock, config.kv_entry_dim(),
                                      backend.allocator());
    if (graphs)
      model->set_cuda_graphs({.batch_sizes = {1, 2, 4, 8}, .padding = true, .max_blocks_per_seq = kMaxBlocks,
                              .pad_block = kBlocks - 1});
  }
};

struct Seq {
  std::vector<int32_t> tokens;
  std::vector<int32_t> blocks;
};

// Sequence i owns blocks [i * kMaxBlocks, (i + 1) * kMaxBlocks) (all below the pad block, 15).
std::vector<Seq> make_seqs() {
  std::vector<Seq> s(3);
  const int lens[] = {5, 9, 17};
  for (int i = 0; i < 3; ++i) {
    for (int t = 0; t < lens[i]; ++t) s[i].tokens.push_back((37 * i + 11 * t + 3) % 1000);
    for (int b = 0; b < kMaxBlocks - 1; ++b) s[i].blocks.push_back(i * kMaxBlocks + b);
  }
  return s;
}

ForwardBatch prefill_batch(const std::vector<Seq>& seqs) {
  ForwardBatch b;
  for (const Seq& s : seqs) {
    b.token_ids.insert(b.token_ids.end(), s.tokens.begin(), s.tokens.end());
    b.seqs.push_back({static_cast<int32_t>(s.tokens.size()), 0, false, s.blocks});
    b.logit_rows.push_back(static_cast<int32_t>(b.token_ids.size()) - 1);
  }
  return b;
}

// One decode token for each of the listed sequences (their last token, at position len - 1).
ForwardBatch decode_batch(const std::vector<Seq>& seqs, const std::vector<int>& which) {
  ForwardBatch b;
  for (int i : which) {
    const Seq& s = seqs[i];
    b.token_ids.push_back(s.tokens.back());
    b.seqs.push_back({1, static_cast<int32_t>(s.tokens.size()) - 1, true, s.blocks});
    b.logit_rows.push_back(static_cast<int32_t>(b.logit_rows.size()));
  }
  return b;
}

int32_t argmax(const float* row, int64_t n) { return static_cast<int32_t>(std::max_element(row, row + n) - row); }

// Runs prefill, then decode steps over changing subsets of the sequences in both models; the logits must be equal.
void run_and_compare(Model& graph, Model& eager) {
  std::vector<Seq> seqs = make_seqs();
  const int64_t vocab = graph.config.vocab_size;
  ForwardOutput a = graph.model->forward(prefill_batch(seqs), *graph.cache);
  ForwardOutput e = eager.model->forward(prefill_batch(seqs), *eager.cache);
  ASSERT_EQ(a.logits, e.logits);
  for (size_t i = 0; i < seqs.size(); ++i) seqs[i].tokens.push_back(argmax(e.logits.data() + i * vocab, vocab));
  // Sizes: 3 -> padded to 4 (capture), 3 (replay), 2 (capture), 1 (capture), 3 (replay), 2 (replay).
  const std::vector<std::vector<int>> steps = {{0, 1, 2}, {0, 1, 2}, {0, 2}, {1}, {0, 1, 2}, {1, 2}};
  for (size_t st = 0; st < steps.size(); ++st) {
    a = graph.model->forward(decode_batch(seqs, steps[st]), *graph.cache);
    e = eager.model->forward(decode_batch(seqs, steps[st]), *eager.cache);
    ASSERT_EQ(a.logits.size(), steps[st].size() * vocab);
    ASSERT_TRUE(a.logits == e.logits) << "decode step " << st;
    for (size_t r = 0; r < steps[st].size(); ++r)
      seqs[steps[st][r]].tokens.push_back(argmax(e.logits.data() + r * vocab, vocab));
  }
}

TEST(GraphReplay, PaddedCapturedDecodeStepsEqualEagerSteps) {
  Model graph(true), eager(false);
  run_and_compare(graph, eager);
  const GraphStats& s = graph.model->graph_stats();
  EXPECT_EQ(s.captures, 3);  // sizes 4, 2, 1
  EXPECT_EQ(s.replays, 3);
  EXPECT_EQ(s.refused, 0);
  EXPECT_EQ(graph.backend.captures, 3);
  EXPECT_GT(graph.backend.ops_recorded, 3 * 10);
  EXPECT_EQ(eager.backend.captures, 0);
}

// The stacked linears (one op with out2 for q_a ‖ kv_a and gate ‖ up) against the same model loaded apart: every
// prefill and decode logit bit for bit (each output column's sum is its own weight row's, stacked or not).
TEST(GraphReplay, StackedProjectionsGiveTheLogitsOfSeparateOnes) {
  Model stacked(true), apart(false, false, /*stack=*/false);
  ASSERT_TRUE(stacked.stacked);
  ASSERT_FALSE(apart.stacked);
  run_and_compare(stacked, apart);
}

TEST(GraphReplay, RefusedCaptureRunsEagerly) {
  Model graph(true, /*refuse=*/true), eager(false);
  run_and_compare(graph, eager);
  const GraphStats& s = graph.model->graph_stats();
  EXPECT_EQ(s.captures, 0);
  EXPECT_EQ(s.replays, 0);
  EXPECT_EQ(s.refused, 3);
  EXPECT_EQ(graph.backend.captures, 3) << "each size is tried once";
}

TEST(GraphReplay, StepsOutsideTheCapturedShapesRunEagerly) {
  Model graph(true);
  std::vector<Seq> seqs = make_seqs();
  graph.model->forward(prefill_batch(seqs), *graph.cache);
  // Two tokens for one sequence (not decode-only in the captured sense) and a batch wanting hidden states.
  ForwardBatch b = decode_batch(seqs, {0});
  b.token_ids.push_back(7);
  b.seqs[0].n_tokens = 2;
  b.logit_rows = {1};
  graph.model->forward(b, *graph.cache);
  ForwardBatch h = decode_batch(seqs, {1, 2});
  h.want_hidden = true;
  ForwardOutput o = graph.model->forward(h, *graph.cache);
  EXPECT_TRUE(o.hidden.view());
  EXPECT_EQ(graph.model->graph_stats().captures + graph.model->graph_stats().refused, 0);
}

}  // namespace
}  // namespace dsv3
