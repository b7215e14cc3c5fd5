// schema.h: every tensor a DeepSeek-V3-architecture checkpoint holds, derived from the config (io).
// model-spec.md §2: names, shapes and dtypes. Linear weights are "quantizable": FP8 e4m3 with an fp32
// `<name>_scale_inv` of shape [ceil(out/128), ceil(in/128)] in FP8 checkpoints, BF16 otherwise.
#pragma once

#include <string>
#include <vector>

#include "dsv3/io/config.h"
#include "dsv3/tensor/tensor.h"

namespace dsv3 {

enum class TensorRole {
  kEmbedding,    // bf16 [vocab, hidden]
  kNorm,         // bf16 [n] RMSNorm weight
  kLinear,       // quantizable [out, in]
  kLinearBf16,   // always bf16 [out, in] (lm_head, router gate, eh_proj)
  kBias,         // fp32 [n] router correction bias
  kScaleInv,     // fp32 [ceil(out/128), ceil(in/128)], sibling of a kLinear in FP8 checkpoints
};

struct TensorSpec {
  std::string name;
  TensorRole role;
  DType dtype;   // the dtype this checkpoint stores (per the config's quantization)
  Shape shape;
  bool mtp = false;       // belongs to an MTP layer (index >= num_hidden_layers)
  bool mtp_copy = false;  // the MTP layer's copies of embed_tokens / lm_head (never loaded)
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// All tensors, in checkpoint order (layers ascending). fp8: whether linear weights are FP8 + scale_inv.
std::vector<TensorSpec> checkpoint_schema(const ModelConfig& c, bool fp8, bool include_mtp);

std::string layer_prefix(int64_t layer);  // "model.layers.L."

}  // namespace dsv3
