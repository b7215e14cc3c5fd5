// config.cpp: strict config.json parsing with messages that name the file and field (io).
#include "dsv3/io/config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

using json = nlohmann::json;

struct Reader {
  const json& j;
  const std::string& src;

  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t integer(const char* k) const {
    EXPECT(has(k), "{}: missing required field '{}'", src, k);
    return integer_of(j[k], k);
  }
  int64_t integer(const char* k, int64_t dflt) const { return has(k) ? integer_of(j[k], k) : dflt; }
  int64_t integer_of(const json& v, const char* k) const {
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) return (int64_t)v.get<double>();
    FAIL("{}: field '{}' must be an integer, got {}", src, k, v.dump());
  }
  double number(const char* k, double dflt) const {
    if (!has(k)) return dflt;
    EXPECT(j[k].is_number(), "{}: field '{}' must be a number, got {}", src, k, j[k].dump());
    return j[k].get<double>();
  }
  bool boolean(const char* k, bool dflt) const {
    if (!has(k)) return dflt;
    EXPECT(j[k].is_boolean(), "{}: field '{}' must be true or false, got {}", src, k, j[k].dump());
    return j[k].get<bool>();
  }
  std::string string(const char* k, const std::string& dflt) const {
    if (!has(k)) return dflt;
    EXPECT(j[k].is_string(), "{}: field '{}' must be a string, got {}", src, k, j[k].dump());
    return j[k].get<std::string>();
  }
};

void parse_rope(const json& j, const std::string& src, ModelConfig& c) {
  // Newer transformers: rope_parameters {rope_type, rope_theta, factor, ...}; hub: rope_theta + rope_scaling.
  const json* scaling = nullptr;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    scaling = &j["rope_parameters"];
    Reader r{*scaling, src};
    c.rope.rope_theta = r.number("rope_theta", Reader{j, src}.number("rope_theta", 10000.0));
  } else {
    c.rope.rope_theta = Reader{j, src}.number("rope_theta", 10000.0);
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
      EXPECT(j["rope_scaling"].is_object(), "{}: 'rope_scaling' must be an object or null", src);
      scaling = &j["rope_scaling"];
    }
  }
  if (!scaling) return;
  Reader r{*scaling, src};
  std::string type = r.string("rope_type", r.string("type", "default"));
  if (type == "default" || type == "none") return;
  EXPECT(type == "yarn", "{}: rope type '{}' is not supported (supported: yarn, default)", src, type);
  c.rope.yarn = true;
  c.rope.factor = r.number("factor", 1.0);
  c.rope.original_max_position_embeddings = r.integer("original_max_position_embeddings", 4096);
  c.rope.beta_fast = r.number("beta_fast", 32.0);
  c.rope.beta_slow = r.number("beta_slow", 1.0);
  c.rope.mscale = r.number("mscale", 1.0);
  c.rope.mscale_all_dim = r.number("mscale_all_dim", 0.0);
  EXPECT(c.rope.factor >= 1.0, "{}: rope factor {} must be >= 1", src, c.rope.factor);
}

void parse_quant(const json& j, const std::string& src, ModelConfig& c) {
  if (!j.contains("quantization_config") || j["quantization_config"].is_null()) return;
  const json& q = j["quantization_config"];
  EXPECT(q.is_object(), "{}: 'quantization_config' must be an object", src);
  Reader r{q, src};
  std::string method = r.string("quant_method", "");
  EXPECT(method == "fp8", "{}: quantization_config.quant_method '{}' is not supported (supported: fp8)", src, method);
  std::string fmt_ = r.string("fmt", "e4m3");
  EXPECT(fmt_ == "e4m3", "{}: quantization_config.fmt '{}' is not supported (supported: e4m3)", src, fmt_);
  std::string act = r.string("activation_scheme", "dynamic");
  EXPECT(act == "dynamic", "{}: quantization_config.activation_scheme '{}' is not supported (supported: dynamic)", src,
         act);
  if (q.contains("weight_block_size")) {
    const auto& b = q["weight_block_size"];
    EXPECT(b.is_array() && b.size() == 2 && b[0] == 128 && b[1] == 128,
           "{}: quantization_config.weight_block_size {} is not supported (supported: [128, 128])", src, b.dump());
  }
  std::string sf = r.string("scale_fmt", "");
  EXPECT(sf.empty() || sf == "ue8m0", "{}: quantization_config.scale_fmt '{}' is not supported (supported: ue8m0)", src,
         sf);
  c.quant.fp8 = true;
  c.quant.scale_fmt_ue8m0 = sf == "ue8m0";
}

}  // namespace

