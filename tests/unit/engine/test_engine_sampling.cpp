// test_engine_sampling.cpp: the engine's backend-sampling path (logits left in backend memory, Backend::sample, only
// ids copied back) run on the CPU backend through EngineConfig::backend_sampling = kAlways: it must give the host
// Sampler's outputs exactly — tokens and logprobs — with rows that need penalties or min_tokens masking still sampled
// on the host in the same step (tests/unit/engine, label cpu).
#include <filesystem>
#include <random>

#include <gtest/gtest.h>

#include "dsv3/engine/engine.h"
#include "dsv3/io/tiny_model.h"
#include "unit/engine/micro_model.h"

namespace dsv3 {
namespace {

// One micro model per test binary.
const std::string& micro_dir() {
  static const std::string dir = write_micro_model("dsv3_engine_sampling_micro", 5);
  return dir;
}

struct RunResult {
  std::vector<RequestOutput> outputs;
  int64_t logit_rows = 0, backend_rows = 0;
};

RunResult run(BackendSampling mode, const std::vector<std::vector<int32_t>>& prompts,
              const std::vector<SamplingParams>& params, const std::string& backend = "cpu") {
  EngineConfig c;
  c.backend = backend;
  c.model_dir = micro_dir();
  c.check_integrity = true;
  c.kv_max_tokens = 64 * 64;
  c.max_seq_len = 512;
  c.backend_sampling = mode;
  Engine e(c);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (size_t i = 0; i < prompts.size(); ++i) hs.push_back(e.submit({prompts[i], params[i], false}));
  RunResult r;
  for (auto& h : hs) {
    r.outputs.push_back(h->wait());
    EXPECT_TRUE(r.outputs.back().error.empty()) << r.outputs.back().error;
  }
  e.wait_idle();  // the last step's statistics are recorded after its outputs are pushed
  for (const auto& s : e.take_iteration_stats()) {
    r.logit_rows += s.n_logit_rows;
    r.backend_rows += s.n_backend_sampled;
  }
  return r;
}

// Nine requests: six the backend samples (greedy, temperature + the chosen token's logprob, top-k, top-p, min-p, all
// of them), one with a frequency penalty (its first token on the backend, then the host), one with a repetition
// penalty and one with top-n logprobs (host rows in backend-sampled steps).
void mixed_requests(std::vector<std::vector<int32_t>>* prompts, std::vector<SamplingParams>* params) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> tok(2, 999);
  for (int i = 0; i < 9; ++i) {
    std::vector<int32_t> p;
    for (int t = 0; t < 4 + 5 * i; ++t) p.push_back(tok(rng));
    prompts->push_back(p);
    SamplingParams sp;
    sp.max_tokens = 10;
    sp.ignore_eos = true;
    sp.seed = 40 + i;
    switch (i) {
      case 0: sp.temperature = 0; break;
      case 1: sp.temperature = 0.8f; sp.logprobs = 0; break;
      case 2: sp.top_k = 5; break;
      case 3: sp.top_p = 0.8f; sp.temperature = 1.3f; break;
      case 4: sp.min_p = 0.1f; break;
      case 5: sp.top_k = 20; sp.top_p = 0.9f; sp.min_p = 0.02f; sp.temperature = 0.7f; break;
      case 6: sp.repetition_penalty = 1.3f; break;
      case 7: sp.frequency_penalty = 0.5f; break;
      case 8: sp.logprobs = 3; break;
    }
    params->push_back(sp);
  }
}

TEST(EngineSampling, BackendPathGivesTheHostSamplersOutputs) {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SamplingParams> params;
  mixed_requests(&prompts, &params);
  const RunResult host = run(BackendSampling::kOff, prompts, params);
  const RunResult dev = run(BackendSampling::kAlways, prompts, params);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(dev.outputs[i].token_ids, host.outputs[i].token_ids) << "request " << i;
    EXPECT_EQ(dev.outputs[i].logprobs, host.outputs[i].logprobs) << "request " << i;  // the same code: bitwise
    EXPECT_EQ(dev.outputs[i].token_ids.size(), 10u);
  }
  EXPECT_EQ(host.backend_rows, 0);
  EXPECT_EQ(dev.logit_rows, host.logit_rows);
  // Requests 0-5 (10 tokens each) and request 7's first token on the backend; 6, 8 and 7's later tokens on the host.
  EXPECT_EQ(dev.backend_rows, 6 * 10 + 1);
}

// The same on the GPU (skipped without one): kAuto samples on the device there. Tokens must equal the host path's
// (the forward pass is the same; the kernel reproduces the Sampler, see tests/ops "sample"); the chosen token's
// logprob is a parallel fp64 sum there, equal to about one fp32 ulp.
TEST(EngineSampling, CudaBackendPathGivesTheHostSamplersOutputs) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SamplingParams> params;
  mixed_requests(&prompts, &params);
  const RunResult host = run(BackendSampling::kOff, prompts, params, "cuda");
  const RunResult dev = run(BackendSampling::kAuto, prompts, params, "cuda");
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(dev.outputs[i].token_ids, host.outputs[i].token_ids) << "request " << i;
    ASSERT_EQ(dev.outputs[i].logprobs.size(), host.outputs[i].logprobs.size()) << "request " << i;
    for (size_t t = 0; t < dev.outputs[i].logprobs.size(); ++t)
      EXPECT_NEAR(dev.outputs[i].logprobs[t], host.outputs[i].logprobs[t], 1e-5) << "request " << i << " token " << t;
  }
  EXPECT_EQ(dev.backend_rows, 6 * 10 + 1);
}

TEST(EngineSampling, MinTokensRowsStayOnTheHost) {
  SamplingParams sp;
  sp.max_tokens = 6;
  sp.min_tokens = 4;
  sp.temperature = 0;
  sp.seed = 3;
  sp.end_id = 7;  // masked for the first 4 tokens: only the host Sampler masks it
  const std::vector<std::vector<int32_t>> prompts{{5, 6, 7, 8}};
  const RunResult host = run(BackendSampling::kOff, prompts, {sp});
  const RunResult dev = run(BackendSampling::kAlways, prompts, {sp});
  EXPECT_EQ(dev.outputs[0].token_ids, host.outputs[0].token_ids);
  EXPECT_EQ(dev.backend_rows, dev.logit_rows - 4);  // steps 0-3 masked on the host, the rest on the backend
}

}  // namespace
}  // namespace dsv3
