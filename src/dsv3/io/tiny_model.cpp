// tiny_model.cpp: presets and the sharded checkpoint writer (io).
#include "dsv3/io/tiny_model.h"

#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "dsv3/base/error.h"
#include "dsv3/io/safetensors.h"
#include "dsv3/io/schema.h"
#include "dsv3/io/synthetic.h"
#include "dsv3/tensor/tensor.h"

namespace dsv3 {
namespace fs = std::filesystem;

std::vector<std::string> tiny_model_preset_names() { return {"micro", "tiny", "tiny-v2", "v3-slice", "v3"}; }

ModelConfig tiny_model_preset(const std::string& name) {
  ModelConfig c;  // V3 semantics
  c.scoring_func = ScoringFunc::kSigmoid;
  c.topk_method = TopkMethod::kNoauxTc;
  c.norm_topk_prob = true;
  c.rms_norm_eps = 1e-6;
  c.rope = {10000.0, true, 40.0, 4096, 32.0, 1.0, 1.0, 1.0};
  c.max_position_embeddings = 163840;
  c.quant.fp8 = true;
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  if (name == "v3-slice" || name == "v3") {
    c.vocab_size = 129280;
    c.hidden_size = 7168;
    c.intermediate_size = 18432;
    c.moe_intermediate_size = 2048;
    c.num_hidden_layers = 4;
    c.num_nextn_predict_layers = 1;
    c.num_attention_heads = 128;
    c.q_lora_rank = 1536;
    c.kv_lora_rank = 512;
    c.qk_nope_head_dim = 128;
    c.qk_rope_head_dim = 64;
    c.v_head_dim = 128;
    c.n_routed_experts = 256;
    c.n_shared_experts = 1;
    c.num_experts_per_tok = 8;
    c.n_group = 8;
    c.topk_group = 4;
    c.routed_scaling_factor = 2.5;
    c.first_k_dense_replace = 1;
    if (name == "v3") {  // the published DeepSeek-V3 / R1 config.json (model-spec §1.1)
      c.num_hidden_layers = 61;
      c.first_k_dense_replace = 3;
    }
    return c;
  }
  // Small models keep the real MLA head dims (nope 128, rope 64, v 128, latent 512) so every kernel path is real.
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.moe_intermediate_size = 128;
  c.num_hidden_layers = 3;
  c.num_nextn_predict_layers = 1;
  c.num_attention_heads = 4;
  c.q_lora_rank = 256;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.n_routed_experts = 16;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 4;
  c.n_group = 4;
  c.topk_group = 2;
  c.routed_scaling_factor = 2.5;
  c.first_k_dense_replace = 1;
  if (name == "micro") {
    c.vocab_size = 1024;
    c.num_hidden_layers = 2;
    c.n_routed_experts = 8;
    c.num_experts_per_tok = 2;
    c.n_group = 2;
    c.topk_group = 1;
    c.kv_lora_rank = 128;
    c.qk_nope_head_dim = 64;
    c.v_head_dim = 64;
    c.q_lora_rank = 128;
    return c;
  }
  if (name == "tiny") {
    c.vocab_size = 129280;
    return c;
  }
  if (name == "tiny-v2") {
    c.model_type = "deepseek_v2";
    c.vocab_size = 1024;
    c.num_hidden_layers = 2;
    c.num_nextn_predict_layers = 0;
    c.q_lora_rank = 0;
    c.scoring_func = ScoringFunc::kSoftmax;
    c.topk_method = TopkMethod::kGroupLimitedGreedy;
    c.norm_topk_prob = false;
    c.routed_scaling_factor = 1.0;
    c.n_shared_experts = 2;
    c.rope.mscale = 0.707;
    c.rope.mscale_all_dim = 0.707;
    return c;
  }
  std::string names;
  for (const auto& n : tiny_model_preset_names()) names += (names.empty() ? "" : ", ") + n;
  FAIL("--preset '{}' is unknown (presets: {})", name, names);
}

uint64_t write_tiny_model(const ModelConfig& config, const TinyModelOptions& opt) {
  EXPECT(!opt.out_dir.empty(), "make-tiny-model: --out is required");
  fs::create_directories(opt.out_dir);
  ModelConfig c = config;
  c.quant.fp8 = opt.fp8;
  {
    std::ofstream f(opt.out_dir + "/config.json");
    EXPECT(f.good(), "{}: cannot write config.json", opt.out_dir);
    f << model_config_to_json(c).dump(2) << "\n";
  }
  if (!opt.tokenizer_dir.empty()) {
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
      const fs::path src = fs::path(opt.tokenizer_dir) / name;
      if (fs::exists(src)) fs::copy_file(src, fs::path(opt.out_dir) / name, fs::copy_options::overwrite_existing);
    }
  }
  if (opt.config_only) return 0;

  const auto schema = checkpoint_schema(c, opt.fp8, true);
  // Assign tensors to shards in order, each shard up to shard_bytes.
  std::vector<std::vector<size_t>> shards(1);
  int64_t cur = 0;
  for (size_t i = 0; i < schema.size(); ++i) {
    const int64_t b = schema[i].shape.numel() * static_cast<int64_t>(dtype_size(schema[i].dtype));
    if (cur > 0 && cur + b > opt.shard_bytes && schema[i].role != TensorRole::kScaleInv) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(i);
    cur += b;
  }
  const size_t n_shards = shards.size();
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  uint64_t total = 0;
  std::map<std::string, Tensor> pending_scales;
  for (size_t si = 0; si < n_shards; ++si) {
    const std::string file = fmt::format("model-{:05d}-of-{:06d}.safetensors", si + 1, n_shards);
    std::vector<SafetensorsWriter::Decl> decls;
    for (size_t i : shards[si]) decls.push_back({schema[i].name, schema[i].dtype, schema[i].shape});
    SafetensorsWriter w(opt.out_dir + "/" + file, decls);
    for (size_t i : shards[si]) {
      const TensorSpec& s = schema[i];
      weight_map[s.name] = file;
      if (s.role == TensorRole::kScaleInv) {
        auto it = pending_scales.find(s.name);
        CHECK(it != pending_scales.end(), "scale {} before its weight", s.name);
        w.write(s.name, it->second.view().data, it->second.nbytes());
        pending_scales.erase(it);
        continue;
      }
      Tensor t(s.dtype, s.shape);
      if (s.role == TensorRole::kLinear && s.dtype == DType::kFP8E4M3) {
        Tensor sc(DType::kF32, {ceil_div(s.shape[0], 128), ceil_div(s.shape[1], 128)});
        synth_fp8_linear(s, opt.seed, t.as<uint8_t>(), sc.as<float>());
        pending_scales.emplace(s.name + "_scale_inv", std::move(sc));
      } else {
        TensorSpec s2 = s;
        synth_fill(s2, opt.seed, t.view().data);
      }
      w.write(s.name, t.view().data, t.nbytes());
    }
    w.close();
    total += w.data_bytes();
  }
  CHECK(pending_scales.empty(), "{} scales not written", pending_scales.size());
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = weight_map;
  std::ofstream f(opt.out_dir + "/model.safetensors.index.json");
  f << index.dump(2) << "\n";
  EXPECT(f.good(), "{}: cannot write the index", opt.out_dir);
  return total;
}

}  // namespace dsv3
