// weight_source.h: where a model's tensors come from — a HF checkpoint folder (mmap) or generated (dummy) (io).
// Every tensor handed out is validated against the schema of the config (dtype by role, shape), so the model
// never sees a malformed weight. Linear weights are FP8 e4m3 + fp32 scale_inv or BF16, per tensor, which covers
// FP8 checkpoints, bf16 conversions and mixed folders. The MTP layer is optional: has_mtp() says whether it is
// complete; a partial MTP layer is an error.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dsv3/io/config.h"
#include "dsv3/io/safetensors.h"
#include "dsv3/io/schema.h"

namespace dsv3 {

enum class LoadFormat { kAuto, kDummy };
LoadFormat parse_load_format(const std::string& s);  // "auto" | "dummy"

class WeightSource {
 public:
  // Opens model_dir: reads config.json (and hf_quant_config.json), then either maps the safetensors
  // (model.safetensors.index.json + shards, or a single model.safetensors) or prepares dummy generation.
  static std::unique_ptr<WeightSource> open(const std::string& model_dir, LoadFormat format, uint64_t seed = 0);
  static std::unique_ptr<WeightSource> dummy(const ModelConfig& config, uint64_t seed = 0);
  virtual ~WeightSource() = default;

  const ModelConfig& config() const { return config_; }
  const std::string& model_dir() const { return model_dir_; }
  bool has_mtp() const { return has_mtp_; }
  bool is_dummy() const { return dummy_; }

  // A validated tensor (norms, embeddings, bf16 linears, biases).
  TensorView get(const std::string& name);
  // A validated linear weight with its scale (name without ".weight").
  LinearWeight linear(const std::string& name);
  // Per dtype byte totals of what the model would load (for inspect).
  const std::vector<TensorSpec>& schema() const { return schema_; }
  // The schema entry of a tensor (name, role, dtype, shape); a name outside the schema is a bug.
  const TensorSpec& spec(const std::string& name) const;
  // Dummy sources: the seed of the generator. With spec() and synth_rule() (io/synthetic.h) a device backend makes
  // any tensor in its own memory, bit-identical to get()/linear(), without materializing it on the host.
  uint64_t seed() const { return seed_; }

 protected:
  WeightSource() = default;
  virtual TensorView fetch(const TensorSpec& spec) = 0;  // raw tensor; may be absent (data == nullptr)

  ModelConfig config_;
  std::string model_dir_;
  bool dummy_ = false;
  bool has_mtp_ = false;
  uint64_t seed_ = 0;
  std::vector<TensorSpec> schema_;
  std::map<std::string, size_t> by_name_;

  void build_schema(bool fp8);
  void validate(const TensorSpec& spec, const TensorView& v, const std::string& where) const;
};

}  // namespace dsv3
