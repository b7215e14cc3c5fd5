// test_golden.cpp: the CPU reference against HF transformers and an independent torch model (tests/model).
// Fixtures: tests/data/golden/<config>/ made by scripts/reference/make_goldens.py on the H200 machine (HF
// transformers 5.17, torch 2.11): logits_hf (HF fp32 on the dequantized weights), logits_fp8 (torch emulation of
// dsv3's fp8 numerics), logits_mtp (torch MTP layer). Tolerances (measured values in docs/numerics.md):
//  - bf16 numerics vs HF fp32: rel 3e-2 — bf16 activations between ops round ~2^-9 per op over a few layers.
//  - fp8 numerics vs the fp8 emulation: rel 1e-3 — same quantization, only fp32 summation order differs.
//  - fp8 numerics vs HF fp32: rel 0.3 — 1x128 e4m3 activation quantization (3 mantissa bits) in every linear.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "dsv3/io/npy.h"
#include "dsv3/io/tiny_model.h"
#include "model/run_model.h"

namespace dsv3::test {
namespace {

struct Golden {
  std::string dir;
  std::vector<int32_t> ids;
  explicit Golden(const std::string& name) : dir(std::string(DSV3_TEST_DATA) + "/golden/" + name) {
    std::ifstream f(dir + "/input_ids.json");
    ids = nlohmann::json::parse(f).get<std::vector<int32_t>>();
  }
  std::vector<float> load(const std::string& file) const { return read_npy(dir + "/" + file).data; }
};

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, Bf16NumericsMatchHfTransformers) {
  Golden g(GetParam());
  auto src = WeightSource::open(g.dir, LoadFormat::kAuto);
  RunResult r = run_model(*src, g.ids, {.numerics = Numerics::kBf16});
  const auto hf = g.load("logits_hf.npy");
  ASSERT_EQ(r.logits.size(), hf.size());
  EXPECT_LT(rel_err(r.logits, hf), 3e-2);
  EXPECT_EQ(argmax_rows(r.logits, r.vocab), argmax_rows(hf, r.vocab));
}

TEST_P(GoldenTest, Fp8NumericsMatchTheFp8Emulation) {
  Golden g(GetParam());
  auto src = WeightSource::open(g.dir, LoadFormat::kAuto);
  RunResult r = run_model(*src, g.ids, {.numerics = Numerics::kFp8});
  const auto emu = g.load("logits_fp8.npy");
  EXPECT_LT(rel_err(r.logits, emu), 1e-3);
  EXPECT_LT(rel_err(r.logits, g.load("logits_hf.npy")), 0.3);
}

TEST_P(GoldenTest, DecodeThroughTheAbsorbedPathMatchesTheFullPrompt) {
  // Prefill 3 tokens, then one token per step (absorbed MLA over the paged cache) vs the whole prompt at once.
  Golden g(GetParam());
  auto src = WeightSource::open(g.dir, LoadFormat::kAuto);
  RunResult full = run_model(*src, g.ids, {.numerics = Numerics::kBf16});
  RunResult inc = run_model(*src, g.ids, {.numerics = Numerics::kBf16, .decode_from = 3});
  EXPECT_LT(rel_err(inc.logits, full.logits), 2e-2);  // bf16 rounding of q̃/õ vs k_nope/v
  EXPECT_EQ(argmax_rows(inc.logits, inc.vocab), argmax_rows(full.logits, full.vocab));
  EXPECT_LT(rel_err(inc.logits, g.load("logits_hf.npy")), 3e-2);
}

TEST_P(GoldenTest, ChunkedPrefillIsExact) {
  // Chunks read earlier chunks from the cache; every op is per row, so the result is bit-identical.
  Golden g(GetParam());
  auto src = WeightSource::open(g.dir, LoadFormat::kAuto);
  RunResult full = run_model(*src, g.ids, {.numerics = Numerics::kFp8});
  RunResult chunked = run_model(*src, g.ids, {.numerics = Numerics::kFp8, .chunk = 5});
  EXPECT_EQ(chunked.logits, full.logits);
}

INSTANTIATE_TEST_SUITE_P(Configs, GoldenTest, ::testing::Values("yarn-odd", "noq-plain"));

TEST(GoldenMtp, MtpLayerMatchesTheTorchReference) {
  Golden g("yarn-odd");
  auto src = WeightSource::open(g.dir, LoadFormat::kAuto);
  ASSERT_TRUE(src->has_mtp());
  RunResult r = run_model(*src, g.ids, {.numerics = Numerics::kBf16, .mtp = true});
  const auto ref = g.load("logits_mtp.npy");
  ASSERT_EQ(r.mtp.size(), ref.size());
  EXPECT_LT(rel_err(r.mtp, ref), 4e-2);
  EXPECT_EQ(argmax_rows(r.mtp, r.vocab), argmax_rows(ref, r.vocab));
}

TEST(GoldenBf16Checkpoint, DequantizedCheckpointGivesTheBf16NumericsLogits) {
  // Dequantize the FP8 golden checkpoint into a bf16 checkpoint (as fp8_cast_bf16.py does) and load that.
  Golden g("noq-plain");
  auto fp8src = WeightSource::open(g.dir, LoadFormat::kAuto);
  RunResult want = run_model(*fp8src, g.ids, {.numerics = Numerics::kBf16});
  const std::string out = ::testing::TempDir() + "/bf16ckpt";
  std::filesystem::create_directories(out);
  ModelConfig c = fp8src->config();
  c.quant.fp8 = false;
  std::ofstream(out + "/config.json") << model_config_to_json(c).dump();
  std::vector<SafetensorsWriter::Decl> decls;
  std::vector<Tensor> keep;
  for (const auto& s : fp8src->schema()) {
    if (s.role == TensorRole::kScaleInv || s.mtp) continue;
    if (s.role == TensorRole::kLinear) {
      keep.push_back(dequantize_fp8(fp8src->linear(s.name.substr(0, s.name.size() - 7))));
    } else {
      TensorView v = fp8src->get(s.name);
      Tensor t(v.dtype, v.shape);
      std::memcpy(t.view().data, v.data, v.nbytes());
      keep.push_back(std::move(t));
    }
    decls.push_back({s.name, keep.back().dtype(), keep.back().shape()});
  }
  SafetensorsWriter w(out + "/model.safetensors", decls);
  for (size_t i = 0; i < decls.size(); ++i) w.write(decls[i].name, keep[i].view().data, keep[i].nbytes());
  w.close();
  auto bsrc = WeightSource::open(out, LoadFormat::kAuto);
  RunResult got = run_model(*bsrc, g.ids, {.numerics = Numerics::kFp8});  // no FP8 weights: nothing to quantize
  EXPECT_EQ(got.logits, want.logits);
}

}  // namespace
}  // namespace dsv3::test

