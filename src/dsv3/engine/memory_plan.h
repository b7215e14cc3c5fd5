// memory_plan.h: the start-up GPU memory plan — weights, activation workspace, CUDA-graph reserve, KV pool (engine).
// One function serves the engine (device memory measured before and after loading) and `dsv3 inspect` (a given GPU
// size, nothing loaded), so the prediction and the run agree. Weights are exact (from the config, as the loader
// places them); the workspace is the peak of one step of max_num_tokens tokens; the KV pool follows TensorRT-LLM:
// free_gpu_memory_fraction of what is left, capped by kv_cache_config.max_tokens when that is set too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv3/io/config.h"
#include "dsv3/model/weights.h"

namespace dsv3 {

// CUDA graphs of the decode batch sizes (kept for their captured buffers and executable graphs): a fixed allowance.
constexpr int64_t kCudaGraphReserveBytes = 500'000'000;
// What the runtime holds before any weight is loaded — CUDA context, cuBLASLt handle + its 32 MB workspace, the
// backend's stream and flag buffers. Measured ~0.6 GB on an H200 (docs/benchmarks.md "Memory plan"); inspect
// subtracts this allowance from --gpu_memory_gb to predict the free memory at start-up.
constexpr int64_t kRuntimeReserveBytes = 750'000'000;

struct MemoryPlanOptions {
  Numerics numerics = Numerics::kFp8;
  bool fp8_checkpoint = true;          // linear weights are FP8 + scale_inv (config quant); false: bf16
  bool mtp = false;                    // the MTP layer is loaded: its weights and one more cache layer
  int64_t max_num_tokens = 8192;       // tokens per step
  int64_t max_batch_size = 2048;       // requests per step
  int64_t max_seq_len = 0;             // 0: max_position_embeddings
  int64_t tokens_per_block = 64;
  int64_t kv_max_tokens = 0;           // kv_cache_config.max_tokens; 0: from memory only
  double kv_free_gpu_mem_fraction = 0.9;
  bool enable_chunked_prefill = false; // a prompt chunk then reads up to max_seq_len cached tokens
};

struct DeviceMemory {
  int64_t total = 0;                // bytes
  int64_t free = 0;                 // bytes free before the weights are loaded
  int64_t free_after_weights = -1;  // measured once loaded; -1: predicted as free - weight bytes
};

struct PlanItem {
  std::string name;
  int64_t bytes = 0;
  std::string note;
};

struct MemoryPlan {
  MemoryPlanOptions options;
  DeviceMemory device;
  std::vector<PlanItem> weights;    // by component, sums to weight_bytes
  std::vector<PlanItem> workspace;  // by term, sums to workspace_bytes
  int64_t weight_bytes = 0;         // planned (exact for a checkpoint whose dtypes follow its config)
  int64_t weights_used = 0;         // measured device use when free_after_weights was given, else weight_bytes
  int64_t workspace_bytes = 0;
  int64_t graph_bytes = kCudaGraphReserveBytes;
  int64_t free_after_weights = 0;
  int64_t free_for_kv = 0;          // after weights, workspace and graphs; < 0: does not fit
  int64_t n_cache_layers = 0;
  int64_t kv_bytes_per_token = 0;   // all cache layers
  int64_t kv_block_bytes = 0;
  int64_t kv_blocks_by_memory = 0;  // fraction x free_for_kv
  int64_t kv_blocks_by_max_tokens = -1;  // -1: max_tokens not set
  int64_t kv_blocks = 0;
  int64_t kv_tokens = 0;
  int64_t kv_bytes = 0;
  std::string kv_limited_by;        // "free_gpu_memory_fraction" | "max_tokens" | "max_batch_size x max_seq_len"
  int64_t max_seq_len = 0;
  int64_t blocks_per_seq = 0;
  int64_t max_concurrent_seqs = 0;  // of max_seq_len tokens each
  std::string error;                // "out of GPU memory: ..." when the plan does not fit; empty otherwise

  bool fits() const { return error.empty(); }
};

// Weight bytes by component (embedding, lm_head, attention, ...) exactly as load_model_weights places them.
std::vector<PlanItem> plan_weight_bytes(const ModelConfig& c, const MemoryPlanOptions& o);
// Peak activation workspace of one step of o.max_num_tokens tokens on the CUDA backend, by term.
std::vector<PlanItem> plan_workspace_bytes(const ModelConfig& c, const MemoryPlanOptions& o);
// The whole plan; never throws for a plan that does not fit (see error / expect_fits). Bad options throw.
MemoryPlan plan_memory(const ModelConfig& c, const MemoryPlanOptions& o, const DeviceMemory& dev);
// Throws dsv3::Error(plan.error) when the plan does not fit.
void expect_fits(const MemoryPlan& plan);
// The plan as a small table, one line per item, GB (1e9 bytes) with 2 decimals. `details`: weight components and
// workspace terms too.
std::string format_memory_plan(const MemoryPlan& plan, bool details = false);

}  // namespace dsv3
