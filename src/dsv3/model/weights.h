// weights.h: the DeepSeek-V3 weights as the model uses them, one struct per component (model).
// Loaded from a WeightSource for a Backend: host-visible backends use the mmap views in place; others get device
// copies. Numerics "bf16" dequantizes FP8 linears to bf16 at load (model-spec §5.2); kv_b_proj is always also kept
// dequantized for the absorbed decode path (§3.8).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dsv3/backend/backend.h"
#include "dsv3/io/weight_source.h"

namespace dsv3 {

enum class Numerics { kFp8, kBf16 };
Numerics parse_numerics(const std::string& s);  // "fp8" | "bf16"

struct AttentionWeights {
  LinearWeight q_a_proj, q_b_proj, q_proj;  // q_a/q_b when q_lora_rank > 0, else q_proj
  TensorView q_a_layernorm;                 // [q_lora_rank]
  LinearWeight kv_a_proj_with_mqa;          // [kv_lora_rank + rope, d]
  TensorView kv_a_layernorm;                // [kv_lora_rank]
  LinearWeight kv_b_proj;                   // [H * (nope + v), kv_lora_rank]
  TensorView kv_b_bf16;                     // the same, dequantized bf16 (absorbed path)
  LinearWeight o_proj;                      // [d, H * v]
  // q_a_proj ‖ kv_a_proj_with_mqa stacked in one buffer [q_lora_rank + kv_lora_rank + rope, d] (device backends, FP8;
  // q_a_proj and kv_a_proj_with_mqa are then row views of it); empty when they were loaded apart.
  LinearWeight q_kv_a;
};

struct MlpWeights {
  LinearWeight gate_proj, up_proj, down_proj;
  LinearWeight gate_up;  // gate_proj ‖ up_proj stacked [2 f, d] (as q_kv_a); empty when loaded apart
};

struct MoeWeights {
  TensorView gate;                    // [E, d] bf16
  TensorView e_score_correction_bias; // [E] f32; empty unless noaux_tc
  std::vector<ExpertWeights> experts; // [E]
  bool has_shared = false;
  MlpWeights shared_experts;
};

struct LayerWeights {
  TensorView input_layernorm, post_attention_layernorm;  // [d]
  AttentionWeights self_attn;
  bool moe = false;
  MlpWeights mlp;      // dense layers
  MoeWeights moe_mlp;  // MoE layers
};

struct MtpWeights {
  TensorView enorm, hnorm, shared_head_norm;  // [d]
  LinearWeight eh_proj;                       // [d, 2d] bf16
  LayerWeights block;
};

struct ModelWeights {
  TensorView embed_tokens;  // [vocab, d]
  TensorView norm;          // [d]
  LinearWeight lm_head;     // [vocab, d] bf16
  std::vector<LayerWeights> layers;
  std::optional<MtpWeights> mtp;
  std::vector<Tensor> owned;  // backend tensors (device copies, made on the device) and host-visible temporaries
  uint64_t bytes_loaded = 0;          // every weight byte the model holds (= memory_plan's weight bytes)
  uint64_t bytes_made_on_device = 0;  // of which --load_format dummy made on the device (no host copy)
  StagedUploadStats staged;           // of which went through staged uploads (device backends)
  bool in_place = false;              // host-visible backend: the weights are the source's views (mmap)
};

// NOTE: on host-visible backends the weights are views into `src` (mmap or dummy tensors): keep it alive.
ModelWeights load_model_weights(WeightSource& src, Backend& backend, Numerics numerics, bool load_mtp = true);

// Every tensor of `mw` with a readable name ("layers.3.experts.17.up_proj.scale_inv"), in a fixed order: for tests
// that compare two loads of one model and for dumps.
std::vector<std::pair<std::string, TensorView>> named_weights(const ModelWeights& mw);

// "loaded 39.0 GB of weights in 8.12 s (4.80 GB/s; 39.0 GB staged in 596 chunks)": the load log line of the tools.
std::string weight_load_summary(const ModelWeights& mw, double seconds);

// bf16(fp8 · scale_inv) per 128x128 block, on the host.
Tensor dequantize_fp8(const LinearWeight& w);

}  // namespace dsv3
