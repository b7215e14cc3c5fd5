// test_sample_op.cpp: the backend's `sample` op on the CPU backend equals the engine's Sampler row by row (tokens and
// processed logprobs bit for bit), with the tie, masking and bad-input rules checked against values worked out here
// (tests/unit/engine, label cpu). The CUDA kernel is checked against CpuBackend::sample in tests/ops ("sample").
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/base/error.h"
#include "dsv3/engine/sampler.h"

namespace dsv3 {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

struct OpResult {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

// Runs CpuBackend::sample over rows of `vocab` logits stored `stride` apart.
OpResult run_op(const std::vector<float>& logits, int rows, int vocab, int stride,
                const std::vector<SampleRowParams>& params) {
  CpuBackend cpu;
  OpResult r{std::vector<int32_t>(rows, 12345), std::vector<float>(rows, 0.f)};
  TensorView l{const_cast<float*>(logits.data()), DType::kF32, {rows, vocab}, Device::kCpu};
  cpu.sample({.logits = l,
              .logits_stride = stride == vocab ? 0 : stride,
              .rows = params.data(),
              .tokens = TensorView{r.tokens.data(), DType::kI32, {rows}, Device::kCpu},
              .logprobs = TensorView{r.logprobs.data(), DType::kF32, {rows}, Device::kCpu}});
  return r;
}

SamplingParams to_sampling(const SampleRowParams& p) {
  SamplingParams s;
  s.temperature = p.temperature;
  s.top_k = p.top_k;
  s.top_p = p.top_p;
  s.min_p = p.min_p;
  s.logprobs = 0;  // the chosen token's logprob only
  return s;
}

TEST(SampleOp, EqualsTheSamplerOnMixedRows) {
  const int vocab = 3001, stride = 3008, rows = 60;
  std::mt19937_64 rng(17);
  std::normal_distribution<float> normal(0.f, 3.f);
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  std::vector<float> logits(static_cast<size_t>(rows) * stride, std::nanf(""));  // padding: never read
  const SampleRowParams kinds[] = {
      {.temperature = 0.f},
      {.temperature = 0.8f},
      {.temperature = 1.f, .top_k = 1},
      {.temperature = 0.9f, .top_k = 50},
      {.temperature = 1.f, .top_p = 0.9f},
      {.temperature = 0.7f, .top_p = 0.5f},
      {.temperature = 1.f, .min_p = 0.05f},
      {.temperature = 0.7f, .top_k = 50, .top_p = 0.9f, .min_p = 0.02f},
      {.temperature = 1.3f, .top_k = 100000, .top_p = 0.99f},
  };
  std::vector<SampleRowParams> params;
  for (int i = 0; i < rows; ++i) {
    SampleRowParams p = kinds[i % std::size(kinds)];
    p.seed = 1000 + static_cast<uint64_t>(i) * 7919;
    p.seq_index = static_cast<uint32_t>(i % 3);
    p.step = static_cast<uint32_t>(i * 5);
    params.push_back(p);
    const bool quantized = i % 4 == 1, masked = i % 5 == 2;  // ties everywhere; 40% -inf
    for (int v = 0; v < vocab; ++v) {
      float x = normal(rng);
      if (quantized) x = std::nearbyint(x * 4.f) / 4.f;
      if (masked && unit(rng) < 0.4f) x = -kInf;
      logits[static_cast<size_t>(i) * stride + v] = x;
    }
    logits[static_cast<size_t>(i) * stride + i] = 1.f;  // at least one live token
  }
  const OpResult op = run_op(logits, rows, vocab, stride, params);
  Sampler sampler({.vocab_size = vocab});
  for (int i = 0; i < rows; ++i) {
    const SamplingParams sp = to_sampling(params[i]);
    const std::vector<int32_t> history(params[i].step, 0);  // only its length matters without penalties
    SamplerRow row{.logits = logits.data() + static_cast<size_t>(i) * stride, .params = &sp, .token_ids = history,
                   .n_generated = static_cast<int>(params[i].step), .seed = params[i].seed,
                   .seq_index = params[i].seq_index};
    const SampleResult want = sampler.sample_row(row);
    EXPECT_EQ(op.tokens[i], want.token) << "row " << i;
    EXPECT_EQ(op.logprobs[i], want.logprob) << "row " << i;  // the same fp64 sums: bitwise
  }
}

TEST(SampleOp, GreedyAndTopK1TakeTheLowestIdOfTiedMaxima) {
  const int vocab = 10;
  //                         0     1    2    3    4    5    6    7    8    9
  std::vector<float> row = {0.5f, 2.f, 3.f, 1.f, 3.f, -kInf, 3.f, 0.f, 1.f, 2.f};
  std::vector<float> logits;
  for (int i = 0; i < 3; ++i) logits.insert(logits.end(), row.begin(), row.end());
  const std::vector<SampleRowParams> params{{.temperature = 0.f}, {.temperature = 1.f, .top_k = 1, .seed = 5},
                                            {.temperature = 1e-6f}};
  const OpResult op = run_op(logits, 3, vocab, vocab, params);
  EXPECT_EQ(op.tokens, (std::vector<int32_t>{2, 2, 2}));
  // log_softmax of the greedy row's z = l: 3 - log(sum exp(l)), worked out here in fp64.
  double s = 0;
  for (float x : row) s += std::exp(static_cast<double>(x));
  EXPECT_FLOAT_EQ(op.logprobs[0], static_cast<float>(3.0 - std::log(s)));
}

TEST(SampleOp, TopKCutInsideATieGroupKeepsTheLowestIds) {
  // Values 5 (id 7), then 4 at ids 1, 3, 8, 9: top_k = 3 keeps ids 7, 1, 3. With the hot temperature every survivor
  // is drawn over many seeds; ids 8 and 9 (same logit as 1 and 3) never are.
  const int vocab = 10;
  const std::vector<float> row = {0.f, 4.f, 1.f, 4.f, 0.f, 2.f, 3.f, 5.f, 4.f, 4.f};
  const int rows = 400;
  std::vector<float> logits;
  std::vector<SampleRowParams> params;
  for (int i = 0; i < rows; ++i) {
    logits.insert(logits.end(), row.begin(), row.end());
    params.push_back({.temperature = 50.f, .top_k = 3, .seed = static_cast<uint64_t>(i)});
  }
  const OpResult op = run_op(logits, rows, vocab, vocab, params);
  std::vector<int> count(vocab, 0);
  for (int32_t t : op.tokens) ++count.at(t);
  EXPECT_GT(count[7], 0);
  EXPECT_GT(count[1], 0);
  EXPECT_GT(count[3], 0);
  EXPECT_EQ(count[7] + count[1] + count[3], rows);
}

TEST(SampleOp, BadRowsGetCodesAndTheOthersProceed) {
  const int vocab = 4;
  const std::vector<float> logits = {0.f, std::nanf(""), 1.f, 2.f,   // NaN
                                     0.f, kInf, 1.f, 2.f,            // +inf
                                     -kInf, -kInf, -kInf, -kInf,     // nothing to draw
                                     -kInf, 1.f, -kInf, 0.5f};       // fine
  const std::vector<SampleRowParams> params(4, SampleRowParams{.temperature = 0.f});
  const OpResult op = run_op(logits, 4, vocab, vocab, params);
  EXPECT_EQ(op.tokens, (std::vector<int32_t>{kSampleInvalidLogits, kSampleInvalidLogits, kSampleAllMasked, 1}));
  EXPECT_TRUE(std::isnan(op.logprobs[0]) && std::isnan(op.logprobs[2]));
  const std::vector<SampleRowParams> hot(4, SampleRowParams{.temperature = 1.f, .top_p = 0.5f});
  EXPECT_EQ(run_op(logits, 4, vocab, vocab, hot).tokens[2], kSampleAllMasked);
}

TEST(SampleOp, BadParamsThrowNamingTheRow) {
  const std::vector<float> logits(8, 0.f);
  std::vector<SampleRowParams> params(2);
  params[1].top_p = 0.f;
  try {
    run_op(logits, 2, 4, 4, params);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1: top_p"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv3