double ModelConfig::softmax_scale() const {
  double s = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (rope.yarn && rope.mscale_all_dim != 0.0 && rope.factor > 1.0) {
    double m = 0.1 * rope.mscale_all_dim * std::log(rope.factor) + 1.0;
    s *= m * m;
  }
  return s;
}

ModelConfig parse_model_config(const std::string& text, const std::string& src) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    FAIL("{}: not valid JSON: {}", src, e.what());
  }
  EXPECT(j.is_object(), "{}: expected a JSON object", src);
  Reader r{j, src};
  ModelConfig c;
  c.model_type = r.string("model_type", "deepseek_v3");
  EXPECT(c.model_type == "deepseek_v3" || c.model_type == "deepseek_v2",
         "{}: model_type '{}' is not supported (supported: deepseek_v3, deepseek_v2)", src, c.model_type);
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.intermediate_size = r.integer("intermediate_size");
  c.moe_intermediate_size = r.integer("moe_intermediate_size", 0);
  c.num_hidden_layers = r.integer("num_hidden_layers");
  c.num_nextn_predict_layers = r.integer("num_nextn_predict_layers", 0);
  c.num_attention_heads = r.integer("num_attention_heads");
  c.q_lora_rank = r.integer("q_lora_rank", 0);
  c.kv_lora_rank = r.integer("kv_lora_rank");
  c.qk_nope_head_dim = r.integer("qk_nope_head_dim");
  c.qk_rope_head_dim = r.integer("qk_rope_head_dim");
  c.v_head_dim = r.integer("v_head_dim");
  c.n_routed_experts = r.integer("n_routed_experts", 0);
  c.n_shared_experts = r.integer("n_shared_experts", 0);
  c.num_experts_per_tok = r.integer("num_experts_per_tok", 0);
  c.n_group = r.integer("n_group", 1);
  c.topk_group = r.integer("topk_group", 1);
  c.routed_scaling_factor = r.number("routed_scaling_factor", 1.0);
  std::string sf = r.string("scoring_func", "softmax");
  if (sf == "sigmoid") c.scoring_func = ScoringFunc::kSigmoid;
  else if (sf == "softmax") c.scoring_func = ScoringFunc::kSoftmax;
  else FAIL("{}: scoring_func '{}' is not supported (supported: sigmoid, softmax)", src, sf);
  std::string tm = r.string("topk_method", "greedy");
  if (tm == "noaux_tc") c.topk_method = TopkMethod::kNoauxTc;
  else if (tm == "greedy") c.topk_method = TopkMethod::kGreedy;
  else if (tm == "group_limited_greedy") c.topk_method = TopkMethod::kGroupLimitedGreedy;
  else FAIL("{}: topk_method '{}' is not supported (supported: noaux_tc, greedy, group_limited_greedy)", src, tm);
  c.norm_topk_prob = r.boolean("norm_topk_prob", false);
  c.first_k_dense_replace = r.integer("first_k_dense_replace", 0);
  c.moe_layer_freq = r.integer("moe_layer_freq", 1);
  std::string act = r.string("hidden_act", "silu");
  EXPECT(act == "silu", "{}: hidden_act '{}' is not supported (supported: silu)", src, act);
  c.rms_norm_eps = r.number("rms_norm_eps", 1e-6);
  c.max_position_embeddings = r.integer("max_position_embeddings", 4096);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  c.bos_token_id = r.integer("bos_token_id", 0);
  c.eos_token_id = j.contains("eos_token_id") && j["eos_token_id"].is_array() ? j["eos_token_id"][0].get<int64_t>()
                                                                                : r.integer("eos_token_id", 1);
  EXPECT(!r.boolean("attention_bias", false), "{}: attention_bias true is not supported", src);
  parse_rope(j, src, c);
  parse_quant(j, src, c);

  auto positive = [&](int64_t v, const char* name) { EXPECT(v > 0, "{}: '{}' must be > 0, got {}", src, name, v); };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.num_hidden_layers, "num_hidden_layers");
  positive(c.num_attention_heads, "num_attention_heads");
  positive(c.kv_lora_rank, "kv_lora_rank");
  positive(c.qk_nope_head_dim, "qk_nope_head_dim");
  positive(c.v_head_dim, "v_head_dim");
  positive(c.moe_layer_freq, "moe_layer_freq");
  EXPECT(c.qk_rope_head_dim > 0 && c.qk_rope_head_dim % 2 == 0, "{}: 'qk_rope_head_dim' must be even and > 0, got {}",
         src, c.qk_rope_head_dim);
  EXPECT(c.q_lora_rank >= 0, "{}: 'q_lora_rank' must be >= 0 or null", src);
  if (c.n_routed_experts > 0) {
    positive(c.moe_intermediate_size, "moe_intermediate_size");
    EXPECT(c.num_experts_per_tok > 0 && c.num_experts_per_tok <= c.n_routed_experts,
           "{}: 'num_experts_per_tok' {} must be in [1, n_routed_experts={}]", src, c.num_experts_per_tok,
           c.n_routed_experts);
    EXPECT(c.n_group > 0 && c.n_routed_experts % c.n_group == 0,
           "{}: n_routed_experts {} must be a multiple of n_group {}", src, c.n_routed_experts, c.n_group);
    EXPECT(c.topk_group > 0 && c.topk_group <= c.n_group, "{}: topk_group {} must be in [1, n_group={}]", src,
           c.topk_group, c.n_group);
    if (c.topk_method == TopkMethod::kNoauxTc)
      EXPECT(c.n_routed_experts / c.n_group >= 2, "{}: noaux_tc needs at least 2 experts per group", src);
    EXPECT(c.num_experts_per_tok <= c.topk_group * (c.n_routed_experts / c.n_group),
           "{}: num_experts_per_tok {} exceeds the experts in topk_group groups", src, c.num_experts_per_tok);
  }
  EXPECT(c.intermediate_size > 0 || c.first_k_dense_replace == 0, "{}: 'intermediate_size' must be > 0", src);
  return c;
}

