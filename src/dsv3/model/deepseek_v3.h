// deepseek_v3.h: the DeepSeek-V3 forward pass over the Backend for a ragged batch (model).
// Per layer: h += MLA(RMSNorm(h)); h += FFN(RMSNorm(h)), FFN dense SwiGLU or MoE (router + routed + shared experts);
// logits = lm_head(RMSNorm(h)) for the requested rows (model-spec §3.1). Attention writes the new tokens' cache
// entries first, then reads the cache: prompt-form sequences by the naive form (kv_b_proj of the cached latents),
// decode-form sequences by the absorbed form (§3.8). The MTP layer (§6.1) runs as forward_mtp.
#pragma once

#include <memory>
#include <vector>

#include "dsv3/io/config.h"
#include "dsv3/model/batch.h"
#include "dsv3/model/weights.h"
#include "dsv3/model/workspace.h"

namespace dsv3 {

// CUDA graphs for decode-only steps (TensorRT-LLM's cuda_graph_config): a step whose every sequence adds one token
// in the absorbed form runs as a graph captured for its batch size (rounded up to the next captured size with
// padding). Captured lazily, on the first step of each size, after one eager run of that step.
struct CudaGraphOptions {
  std::vector<int> batch_sizes;  // ascending; empty: graphs off
  bool padding = false;          // round a batch up to the next captured size (else exact sizes only)
  int max_blocks_per_seq = 0;    // block-table width of every captured step (ceil(max_seq_len / block size))
  int32_t pad_block = -1;        // a KV block no sequence owns: padding rows write their entry there
};

struct GraphStats {
  int64_t replays = 0, captures = 0, refused = 0;  // refused: sizes whose capture failed (they run eagerly)
};

struct ForwardOutput {
  std::vector<float> logits;  // [logit_rows, vocab] f32, host; empty when logits_on_device
  TensorView device_logits;   // [logit_rows, vocab] f32 in backend memory (when logits_on_device; else empty); in
                              // the model's workspace: valid until the next forward call
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
  const Workspace& workspace() const { return ws_; }
  const ModelWeights& weights() const { return weights_; }

  ForwardOutput forward(const ForwardBatch& batch, KvCache& cache);
  void set_cuda_graphs(const CudaGraphOptions& options);
  const GraphStats& graph_stats() const { return graph_stats_; }
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
  TensorView body(const StepMeta& m, KvCache& cache, const TensorView& hidden_out);
  TensorView head(const TensorView& hn, const StepMeta& m);
  std::vector<float> download(const TensorView& logits, const std::vector<int32_t>& rows);
  int graph_batch_size(const ForwardBatch& b) const;
  ForwardOutput forward_graph(const ForwardBatch& b, KvCache& cache, int padded);
  StepMeta build_meta(const ForwardBatch& b, const KvCache& cache);
  // Step temporaries live in the workspace (rewound per step and per layer); only what a step returns is owned.
  Tensor scratch(DType dt, Shape s) { return Tensor(dt, s, ws_); }
  TensorView upload_i32(const std::vector<int32_t>& v, Shape shape = {});

  ModelConfig config_;
  ModelWeights weights_;
  Backend& backend_;
  Numerics numerics_;
  Tensor inv_freq_;  // [rope/2] f32 in backend memory
  Workspace ws_;     // activations of one step (backend memory)

  struct GraphSlot {
    bool tried = false;
    std::unique_ptr<BackendGraph> graph;  // null after a refused capture
    TensorView logits;                    // [size, vocab] f32 in the workspace, where every replay writes
  };
  CudaGraphOptions graph_opt_;
  std::vector<GraphSlot> graphs_;  // one per graph_opt_.batch_sizes entry
  Tensor graph_meta_;              // static step metadata of captured steps (layout: graph_step_meta)
  std::vector<int32_t> graph_meta_host_;
  Tensor graph_sel_;               // [r, vocab] f32: selected logits rows of a captured step (device sampling)
  GraphStats graph_stats_;};

}  // namespace dsv3
