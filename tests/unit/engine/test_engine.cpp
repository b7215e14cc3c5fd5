// test_engine.cpp: the engine on the CPU backend — batch invariance, chunked prefill and preemption give the
// unconstrained outputs, prefix reuse, streaming, stop strings, cancellation (tests/unit/engine).
#include <filesystem>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "dsv3/engine/engine.h"
#include "dsv3/io/tiny_model.h"
#include "unit/engine/micro_model.h"

namespace dsv3 {
namespace {
namespace fs = std::filesystem;

// One micro model per test binary.
const std::string& micro_dir() {
  static const std::string dir = write_micro_model("dsv3_engine_micro", 3);
  return dir;
}

// The tiny preset with the DeepSeek-V3 tokenizer ("" without it).
const std::string& tiny_with_tokenizer() {
  static const std::string dir = write_tiny_with_tokenizer("dsv3_engine_tiny");
  return dir;
}

EngineConfig base_config(const std::string& dir) { return engine_test_config(dir); }

std::vector<int32_t> random_prompt(std::mt19937& rng, int len, int vocab = 1000) {
  std::uniform_int_distribution<int> d(2, vocab - 1);
  std::vector<int32_t> p;
  for (int i = 0; i < len; ++i) p.push_back(d(rng));
  return p;
}

SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

std::vector<std::vector<int32_t>> run_all(const EngineConfig& cfg, const std::vector<std::vector<int32_t>>& prompts,
                                          const std::vector<SamplingParams>& params) {
  Engine e(cfg);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (size_t i = 0; i < prompts.size(); ++i) hs.push_back(e.submit({prompts[i], params[i], false}));
  std::vector<std::vector<int32_t>> out;
  for (auto& h : hs) {
    RequestOutput o = h->wait();
    EXPECT_TRUE(o.error.empty()) << o.error;
    out.push_back(o.token_ids);
  }
  return out;
}

TEST(Engine, GreedyAndSeededOutputsAreBatchInvariant) {
  std::mt19937 rng(1);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SamplingParams> params;
  for (int i = 0; i < 6; ++i) {
    prompts.push_back(random_prompt(rng, 5 + 7 * i));
    SamplingParams p = greedy(12);
    if (i % 2) {  // seeded sampling
      p.temperature = 0.9f;
      p.top_p = 0.9f;
      p.seed = 100 + i;
    }
    params.push_back(p);
  }
  const auto batched = run_all(base_config(micro_dir()), prompts, params);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto alone = run_all(base_config(micro_dir()), {prompts[i]}, {params[i]});
    EXPECT_EQ(alone[0], batched[i]) << "request " << i;
    EXPECT_EQ(batched[i].size(), 12u);
  }
}

TEST(Engine, ChunkedPrefillAndPreemptionGiveTheUnconstrainedOutputs) {
  std::mt19937 rng(2);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SamplingParams> params;
  for (int i = 0; i < 8; ++i) {
    prompts.push_back(random_prompt(rng, 20 + 13 * i));
    SamplingParams p = greedy(20 + i);
    if (i % 3 == 0) {
      p.temperature = 1.0f;
      p.seed = 7 + i;
    }
    params.push_back(p);
  }
  const auto want = run_all(base_config(micro_dir()), prompts, params);
  EngineConfig chunked = base_config(micro_dir());
  chunked.enable_chunked_prefill = true;
  chunked.max_num_tokens = 16;  // prompts of up to 111 tokens go in many chunks
  EXPECT_EQ(run_all(chunked, prompts, params), want);
  EngineConfig tight = base_config(micro_dir());
  tight.policy = sched::CapacityPolicy::kMaxUtilization;
  tight.kv_max_tokens = 64 * 5;  // 5 blocks for ~8 requests of up to 3 blocks: preemption
  tight.enable_chunked_prefill = true;
  tight.max_num_tokens = 64;
  Engine e(tight);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (size_t i = 0; i < prompts.size(); ++i) hs.push_back(e.submit({prompts[i], params[i], false}));
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(hs[i]->wait().token_ids, want[i]) << "request " << i;
  int64_t preempted = 0;
  for (const auto& s : e.take_iteration_stats()) preempted += s.sched.n_preempted;
  EXPECT_GT(preempted, 0) << "the pool was meant to force preemption";
}

TEST(Engine, PrefixReuseReportsCachedTokensAndKeepsOutputs) {
  std::mt19937 rng(3);
  const auto shared = random_prompt(rng, 150);
  auto a = shared, b = shared;
  a.push_back(5);
  b.push_back(9);
  b.push_back(11);
  EngineConfig cfg = base_config(micro_dir());
  const auto want_b = run_all(cfg, {b}, {greedy(8)})[0];
  Engine e(cfg);
  RequestOutput oa = e.submit({a, greedy(8), false})->wait();
  EXPECT_EQ(oa.n_cached_tokens, 0);
  RequestOutput ob = e.submit({b, greedy(8), false})->wait();
  EXPECT_EQ(ob.n_cached_tokens, 128);  // two full blocks of 64 shared
  EXPECT_EQ(ob.token_ids, want_b);
}

TEST(Engine, CancellationFreesEverything) {
  std::mt19937 rng(4);
  EngineConfig cfg = base_config(micro_dir());
  cfg.enable_block_reuse = false;
  cfg.kv_max_tokens = 64 * 8;
  Engine e(cfg);
  auto h = e.submit({random_prompt(rng, 40), greedy(500), true});
  RequestOutput first;
  ASSERT_TRUE(h->next(first));  // running
  e.abort(h->id());
  RequestOutput fin = h->wait();
  EXPECT_TRUE(fin.finished);
  EXPECT_EQ(fin.finish_reason, FinishReason::kCancelled);
  EXPECT_LT(fin.token_ids.size(), 500u);
  e.wait_idle();
  // A request needing every block still fits: nothing leaked.
  SamplingParams p = greedy(1);
  auto all = e.submit({random_prompt(rng, 64 * 8 - 1), p, false})->wait();
  EXPECT_TRUE(all.error.empty()) << all.error;
}

TEST(Engine, ShutdownEndsOutstandingRequests) {
  std::mt19937 rng(6);
  std::shared_ptr<RequestHandle> h;
  {
    Engine e(base_config(micro_dir()));
    h = e.submit({random_prompt(rng, 30), greedy(900), true});
    RequestOutput first;
    ASSERT_TRUE(h->next(first));
  }  // destroyed while the request runs
  RequestOutput fin = h->wait();
  EXPECT_TRUE(fin.finished);
  EXPECT_EQ(fin.finish_reason, FinishReason::kCancelled);
  EXPECT_NE(fin.error.find("shut down"), std::string::npos);
}

TEST(Engine, BadRequestsFailAloneWithClearErrors) {
  Engine e(base_config(micro_dir()));
  std::mt19937 rng(5);
  try {
    e.submit({{1, 2, 5000}, greedy(4), false});
    ADD_FAILURE();
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("5000"), std::string::npos);
  }
  SamplingParams bad = greedy(4);
  bad.top_p = 2.0f;
  EXPECT_THROW(e.submit({{1, 2}, bad, false}), Error);
  EXPECT_THROW(e.submit({random_prompt(rng, 1020), greedy(10), false}), Error);  // > max_seq_len
  auto ok = e.submit({{3, 4, 5}, greedy(3), false})->wait();
  EXPECT_EQ(ok.token_ids.size(), 3u);
}

