// bench_options.h: the command line of `dsv3 bench` (tools/common), trtllm-bench's option set (interfaces.md §2.1
// root options before the subcommand, §2.2 `throughput`, §2.6 `latency`), each in the recipe's underscore spelling
// and the dashed form. Parsing gives BenchOptions plus the merged LlmArgs: first the arguments trtllm-bench derives
// from the flags (with its injected PyTorch defaults: CUDA graphs with padding, overlap scheduler on, block reuse
// off), then the --extra_llm_api_options YAML over them (YAML wins, top-level key by key; see llm_args.h).
// Usage by the bench command:
//   BenchConfig cfg;
//   if (auto rc = parse_bench_command_line(argc, argv, cfg)) return *rc;
//   for (auto& w : cfg.warnings) log_warn("{}", w);
//   reject_unsupported(cfg.llm_args, cfg.origins, caps);
//   BenchDataset ds = read_bench_dataset(cfg.options.dataset, dataset_read_options(cfg));
//   apply_dataset_defaults(cfg, ds);
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/bench_dataset.h"
#include "common/llm_args.h"

namespace dsv3 {

enum class BenchMode { kThroughput, kLatency };

struct BenchOptions {
  BenchMode mode = BenchMode::kThroughput;
  // §2.1 root options
  std::string model;       // --model/-m: the HF model name, for the report (a directory is taken as the path)
  std::string model_path;  // --model_path: the checkpoint directory that is loaded
  std::string workspace = "/tmp";
  std::string log_level = "info";
  std::string revision;
  // §2.2 / §2.6 subcommand options
  std::string dataset;
  std::string backend = "pytorch";  // pytorch (= cuda when a GPU is present, else cpu) | cpu | cuda
  std::string engine_dir, modality, medusa_choices;  // accepted for the error message only
  std::string extra_llm_api_options;  // also --config
  std::optional<int64_t> max_batch_size, max_num_tokens, max_seq_len;
  std::optional<int64_t> target_input_len, target_output_len;
  std::optional<int64_t> ep, cluster_size;
  int64_t beam_width = 1;
  double kv_cache_free_gpu_mem_fraction = 0.90;
  int64_t eos_id = -1;          // -1: EOS ignored, every request yields exactly output_tokens tokens
  int64_t max_input_len = 4096;
  int64_t num_requests = 0;     // 0: the whole dataset; N: its first N lines
  int64_t warmup = 2;           // requests sampled with replacement, run non-streaming, excluded from the report
  int64_t tp = 1, pp = 1;
  int64_t concurrency = -1;     // <= 0: no limit (throughput); latency defaults to 1
  bool streaming = false;       // latency: always on
  std::string report_json, iteration_log, output_json, request_json;
  bool enable_chunked_context = false;
  std::string scheduler_policy = "guaranteed_no_evict";  // | max_utilization

  // The directory to load: --model_path, else --model.
  const std::string& checkpoint_dir() const { return model_path.empty() ? model : model_path; }
};

struct BenchConfig {
  BenchOptions options;
  LlmArgs llm_args;                   // CLI layer + YAML
  ArgOrigins origins;                 // where each explicit setting came from (flag or YAML key)
  std::vector<std::string> warnings;  // "Overriding <key> because it's specified in <file>", for the caller to log
};

// Parses `dsv3 bench [root options] {throughput|latency} [options]` (argv[0] is the program name). Returns the
// exit code when the process should stop (--help: 0 after printing; a usage error: non-zero after printing it),
// nullopt when `out` is ready. Semantic errors (bad YAML, unsupported --backend, ...) throw dsv3::Error.
std::optional<int> parse_bench_command_line(int argc, char** argv, BenchConfig& out);

// Validates `o` and builds the LlmArgs: the CLI layer, then the YAML file if any. Throws dsv3::Error.
BenchConfig make_bench_config(const BenchOptions& o);

// The reader options the bench applies: --num_requests and the max_seq_len set by flag or YAML (if any).
DatasetReadOptions dataset_read_options(const BenchConfig& c);

// After reading the dataset: max_seq_len defaults to the longest ISL+OSL (§2.2); with chunked prefill off, a
// max_num_tokens smaller than the longest prompt is an error naming that prompt's line.
void apply_dataset_defaults(BenchConfig& c, const BenchDataset& ds);

}  // namespace dsv3
