// llm_args.h: LlmArgs, the single source of truth for engine settings, and the `--extra_llm_api_options` YAML
// reader (tools/common). Field names are TensorRT-LLM's current (E4) LLM-API names; the YAML reader accepts every
// era's spelling (interfaces.md §3.2) and maps it onto these fields. Merge rule (§2.2, §3): the YAML is a shallow
// top-level override of the CLI-derived arguments: a YAML sub-config (kv_cache_config, pytorch_backend_config,
// cuda_graph_config, ...) replaces the whole group with that group's defaults plus what the YAML restates.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace dsv3 {

// Which engine runs: `pytorch` (the recipe's spelling) = kAuto = cuda when a GPU is present, else cpu.
enum class EngineBackend { kAuto, kCpu, kCuda };

enum class CapacitySchedulerPolicy { kGuaranteedNoEvict, kMaxUtilization, kStaticBatch };

const char* engine_backend_name(EngineBackend b);            // "pytorch" | "cpu" | "cuda"
const char* capacity_scheduler_policy_name(CapacitySchedulerPolicy p);  // "GUARANTEED_NO_EVICT" | ...

struct KvCacheConfig {
  std::optional<double> free_gpu_memory_fraction;  // nullopt: the engine default 0.9 (reported as None)
  std::optional<int64_t> max_tokens;               // cap on KV tokens; the smaller of this and the fraction wins
  bool enable_block_reuse = true;                  // LLM-API default; trtllm-bench sets false
  std::string dtype = "auto";                      // auto | fp8 (E1-E3: kv_cache_dtype)
  std::vector<int64_t> max_attention_window;
  std::optional<int64_t> sink_token_length;
  std::optional<int64_t> host_cache_size;
  bool onboard_blocks = true;
  std::optional<double> cross_kv_cache_fraction;
  std::optional<int64_t> secondary_offload_min_priority;
  int64_t event_buffer_max_size = 0;
  bool enable_partial_reuse = true;
  bool copy_on_partial_reuse = true;
  bool use_uvm = false;

  double effective_free_gpu_memory_fraction() const { return free_gpu_memory_fraction.value_or(0.9); }
  bool operator==(const KvCacheConfig&) const = default;
};

struct DynamicBatchConfig {
  bool enable_batch_size_tuning = true;
  bool enable_max_num_tokens_tuning = false;
  int64_t dynamic_batch_moving_average_window = 128;
  bool operator==(const DynamicBatchConfig&) const = default;
};

struct SchedulerConfig {
  CapacitySchedulerPolicy capacity_scheduler_policy = CapacitySchedulerPolicy::kGuaranteedNoEvict;
  std::string context_chunking_policy;  // "" (engine default) | FIRST_COME_FIRST_SERVED | EQUAL_PROGRESS
  std::optional<DynamicBatchConfig> dynamic_batch_config;
  bool operator==(const SchedulerConfig&) const = default;
};

// Meaningful only while LlmArgs::use_cuda_graph is true (E4: cuda_graph_config present and not null).
struct CudaGraphConfig {
  std::vector<int64_t> batch_sizes;  // explicit list; empty = generated (cuda_graph_batch_sizes())
  // 0: 128 when there is no list (PyTorchConfig default); -1: the runtime max_batch_size, whatever the engine
  // picks (what trtllm-bench injects when --max_batch_size is not given).
  int64_t max_batch_size = 0;
  bool enable_padding = false;
  bool operator==(const CudaGraphConfig&) const = default;
};

struct MoeConfig {
  std::string backend = "CUTLASS";  // CUTLASS | TRTLLM | WIDEEP | DEEPGEMM | CUTEDSL | VANILLA
  std::optional<int64_t> max_num_tokens;  // MoE chunking
  std::string load_balancer;        // EPLB: a file path, or the YAML mapping re-emitted as text; "" = off
  bool operator==(const MoeConfig&) const = default;
};

struct TorchCompileConfig {
  bool enable_fullgraph = true;
  bool enable_inductor = false;
  bool enable_piecewise_cuda_graph = false;
  bool enable_userbuffers = true;
  int64_t max_num_streams = 1;
  bool operator==(const TorchCompileConfig&) const = default;
};

struct SpeculativeConfig {
  std::string decoding_type = "MTP";  // MTP | Eagle | Medusa | Lookahead | NGram | DraftTarget | UserProvided | AUTO
  std::optional<int64_t> num_nextn_predict_layers;
  std::optional<int64_t> max_draft_len;  // later spelling of the MTP depth; both given must agree
  bool use_relaxed_acceptance_for_thinking = false;
  int64_t relaxed_topk = 1;
  double relaxed_delta = 0.0;
  bool use_mtp_vanilla = false;
  std::string speculative_model_dir;  // draft-model types only

  int64_t draft_len() const { return max_draft_len.value_or(num_nextn_predict_layers.value_or(1)); }
  bool operator==(const SpeculativeConfig&) const = default;
};