TEST(Engine, StreamingDeltasConcatenateAndStopStringsCutExactly) {
  const std::string dir = tiny_with_tokenizer();
  if (dir.empty()) GTEST_SKIP() << "models/tokenizers/deepseek-v3 absent (run scripts/setup.sh)";
  LLM llm(base_config(dir));
  SamplingParams p = greedy(24);
  auto h = llm.generate_async({.text = "The capital of France is"}, p, true);
  std::string streamed;
  std::vector<int32_t> ids;
  RequestOutput o;
  while (h->next(o)) {
    streamed += o.text_delta;
    ids.insert(ids.end(), o.token_ids_delta.begin(), o.token_ids_delta.end());
  }
  RequestOutput fin = h->wait();
  EXPECT_EQ(streamed, fin.text);
  EXPECT_EQ(ids, fin.token_ids);
  EXPECT_EQ(fin.text, llm.tokenizer()->decode(fin.token_ids, true));
  ASSERT_GE(fin.text.size(), 6u);
  // Stop at a substring of the unconstrained text: the output is cut right before it (or includes it).
  const std::string stop = fin.text.substr(fin.text.size() / 2, 3);
  const size_t at = fin.text.find(stop);
  SamplingParams ps = p;
  ps.stop = {stop};
  RequestOutput cut = llm.generate({{.text = "The capital of France is"}}, ps)[0];
  EXPECT_EQ(cut.text, fin.text.substr(0, at));
  EXPECT_EQ(cut.finish_reason, FinishReason::kStop);
  ps.include_stop_str_in_output = true;
  RequestOutput incl = llm.generate({{.text = "The capital of France is"}}, ps)[0];
  EXPECT_EQ(incl.text, fin.text.substr(0, at + stop.size()));
}

}  // namespace
}  // namespace dsv3
