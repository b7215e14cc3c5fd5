// tiny_model.h: presets and the writer behind `dsv3 make-tiny-model` (io).
// Writes a deterministic random checkpoint in exactly the published layout: config.json, sharded
// model-0000K-of-00000N.safetensors + model.safetensors.index.json, FP8 linears with scale_inv (or bf16), the MTP layer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv3/io/config.h"

namespace dsv3 {

// Presets: "micro" (vocab 1024, ~5 MB), "tiny" (real vocab 129280, real MLA dims), "tiny-v2" (softmax router,
// greedy top-k, no q compression), "v3-slice" (real DeepSeek-V3 config with 4 layers: 1 dense + 3 MoE), "v3" (the
// full DeepSeek-V3 config: 61 layers, 3 dense; 689 GB of tensors, so only with config_only in practice).
ModelConfig tiny_model_preset(const std::string& name);
std::vector<std::string> tiny_model_preset_names();

struct TinyModelOptions {
  std::string out_dir;
  bool fp8 = true;
  uint64_t seed = 0;
  bool config_only = false;   // config.json only (for --load_format dummy)
  int64_t shard_bytes = 64ll << 20;
  std::string tokenizer_dir;  // copied in when non-empty
};

// Returns the bytes of tensor data written.
uint64_t write_tiny_model(const ModelConfig& config, const TinyModelOptions& opt);

}  // namespace dsv3