struct AttentionDpConfig {
  bool enable_balance = false;
  int64_t batching_wait_iters = 10;
  int64_t timeout_iters = 50;
  bool operator==(const AttentionDpConfig&) const = default;
};

struct LlmArgs {
  // --- engine selection and checkpoint
  EngineBackend backend = EngineBackend::kAuto;
  std::string numerics = "auto";     // dsv3: auto (checkpoint's) | fp8 | bf16 (architecture.md "Numerics")
  std::string dtype = "auto";
  std::string load_format = "auto";  // auto | dummy
  bool trust_remote_code = false;
  bool skip_tokenizer_init = false;

  // --- limits (nullopt: the engine's heuristic / the dataset's maximum picks them)
  std::optional<int64_t> max_batch_size;
  std::optional<int64_t> max_num_tokens;
  std::optional<int64_t> max_seq_len;
  std::optional<int64_t> max_input_len;
  int64_t max_beam_width = 1;

  // --- parallelism (values > 1 parse; reject_unsupported() refuses them until they run)
  int64_t tensor_parallel_size = 1;
  int64_t pipeline_parallel_size = 1;
  std::optional<int64_t> moe_expert_parallel_size;
  std::optional<int64_t> moe_tensor_parallel_size;
  std::optional<int64_t> moe_cluster_parallel_size;
  bool enable_attention_dp = false;
  std::optional<AttentionDpConfig> attention_dp_config;

  // --- KV cache and scheduling
  KvCacheConfig kv_cache_config;
  SchedulerConfig scheduler_config;
  bool enable_chunked_prefill = false;
  bool disable_overlap_scheduler = false;  // E1: !enable_overlap_scheduler

  // --- CUDA graphs (E1-E3: use_cuda_graph + cuda_graph_*; E4: cuda_graph_config)
  bool use_cuda_graph = false;
  CudaGraphConfig cuda_graph_config;

  // --- kernels
  MoeConfig moe_config;
  std::string attn_backend = "TRTLLM";
  std::optional<TorchCompileConfig> torch_compile_config;
  bool enable_autotuner = true;  // E1-E3: autotuner_enabled
  std::string allreduce_strategy = "AUTO";

  // --- speculative decoding (MTP)
  std::optional<SpeculativeConfig> speculative_config;

  // --- sampling
  bool mixed_sampler = false;          // E1: mixed_decoder
  bool enable_trtllm_sampler = false;  // E1: enable_trtllm_decoder

  // --- statistics and logging
  bool print_iter_log = false;
  bool enable_iter_perf_stats = false;
  bool enable_iter_req_stats = false;
  int64_t stream_interval = 1;

  // --- rarely used PyTorchConfig fields, kept so recipe YAMLs parse
  bool use_kv_cache = true;
  bool enable_layerwise_nvtx_marker = false;
  bool enable_min_latency = false;

  int64_t world_size() const { return tensor_parallel_size * pipeline_parallel_size; }
  bool operator==(const LlmArgs&) const = default;
};

// Where each explicitly set field came from: canonical field name (e.g. "kv_cache_config.dtype") ->
// "--tp" or "extra.yml:4 (pytorch_backend_config.kv_cache_dtype)". Used for error messages only.
using ArgOrigins = std::map<std::string, std::string>;

// The CUDA-graph batch sizes to capture (interfaces.md §3.1), given the engine's runtime max_batch_size (used when
// cuda_graph_config.max_batch_size is -1). Empty when use_cuda_graph is false.
std::vector<int64_t> cuda_graph_batch_sizes(const LlmArgs& args, int64_t runtime_max_batch_size);

// Applies an extra_llm_api_options YAML document over `args` (the CLI-derived arguments) with TensorRT-LLM's rule:
// the YAML wins, top-level key by top-level key. `source` names the file in messages. `cli_keys` are the top-level
// keys the CLI layer set; each one the YAML repeats yields the warning "Overriding <key> because it's specified in
// <source>" (returned, for the caller to log). Throws dsv3::Error naming file, line and key path for malformed YAML,
// unknown keys, bad value types or values, and for two eras' spellings of one setting in the same file.
std::vector<std::string> apply_llm_api_options_yaml(LlmArgs& args, ArgOrigins& origins, const std::string& yaml_text,
                                                    const std::string& source,
                                                    const std::set<std::string>& cli_keys = {});
// Same, reading the file at `path`.
std::vector<std::string> apply_llm_api_options_file(LlmArgs& args, ArgOrigins& origins, const std::string& path,
                                                    const std::set<std::string>& cli_keys = {});

// What the engine of this build can run; reject_unsupported() throws a dsv3::Error naming the first setting
// outside it and where it was set (flag or YAML key), so nothing is silently ignored.
struct EngineCapabilities {
  int64_t max_tensor_parallel = 1;
  int64_t max_pipeline_parallel = 1;
  int64_t max_expert_parallel = 1;
  bool attention_dp = false;
  bool mtp = false;
  bool beam_search = false;
};
void reject_unsupported(const LlmArgs& args, const ArgOrigins& origins, const EngineCapabilities& caps);

}  // namespace dsv3
