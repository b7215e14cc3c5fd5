// test_io.cpp: checkpoint loading — layouts that must load and bad inputs that must fail with a clear message
// naming the file and tensor (tests/unit).
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "dsv3/io/npy.h"
#include "dsv3/io/tiny_model.h"
#include "dsv3/io/weight_source.h"

namespace dsv3 {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::string fresh_dir(const std::string& name) {
  const std::string d = ::testing::TempDir() + "/dsv3_io_" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string make_micro(const std::string& name, bool fp8 = true, int64_t shard_bytes = 1 << 20, uint64_t seed = 0) {
  const std::string d = fresh_dir(name);
  TinyModelOptions o;
  o.out_dir = d;
  o.fp8 = fp8;
  o.shard_bytes = shard_bytes;
  o.seed = seed;
  write_tiny_model(tiny_model_preset("micro"), o);
  return d;
}

json read_json(const std::string& p) {
  std::ifstream f(p);
  return json::parse(f);
}
void write_json(const std::string& p, const json& j) { std::ofstream(p) << j.dump(2); }

// Runs f, requires a dsv3::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  lacks: " << p;
  }
}

TEST(Checkpoint, ShardedFp8CheckpointLoadsWithMtp) {
  const std::string d = make_micro("sharded");
  const json idx = read_json(d + "/model.safetensors.index.json");
  std::set<std::string> shards;
  for (auto& [k, v] : idx["weight_map"].items()) shards.insert(v.get<std::string>());
  EXPECT_GT(shards.size(), 2u);
  EXPECT_TRUE(shards.count("model-00001-of-00000" + std::to_string(shards.size()) + ".safetensors") ||
              shards.count(fmt::format("model-00001-of-{:06d}.safetensors", shards.size())));
  auto src = WeightSource::open(d, LoadFormat::kAuto);
  EXPECT_TRUE(src->has_mtp());
  EXPECT_TRUE(src->config().quant.fp8);
  LinearWeight kv_a = src->linear("model.layers.0.self_attn.kv_a_proj_with_mqa");
  EXPECT_EQ(kv_a.weight.dtype, DType::kFP8E4M3);
  // 128 + 64 = 192 rows: a partial second block row of scales.
  EXPECT_EQ(kv_a.scale_inv.shape, Shape({2, 2}));
}

TEST(Checkpoint, DummyWeightsEqualTheWrittenCheckpoint) {
  const std::string d = make_micro("dummy", true, 1 << 20, 7);
  auto real = WeightSource::open(d, LoadFormat::kAuto);
  auto dummy = WeightSource::open(d, LoadFormat::kDummy, 7);
  for (const char* name : {"model.layers.1.mlp.experts.3.down_proj", "model.layers.0.self_attn.q_b_proj"}) {
    LinearWeight a = real->linear(name), b = dummy->linear(name);
    ASSERT_EQ(a.weight.nbytes(), b.weight.nbytes());
    EXPECT_EQ(std::memcmp(a.weight.data, b.weight.data, a.weight.nbytes()), 0) << name;
    EXPECT_EQ(std::memcmp(a.scale_inv.data, b.scale_inv.data, a.scale_inv.nbytes()), 0) << name;
  }
  TensorView e1 = real->get("model.embed_tokens.weight"), e2 = dummy->get("model.embed_tokens.weight");
  EXPECT_EQ(std::memcmp(e1.data, e2.data, e1.nbytes()), 0);
}

TEST(Checkpoint, SingleFileBf16CheckpointWithoutMtpLoads) {
  const std::string d = make_micro("single_bf16", false, 1ll << 40);
  // Re-save as one model.safetensors without the MTP layer and without an index.
  fs::rename(d + "/model-00001-of-000001.safetensors", d + "/model.safetensors");
  fs::remove(d + "/model.safetensors.index.json");
  auto src = WeightSource::open(d, LoadFormat::kAuto);
  EXPECT_TRUE(src->has_mtp());
  EXPECT_EQ(src->linear("model.layers.0.mlp.gate_proj").weight.dtype, DType::kBF16);
  EXPECT_FALSE(src->linear("model.layers.0.mlp.gate_proj").scale_inv);
}

