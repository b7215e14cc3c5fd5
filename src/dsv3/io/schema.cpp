// schema.cpp: the tensor inventory of model-spec.md §2.3-2.6 for any config (io).
#include "dsv3/io/schema.h"

#include <fmt/format.h>

namespace dsv3 {

std::string layer_prefix(int64_t layer) { return fmt::format("model.layers.{}.", layer); }

std::vector<TensorSpec> checkpoint_schema(const ModelConfig& c, bool fp8, bool include_mtp) {
  std::vector<TensorSpec> out;
  const DType lin = fp8 ? DType::kFP8E4M3 : DType::kBF16;
  bool in_mtp = false;
  auto add = [&](std::string name, TensorRole role, DType dt, Shape s) {
    out.push_back({std::move(name), role, dt, s, in_mtp, false});
  };
  auto linear = [&](const std::string& name, int64_t o, int64_t i) {
    add(name + ".weight", TensorRole::kLinear, lin, {o, i});
    if (fp8) add(name + ".weight_scale_inv", TensorRole::kScaleInv, DType::kF32, {ceil_div(o, 128), ceil_div(i, 128)});
  };
  auto norm = [&](const std::string& name, int64_t n) { add(name + ".weight", TensorRole::kNorm, DType::kBF16, {n}); };
  auto mlp = [&](const std::string& p, int64_t inter) {
    linear(p + "gate_proj", inter, c.hidden_size);
    linear(p + "up_proj", inter, c.hidden_size);
    linear(p + "down_proj", c.hidden_size, inter);
  };
  const int64_t H = c.num_attention_heads;
  auto block = [&](int64_t L) {
    const std::string p = layer_prefix(L);
    norm(p + "input_layernorm", c.hidden_size);
    norm(p + "post_attention_layernorm", c.hidden_size);
    const std::string a = p + "self_attn.";
    if (c.q_lora_rank > 0) {
      linear(a + "q_a_proj", c.q_lora_rank, c.hidden_size);
      norm(a + "q_a_layernorm", c.q_lora_rank);
      linear(a + "q_b_proj", H * c.qk_head_dim(), c.q_lora_rank);
    } else {
      linear(a + "q_proj", H * c.qk_head_dim(), c.hidden_size);
    }
    linear(a + "kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, c.hidden_size);
    norm(a + "kv_a_layernorm", c.kv_lora_rank);
    linear(a + "kv_b_proj", H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
    linear(a + "o_proj", c.hidden_size, H * c.v_head_dim);
    if (c.is_moe_layer(L)) {
      const std::string m = p + "mlp.";
      add(m + "gate.weight", TensorRole::kLinearBf16, DType::kBF16, {c.n_routed_experts, c.hidden_size});
      if (c.topk_method == TopkMethod::kNoauxTc)
        add(m + "gate.e_score_correction_bias", TensorRole::kBias, DType::kF32, {c.n_routed_experts});
      for (int64_t e = 0; e < c.n_routed_experts; ++e) mlp(fmt::format("{}experts.{}.", m, e), c.moe_intermediate_size);
      if (c.n_shared_experts > 0) mlp(m + "shared_experts.", c.n_shared_experts * c.moe_intermediate_size);
    } else {
      mlp(p + "mlp.", c.intermediate_size);
    }
  };

  add("model.embed_tokens.weight", TensorRole::kEmbedding, DType::kBF16, {c.vocab_size, c.hidden_size});
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) block(L);
  add("model.norm.weight", TensorRole::kNorm, DType::kBF16, {c.hidden_size});
  add("lm_head.weight", TensorRole::kLinearBf16, DType::kBF16, {c.vocab_size, c.hidden_size});
  if (include_mtp) {
    in_mtp = true;
    for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
      const int64_t L = c.num_hidden_layers + k;
      const std::string p = layer_prefix(L);
      block(L);
      add(p + "embed_tokens.weight", TensorRole::kEmbedding, DType::kBF16, {c.vocab_size, c.hidden_size});
      out.back().mtp_copy = true;
      norm(p + "enorm", c.hidden_size);
      norm(p + "hnorm", c.hidden_size);
      add(p + "eh_proj.weight", TensorRole::kLinearBf16, DType::kBF16, {c.hidden_size, 2 * c.hidden_size});
      norm(p + "shared_head.norm", c.hidden_size);
      add(p + "shared_head.head.weight", TensorRole::kLinearBf16, DType::kBF16, {c.vocab_size, c.hidden_size});
      out.back().mtp_copy = true;
    }
  }
  return out;
}

}  // namespace dsv3
