// config.h: config.json -> ModelConfig, the hyperparameters of a DeepSeek-V3-architecture model (io).
// Field names are the HF config's (model-spec.md §1.1), so one grep finds them everywhere. Both RoPE forms are
// read: `rope_scaling` + `rope_theta` (hub) and `rope_parameters` (newer transformers). Unknown values of fields
// that change the math (hidden_act, scoring_func, topk_method, rope type, quant method) are errors.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace dsv3 {

enum class ScoringFunc { kSigmoid, kSoftmax };
enum class TopkMethod { kNoauxTc, kGreedy, kGroupLimitedGreedy };

struct RopeConfig {
  double rope_theta = 10000.0;
  bool yarn = false;  // rope_scaling present with type yarn
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0, beta_slow = 1.0;
  double mscale = 1.0, mscale_all_dim = 0.0;
};

struct QuantConfig {
  bool fp8 = false;                // quantization_config.quant_method == fp8 (FP8 e4m3 block-scaled weights)
  int64_t weight_block_size[2] = {128, 128};
  bool scale_fmt_ue8m0 = false;    // V3.1: power-of-two activation scales
};

struct ModelConfig {
  std::string model_type = "deepseek_v3";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t moe_intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_nextn_predict_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t q_lora_rank = 0;  // 0: plain q_proj (config null)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t n_routed_experts = 0;
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  double routed_scaling_factor = 1.0;
  ScoringFunc scoring_func = ScoringFunc::kSigmoid;
  TopkMethod topk_method = TopkMethod::kNoauxTc;
  bool norm_topk_prob = true;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 4096;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 0, eos_token_id = 1;
  RopeConfig rope;
  QuantConfig quant;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  int64_t kv_entry_dim() const { return kv_lora_rank + qk_rope_head_dim; }  // 576 for V3
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  double softmax_scale() const;  // model-spec.md §3.7
};

// Parses config.json text; `source` names the file in error messages.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);
ModelConfig load_model_config(const std::string& model_dir);
// Serializes in the hub's form (rope_scaling + rope_theta, quantization_config when fp8).
nlohmann::json model_config_to_json(const ModelConfig& c);

}  // namespace dsv3