TEST(Checkpoint, MissingMtpLayerIsFineButAPartialOneIsNot) {
  const std::string d = make_micro("mtp");
  json idx = read_json(d + "/model.safetensors.index.json");
  json wm = json::object();
  for (auto& [k, v] : idx["weight_map"].items())
    if (k.rfind("model.layers.2.", 0) != 0) wm[k] = v;
  idx["weight_map"] = wm;
  write_json(d + "/model.safetensors.index.json", idx);
  EXPECT_FALSE(WeightSource::open(d, LoadFormat::kAuto)->has_mtp());

  const std::string d2 = make_micro("mtp_partial");
  json idx2 = read_json(d2 + "/model.safetensors.index.json");
  idx2["weight_map"].erase("model.layers.2.enorm.weight");
  write_json(d2 + "/model.safetensors.index.json", idx2);
  expect_error([&] { WeightSource::open(d2, LoadFormat::kAuto); }, {"MTP layer is incomplete", "enorm"});
}

TEST(Checkpoint, TensorMissingFromIndex) {
  const std::string d = make_micro("missing");
  json idx = read_json(d + "/model.safetensors.index.json");
  idx["weight_map"].erase("model.layers.1.self_attn.o_proj.weight");
  write_json(d + "/model.safetensors.index.json", idx);
  expect_error([&] { WeightSource::open(d, LoadFormat::kAuto); },
               {"model.layers.1.self_attn.o_proj.weight", "missing", d});
}

TEST(Checkpoint, MissingScaleInv) {
  const std::string d = make_micro("noscale");
  json idx = read_json(d + "/model.safetensors.index.json");
  idx["weight_map"].erase("model.layers.0.mlp.up_proj.weight_scale_inv");
  write_json(d + "/model.safetensors.index.json", idx);
  expect_error([&] { WeightSource::open(d, LoadFormat::kAuto); },
               {"model.layers.0.mlp.up_proj.weight_scale_inv", "is missing"});
}

TEST(Checkpoint, ShardNamedInIndexDoesNotExist) {
  const std::string d = make_micro("noshard");
  fs::remove(d + "/model-00002-of-000006.safetensors");
  expect_error([&] { WeightSource::open(d, LoadFormat::kAuto); }, {"model-00002-of-000006.safetensors", "does not exist"});
}

TEST(Checkpoint, TruncatedShard) {
  const std::string d = make_micro("trunc");
  const std::string shard = d + "/model-00003-of-000006.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 1000);
  expect_error([&] { WeightSource::open(d, LoadFormat::kAuto); }, {"model-00003-of-000006.safetensors", "truncated"});
  fs::resize_file(shard, 5);
  expect_error([&] { WeightSource::open(d, LoadFormat::kAuto); }, {"model-00003-of-000006.safetensors", "truncated"});
}

TEST(Checkpoint, CorruptHeader) {
  const std::string d = make_micro("corrupt");
  const std::string shard = d + "/model-00001-of-000006.safetensors";
  std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(9);
  f.write("#####", 5);
  f.close();
  expect_error([&] { WeightSource::open(d, LoadFormat::kAuto); }, {shard, "not valid JSON"});
}

TEST(Checkpoint, WrongShapeAgainstConfig) {
  const std::string d = make_micro("shape");
  json cfg = read_json(d + "/config.json");
  cfg["intermediate_size"] = 640;
  write_json(d + "/config.json", cfg);
  expect_error([&] { WeightSource::open(d, LoadFormat::kAuto); },
               {"model.layers.0.mlp.gate_proj.weight", "[512, 256]", "[640, 256]"});
}

TEST(Checkpoint, UnsupportedDtype) {
  const std::string d = fresh_dir("dtype");
  // A hand-made safetensors file holding one F64 tensor.
  const std::string header = R"({"x":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})";
  std::ofstream f(d + "/model.safetensors", std::ios::binary);
  uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header << std::string(16, '\0');
  f.close();
  expect_error([&] { SafetensorsFile sf(d + "/model.safetensors"); }, {"'x'", "unsupported dtype 'F64'"});
}

TEST(Checkpoint, DataOffsetsMustMatchTheShape) {
  const std::string d = fresh_dir("offsets");
  const std::string header = R"({"w":{"dtype":"BF16","shape":[3,4],"data_offsets":[0,16]}})";
  std::ofstream f(d + "/model.safetensors", std::ios::binary);
  uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header << std::string(24, '\0');
  f.close();
  expect_error([&] { SafetensorsFile sf(d + "/model.safetensors"); }, {"'w'", "16 bytes stored", "needs 24"});
}

