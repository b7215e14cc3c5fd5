// engine_config.h: every setting the engine runs with (engine). Tools fill it from their options and the
// --extra_llm_api_options YAML (LlmArgs); defaults follow TensorRT-LLM's LLM API where it has one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv3/io/weight_source.h"
#include "dsv3/model/weights.h"
#include "dsv3/sched/scheduler.h"

namespace dsv3 {

// Where next tokens are drawn. kAuto: on the backend (Backend::sample) when it is not host-visible (a GPU) and the
// environment has no DSV3_GPU_SAMPLING=0; kOff: always the host Sampler (logits copied to the host); kAlways: on the
// backend whatever it is (tests: makes the CPU backend take the device-logits path). Rows that need penalties,
// min_tokens masking or top-n logprobs are always sampled on the host (only their logits rows are copied).
enum class BackendSampling { kAuto, kOff, kAlways };

struct EngineConfig {
  std::string model_dir;
  std::string tokenizer_dir;                  // "" = model_dir (when it has tokenizer.json)
  LoadFormat load_format = LoadFormat::kAuto;
  uint64_t dummy_seed = 0;
  std::string backend = "cpu";                // "cpu" | "cuda"
  Numerics numerics = Numerics::kFp8;
  // The CUDA backend's op numerics (backend.h OpNumerics): kFromEnv follows DSV3_NUMERICS; kReference makes every
  // op bit for bit the CPU's (slow). The CPU backend ignores it.
  OpNumerics op_numerics = OpNumerics::kFromEnv;

  int max_batch_size = 2048;                  // requests per step
  int max_num_tokens = 8192;                  // tokens per step
  int max_seq_len = 0;                        // 0: the model's max_position_embeddings
  bool enable_chunked_prefill = false;
  sched::CapacityPolicy policy = sched::CapacityPolicy::kGuaranteedNoEvict;
  bool enable_block_reuse = true;             // kv_cache_config.enable_block_reuse (bench turns it off)
  int tokens_per_block = 64;
  int64_t kv_max_tokens = 0;                  // kv_cache_config.max_tokens; 0 = from memory
  double kv_free_gpu_mem_fraction = 0.9;      // kv_cache_config.free_gpu_memory_fraction (GPU)
  int64_t kv_cpu_bytes = 1ll << 30;           // CPU backend: byte budget of the KV pool when max_tokens is 0
  bool check_integrity = false;               // scheduler/KV integrity check after every step (tests, debug)
  // CUDA graphs for decode-only steps (cuda_graph_config; tools/common/llm_args.h makes the list). Empty: off.
  std::vector<int> cuda_graph_batch_sizes;
  bool cuda_graph_padding = false;            // cuda_graph_config.enable_padding
  BackendSampling backend_sampling = BackendSampling::kAuto;
  // The overlap scheduler (TensorRT-LLM's; LlmArgs::disable_overlap_scheduler = false): the host schedules and
  // launches step n+1 before it reads step n's sampled ids back, and processes step n while step n+1 runs. Takes
  // effect on a backend that is not host-visible and samples on the backend; a step with a row sampled on the host
  // runs synchronously. Outputs are the same either way.
  bool overlap_scheduler = true;
};

}  // namespace dsv3