namespace dsv3::test {
namespace {

TEST(TinyV2, SoftmaxGroupLimitedRouterWithoutQCompressionIsSelfConsistent) {
  // DeepSeek-V2 style (model-spec §9.3): softmax scores, group_limited_greedy, no renormalization, q_proj,
  // 2 shared experts, mscale 0.707. No HF golden: checks that prompt, chunked and decode paths agree.
  const std::string dir = ::testing::TempDir() + "/dsv3_tiny_v2";
  std::filesystem::remove_all(dir);
  TinyModelOptions o;
  o.out_dir = dir;
  write_tiny_model(tiny_model_preset("tiny-v2"), o);
  auto src = WeightSource::open(dir, LoadFormat::kAuto);
  EXPECT_EQ(src->config().q_lora_rank, 0);
  EXPECT_EQ(src->config().topk_method, TopkMethod::kGroupLimitedGreedy);
  EXPECT_FALSE(src->has_mtp());
  std::vector<int32_t> ids;
  for (int i = 0; i < 11; ++i) ids.push_back((i * 97 + 5) % 1000);
  RunResult full = run_model(*src, ids, {.numerics = Numerics::kBf16});
  RunResult chunked = run_model(*src, ids, {.numerics = Numerics::kBf16, .chunk = 4});
  RunResult inc = run_model(*src, ids, {.numerics = Numerics::kBf16, .decode_from = 2});
  EXPECT_EQ(chunked.logits, full.logits);
  EXPECT_LT(rel_err(inc.logits, full.logits), 2e-2);
  EXPECT_EQ(argmax_rows(inc.logits, inc.vocab), argmax_rows(full.logits, full.vocab));
}

}  // namespace
}  // namespace dsv3::test
