// bench_report.h: the statistics, console report and --report_json of `dsv3 bench` (tools/common).
// Inputs are per-request records with client-side timestamps (what the bench loop measures) plus run metadata;
// outputs follow interfaces.md §2.4 (E2 labels and section layout, metric formulas, nearest-rank percentiles) and
// §2.5 (the statistics dict, written with indent=4). Usage by the bench command:
//   BenchStatistics st = compute_bench_statistics(records, info.max_draft_len);
//   auto dict = bench_statistics_json(info, st, dataset_stats(ds));
//   std::fputs(format_bench_report(dict).c_str(), stdout);
//   if (!opts.report_json.empty()) write_json_file(opts.report_json, dict);
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bench_dataset.h"
#include "common/bench_percentiles.h"
#include "common/llm_args.h"

namespace dsv3 {

// One request of the run. Timestamps are nanoseconds of one monotonic clock (steady_clock), as trtllm-bench uses
// perf_counter_ns; only differences matter.
struct RequestRecord {
  int64_t id = -1;                // request id in submission order
  int64_t num_input_tokens = 0;
  int64_t num_output_tokens = 0;  // tokens produced, the first included (= output_tokens of the dataset row)
  int64_t start_ns = -1;          // just before submission, after the concurrency slot was acquired
  int64_t first_token_ns = -1;    // first streamed token; -1 when not streaming
  int64_t end_ns = -1;            // final response
  int64_t decode_iteration = 0;   // index of the last decoding iteration (iterations - 1); MTP statistics use it
  int64_t error_tokens = 0;
  bool warmup = false;            // warm-up requests are excluded from every statistic and writer
  std::vector<int32_t> tokens;    // generated ids; needed only by --output_json / --request_json
};

// Per-request derived values (statistics.py RequestRecord), in ns and tokens/ns.
struct RequestMetrics {
  int64_t e2e_ns = 0;             // end - start
  int64_t ttft_ns = 0;            // first_token - start; 0 without a first-token time
  int64_t generation_ns = 0;      // e2e - ttft
  double tpot_ns = 0;             // (end - first_token) / (output_tokens - 1); 0 when output_tokens <= 1
  double gen_tps_per_ns = 0;      // (output_tokens - 1) / generation; 0 when either is 0
  double output_tps_per_ns = 0;   // output_tokens / e2e ("per user, w/ ctx")
};
RequestMetrics request_metrics(const RequestRecord& r);

struct BenchStatistics {
  int64_t num_requests = 0;
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  int64_t total_latency_ns = 0;         // last end - first start
  double issue_rate_ns = 0;             // (last start - first start) / num_requests
  double avg_concurrent_requests = 0;   // sum of request latencies / total latency
  PercentileStats request_latency_ns, ttft_ns, tpot_ns, gen_tps_per_ns, output_tps_per_user_per_ns, output_tokens;
  // Only with speculative decoding (max_draft_len > 0).
  std::optional<PercentileStats> num_draft_tokens, num_accepted_draft_tokens, draft_acceptance_rate,
      acceptance_length;
  double global_acceptance_length = 0;  // sum of output tokens / sum of iterations

  // Run totals (§2.4), per second.
  double request_throughput_per_s() const;
  double output_throughput_tok_per_s() const;
  double total_token_throughput_tok_per_s() const;
};

// Warm-up records are skipped; throws dsv3::Error when no timed request is left.
BenchStatistics compute_bench_statistics(const std::vector<RequestRecord>& records, int64_t max_draft_len = 0);

struct MachineInfo {
  std::string name;
  std::optional<double> memory_total_gb, clocks_mem_ghz;
};

// Everything the report shows besides the statistics.
struct BenchRunInfo {
  // engine block
  std::string model, model_path;
  std::optional<std::string> engine_dir;  // written as the string "None" when absent, as str(None) does
  std::string version = "dsv3";
  std::string backend = "Pytorch";
  std::optional<std::string> dtype, kv_cache_dtype, quantization;  // null / "None" when absent
  std::optional<MachineInfo> machine;                              // JSON only (late-2025 key)
  // world + runtime
  int64_t tp_size = 1, pp_size = 1;
  std::optional<int64_t> ep_size;
  std::optional<int64_t> max_batch_size, max_num_tokens;  // the values the engine ran with
  std::string scheduling_policy = "GUARANTEED_NO_EVICT";
  std::optional<double> kv_cache_percentage;  // a fraction, e.g. 0.95
  // run
  bool streaming = false;
  std::optional<std::string> decoding_mode;  // "MTP" with a speculative config
  int64_t max_draft_len = 0;

  int64_t world_size() const { return tp_size * pp_size; }
};

// Fills the world/runtime and decoding fields of `info` from the engine settings.
void fill_run_info(BenchRunInfo& info, const LlmArgs& args);

// The statistics dict of §2.5, keys in trtllm-bench's order.
nlohmann::ordered_json bench_statistics_json(const BenchRunInfo& info, const BenchStatistics& st,
                                             const DatasetStats& dataset);

// The console report (§2.4, E2 labels) rendered from that dict, so both always agree.
std::string format_bench_report(const nlohmann::ordered_json& stats);
// The "DATASET DETAILS" block alone (also printed before a run).
std::string format_dataset_details(const DatasetStats& ds);

// Writes `j` like Python's json.dump(j, f, indent=4): non-ASCII escaped, invalid UTF-8 replaced.
void write_json_file(const std::string& path, const nlohmann::ordered_json& j, int indent = 4);
// The text json.dumps(j, indent=indent) gives (indent < 0: json.dumps(j)), floats as Python's repr.
std::string python_float_repr(double v);
std::string python_json_dumps(const nlohmann::ordered_json& j, int indent = 4);

}  // namespace dsv3