TEST(Checkpoint, HfQuantConfig) {
  const std::string d = make_micro("hfq");
  write_json(d + "/hf_quant_config.json", {{"quantization", {{"quant_algo", "FP8_BLOCK_SCALES"}}}});
  EXPECT_TRUE(WeightSource::open(d, LoadFormat::kAuto)->config().quant.fp8);
  write_json(d + "/hf_quant_config.json", {{"quantization", {{"quant_algo", "W4A16_AWQ"}}}});
  expect_error([&] { WeightSource::open(d, LoadFormat::kAuto); }, {"hf_quant_config.json", "W4A16_AWQ"});
}

TEST(Config, MissingFolderAndFile) {
  expect_error([] { WeightSource::open("/nonexistent/dsv3", LoadFormat::kAuto); }, {"/nonexistent/dsv3"});
  const std::string d = fresh_dir("nocfg");
  expect_error([&] { WeightSource::open(d, LoadFormat::kAuto); }, {"config.json", "no such file"});
}

json v3_config() { return model_config_to_json(tiny_model_preset("v3-slice")); }

TEST(Config, UnknownValuesAreErrors) {
  struct Case {
    const char* key;
    json value;
    const char* says;
  } cases[] = {{"scoring_func", "relu", "scoring_func 'relu'"},
               {"topk_method", "sinkhorn", "topk_method 'sinkhorn'"},
               {"hidden_act", "gelu", "hidden_act 'gelu'"},
               {"model_type", "llama", "model_type 'llama'"},
               {"num_experts_per_tok", 300, "num_experts_per_tok"},
               {"hidden_size", "big", "hidden_size"}};
  for (const auto& c : cases) {
    json j = v3_config();
    j[c.key] = c.value;
    expect_error([&] { parse_model_config(j.dump(), "cfg.json"); }, {"cfg.json", c.says});
  }
  json j = v3_config();
  j["rope_scaling"]["type"] = "linear";
  expect_error([&] { parse_model_config(j.dump(), "cfg.json"); }, {"rope type 'linear'"});
  j = v3_config();
  j["quantization_config"]["quant_method"] = "awq";
  expect_error([&] { parse_model_config(j.dump(), "cfg.json"); }, {"quant_method 'awq'"});
  j = v3_config();
  j.erase("kv_lora_rank");
  expect_error([&] { parse_model_config(j.dump(), "cfg.json"); }, {"missing required field 'kv_lora_rank'"});
  expect_error([&] { parse_model_config("{not json", "cfg.json"); }, {"cfg.json", "not valid JSON"});
}

TEST(Config, RopeParametersFormEqualsRopeScalingForm) {
  json hub = v3_config();
  ModelConfig a = parse_model_config(hub.dump(), "hub");
  json v5 = hub;
  json rp = hub["rope_scaling"];
  rp.erase("type");
  rp["rope_type"] = "yarn";
  rp["rope_theta"] = 10000.0;
  v5.erase("rope_scaling");
  v5.erase("rope_theta");
  v5["rope_parameters"] = rp;
  ModelConfig b = parse_model_config(v5.dump(), "v5");
  EXPECT_TRUE(a.rope.yarn && b.rope.yarn);
  EXPECT_EQ(a.rope.factor, b.rope.factor);
  EXPECT_EQ(a.rope.rope_theta, b.rope.rope_theta);
  EXPECT_EQ(a.rope.original_max_position_embeddings, b.rope.original_max_position_embeddings);
  EXPECT_EQ(a.softmax_scale(), b.softmax_scale());
  // model-spec §3.7: sigma = 192^-0.5 * (0.1 ln 40 + 1)^2
  EXPECT_NEAR(a.softmax_scale(), 0.1352337788608801, 1e-15);
  // q_lora_rank null -> plain q_proj
  json v2 = hub;
  v2["q_lora_rank"] = nullptr;
  EXPECT_EQ(parse_model_config(v2.dump(), "v2").q_lora_rank, 0);
}

TEST(Npy, RoundTrip) {
  const std::string p = ::testing::TempDir() + "/x.npy";
  std::vector<float> v = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  write_npy_f32(p, v.data(), {2, 3});
  NpyArray a = read_npy(p);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.data, v);
}

}  // namespace
}  // namespace dsv3
