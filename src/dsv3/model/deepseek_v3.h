// deepseek_v3.h: the DeepSeek-V3 forward pass over the Backend for a ragged batch (model).
// Per layer: h += MLA(RMSNorm(h)); h += FFN(RMSNorm(h)), FFN dense SwiGLU or MoE (router + routed + shared experts);
// logits = lm_head(RMSNorm(h)) for the requested rows (model-spec §3.1). Attention writes the new tokens' cache
// entries first, then reads the cache: prompt-form sequences by the naive form (kv_b_proj of the cached latents),
// decode-form sequences by the absorbed form (§3.8). The MTP layer (§6.1) runs as forward_mtp.
#pragma once

#include <vector>

#include "dsv3/io/config.h"
#include "dsv3/model/batch.h"
#include "dsv3/model/weights.h"

namespace dsv3 {

struct ForwardOutput {
  std::vector<float> logits;  // [logit_rows, vocab] f32, host
  Tensor hidden;              // [n, d] bf16 in backend memory: final-normed hidden (when want_hidden)
};

class DeepseekV3 {
 public:
  DeepseekV3(const ModelConfig& config, ModelWeights weights, Backend& backend, Numerics numerics);

  const ModelConfig& config() const { return config_; }
  Backend& backend() { return backend_; }
  bool has_mtp() const { return weights_.mtp.has_value(); }
  // Cache layers the model needs: main layers, plus one for the MTP layer when loaded.
  int64_t n_cache_layers() const { return config_.num_hidden_layers + (has_mtp() ? 1 : 0); }
  uint64_t weight_bytes() const { return weights_.bytes_loaded; }
  const ModelWeights& weights() const { return weights_; }

  ForwardOutput forward(const ForwardBatch& batch, KvCache& cache);
  // MTP module: batch.token_ids[i] is t_{p+1} for the row whose main-model hidden state h_p is hidden_prev[i]; the
  // row's position is p. Returns logits predicting t_{p+2} (shared_head) and, if asked, the block output.
  ForwardOutput forward_mtp(const ForwardBatch& batch, const TensorView& hidden_prev, KvCache& cache);

 private:
  struct StepMeta;
  void block(const LayerWeights& w, int64_t cache_layer, const StepMeta& m, Tensor& residual, Tensor& delta,
             bool first, KvCache& cache);
  void attention(const AttentionWeights& w, int64_t cache_layer, const StepMeta& m, const TensorView& xn,
                 const TensorView& out, KvCache& cache);
  void mlp(const MlpWeights& w, const TensorView& xn, const TensorView& out);
  void moe(const MoeWeights& w, const TensorView& xn, const TensorView& out);
  std::vector<float> head(const TensorView& hn, const std::vector<int32_t>& rows);
  StepMeta build_meta(const ForwardBatch& b, const KvCache& cache);
  Tensor scratch(DType dt, Shape s) { return Tensor(dt, s, backend_.allocator()); }
  Tensor upload_i32(const std::vector<int32_t>& v, Shape shape = {});

  ModelConfig config_;
  ModelWeights weights_;
  Backend& backend_;
  Numerics numerics_;
  Tensor inv_freq_;  // [rope/2] f32 in backend memory
};

}  // namespace dsv3
