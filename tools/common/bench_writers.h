// bench_writers.h: the per-request and per-iteration files of `dsv3 bench` (tools/common), interfaces.md §2.2/2.5:
// --output_json ({request id: decoded text}), --request_json (per-request records, E4) and --iteration_log
// (one JSON object per engine iteration; the engine fills IterationStats). Warm-up requests are left out.
#pragma once

#include <cstdint>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bench_report.h"

namespace dsv3 {

// Decodes generated ids to text (the tokenizer's decode, special tokens skipped).
using Detokenize = std::function<std::string(const std::vector<int32_t>& ids)>;

// {"<id>": "<text>", ...} sorted by request id (json.dumps turns the int keys into strings).
nlohmann::ordered_json output_json(const std::vector<RequestRecord>& records, const Detokenize& detokenize);

// [{id, num_input_tokens, error_tokens, start_timestamp, first_token_timestamp, end_timestamp, decode_iteration,
//   num_total_output_tokens, num_generated_tokens, generation_time, time_to_first_token, intertoken_latency,
//   end_to_end_latency, output_token_throughput, generation_token_throughput, output, output_tokens}, ...]
// Times in ns, throughputs in tokens/ns, as trtllm-bench's RequestRecord dump has them.
nlohmann::ordered_json request_json(const std::vector<RequestRecord>& records, const Detokenize& detokenize);

// One engine iteration, with the executor's IterationStats key names (camelCase, as trtllm-bench logs them).
struct IterationStats {
  struct KvCache {
    int64_t max_num_blocks = 0, free_num_blocks = 0, used_num_blocks = 0, tokens_per_block = 0;
    int64_t alloc_total_blocks = 0, alloc_new_blocks = 0, reused_blocks = 0, missed_blocks = 0;
    double cache_hit_rate = 0;
  };
  struct InflightBatching {
    int64_t num_scheduled_requests = 0, num_context_requests = 0, num_gen_requests = 0;
    int64_t num_paused_requests = 0, num_ctx_tokens = 0, micro_batch_id = 0;
    double avg_num_decoded_tokens_per_iter = 0;
  };
  struct SpecDecoding {
    int64_t num_draft_tokens = 0, num_accepted_tokens = 0, num_requests_with_draft_tokens = 0;
    double acceptance_length = 0, iter_latency_ms = 0, draft_overhead = 0;
  };
  std::string timestamp;  // wall-clock time of the iteration, "MM-DD-YYYY HH:MM:SS"
  int64_t iter = 0;
  double iter_latency_ms = 0;
  double new_active_requests_queue_latency_ms = 0;
  int64_t num_new_active_requests = 0, num_active_requests = 0, num_queued_requests = 0;
  int64_t num_completed_requests = 0, max_num_active_requests = 0;
  int64_t gpu_mem_usage = 0, cpu_mem_usage = 0, pinned_mem_usage = 0;  // bytes
  KvCache kv_cache_stats;
  InflightBatching inflight_batching_stats;
  std::optional<SpecDecoding> spec_decoding_stats;
};

nlohmann::ordered_json iteration_stats_json(const IterationStats& s);

// --iteration_log: appends one compact JSON line per iteration and flushes it, so a killed run keeps its log.
class IterationLogWriter {
 public:
  explicit IterationLogWriter(const std::string& path);  // truncates; throws dsv3::Error if it cannot
  void write(const IterationStats& s);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace dsv3