ModelConfig load_model_config(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream f(path);
  EXPECT(f.good(), "{}: no such file (is --model_dir a HuggingFace checkpoint folder?)", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_model_config(ss.str(), path);
}

json model_config_to_json(const ModelConfig& c) {
  json j;
  j["architectures"] = {"DeepseekV3ForCausalLM"};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_attention_heads;
  j["q_lora_rank"] = c.q_lora_rank > 0 ? json(c.q_lora_rank) : json(nullptr);
  j["kv_lora_rank"] = c.kv_lora_rank;
  j["qk_nope_head_dim"] = c.qk_nope_head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["v_head_dim"] = c.v_head_dim;
  j["n_routed_experts"] = c.n_routed_experts;
  j["n_shared_experts"] = c.n_shared_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["scoring_func"] = c.scoring_func == ScoringFunc::kSigmoid ? "sigmoid" : "softmax";
  j["topk_method"] = c.topk_method == TopkMethod::kNoauxTc  ? "noaux_tc"
                     : c.topk_method == TopkMethod::kGreedy ? "greedy"
                                                            : "group_limited_greedy";
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["moe_layer_freq"] = c.moe_layer_freq;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope.rope_theta;
  if (c.rope.yarn) {
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", c.rope.factor},
                         {"original_max_position_embeddings", c.rope.original_max_position_embeddings},
                         {"beta_fast", c.rope.beta_fast},
                         {"beta_slow", c.rope.beta_slow},
                         {"mscale", c.rope.mscale},
                         {"mscale_all_dim", c.rope.mscale_all_dim}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  j["attention_bias"] = false;
  j["torch_dtype"] = "bfloat16";
  if (c.quant.fp8) {
    j["quantization_config"] = {{"quant_method", "fp8"},
                                {"fmt", "e4m3"},
                                {"activation_scheme", "dynamic"},
                                {"weight_block_size", {128, 128}}};
    if (c.quant.scale_fmt_ue8m0) j["quantization_config"]["scale_fmt"] = "ue8m0";
  }
  return j;
}

}  // namespace dsv3
