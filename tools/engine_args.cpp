// engine_args.cpp: the one place where recipe settings become engine settings (tools).
#include "engine_args.h"

#include "dsv3/backend/backend.h"

namespace dsv3::tools {

EngineConfig engine_config_from_llm_args(const LlmArgs& a, const std::string& model_dir) {
  EngineConfig c;
  c.model_dir = model_dir;
  c.backend = a.backend == EngineBackend::kCpu    ? "cpu"
              : a.backend == EngineBackend::kCuda ? "cuda"
              : cuda_available()                  ? "cuda"
                                                  : "cpu";
  c.numerics = a.numerics == "auto" ? Numerics::kFp8 : parse_numerics(a.numerics);
  c.load_format = parse_load_format(a.load_format);
  if (a.max_batch_size) c.max_batch_size = static_cast<int>(*a.max_batch_size);
  if (a.max_num_tokens) c.max_num_tokens = static_cast<int>(*a.max_num_tokens);
  if (a.max_seq_len) c.max_seq_len = static_cast<int>(*a.max_seq_len);
  c.enable_chunked_prefill = a.enable_chunked_prefill;
  switch (a.scheduler_config.capacity_scheduler_policy) {
    case CapacitySchedulerPolicy::kGuaranteedNoEvict: c.policy = sched::CapacityPolicy::kGuaranteedNoEvict; break;
    case CapacitySchedulerPolicy::kMaxUtilization: c.policy = sched::CapacityPolicy::kMaxUtilization; break;
    case CapacitySchedulerPolicy::kStaticBatch:
      FAIL("scheduler_config.capacity_scheduler_policy STATIC_BATCH is not supported (GUARANTEED_NO_EVICT, "
           "MAX_UTILIZATION)");
  }
  c.enable_block_reuse = a.kv_cache_config.enable_block_reuse;
  if (a.kv_cache_config.max_tokens) c.kv_max_tokens = *a.kv_cache_config.max_tokens;
  if (a.kv_cache_config.free_gpu_memory_fraction) c.kv_free_gpu_mem_fraction = *a.kv_cache_config.free_gpu_memory_fraction;
  EXPECT(a.kv_cache_config.dtype == "auto" || a.kv_cache_config.dtype == "bf16",
         "kv_cache_config.dtype '{}' is not supported yet (auto = bf16)", a.kv_cache_config.dtype);
  for (int64_t s : cuda_graph_batch_sizes(a, c.max_batch_size)) c.cuda_graph_batch_sizes.push_back(static_cast<int>(s));
  c.cuda_graph_padding = a.cuda_graph_config.enable_padding;
  c.overlap_scheduler = !a.disable_overlap_scheduler;
  return c;
}

}  // namespace dsv3::tools
