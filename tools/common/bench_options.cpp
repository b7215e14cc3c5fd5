// bench_options.cpp: trtllm-bench's CLI over CLI11, and the CLI -> LlmArgs layer (tools/common); see
// bench_options.h. Defaults are interfaces.md §2.2 (E1 unless the option only exists in E4).
#include "common/bench_options.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include <CLI/CLI.hpp>

#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "--max_batch_size" -> "--max_batch_size,--max-batch-size".
std::string names(const std::string& underscore, const std::string& extra = "") {
  std::string dashed = underscore;
  std::replace(dashed.begin() + 2, dashed.end(), '_', '-');
  std::string n = underscore;
  if (dashed != underscore) n += "," + dashed;
  if (!extra.empty()) n += "," + extra;
  return n;
}

void add_opt_int(CLI::App* app, const std::string& name, std::optional<int64_t>& dst, const std::string& help) {
  app->add_option_function<int64_t>(names(name), [&dst](const int64_t& v) { dst = v; }, help);
}

// The options of `throughput` (§2.2) or `latency` (§2.6, a subset plus --concurrency 1 and --medusa_choices).
void add_run_options(CLI::App* sub, BenchOptions& o, BenchMode mode) {
  const bool tput = mode == BenchMode::kThroughput;
  sub->add_option(names("--dataset"), o.dataset, "JSON-lines dataset (dsv3 prepare-dataset --stdout)")->required();
  sub->add_option(names("--backend"), o.backend, "pytorch (= cuda when a GPU is present, else cpu) | cpu | cuda")
      ->capture_default_str();
  sub->add_option(names("--engine_dir"), o.engine_dir, "TensorRT engine directory (not supported by dsv3)");
  sub->add_option(names("--extra_llm_api_options", "--config"), o.extra_llm_api_options,
                  "YAML of LLM-API arguments over the flags (all eras of interfaces.md §3)");
  sub->add_option(names("--kv_cache_free_gpu_mem_fraction"), o.kv_cache_free_gpu_mem_fraction,
                  "fraction of free GPU memory for the KV cache")
      ->capture_default_str();
  add_opt_int(sub, "--max_seq_len", o.max_seq_len, "maximum ISL+OSL per request (default: the dataset's maximum)");
  sub->add_option(names("--modality"), o.modality, "image | video (not supported by dsv3)");
  sub->add_option(names("--max_input_len"), o.max_input_len, "multimodal only")->capture_default_str();
  sub->add_option(names("--num_requests"), o.num_requests, "the first N requests of the dataset; 0 = all")
      ->capture_default_str();
  sub->add_option(names("--warmup"), o.warmup, "warm-up requests, excluded from the report")->capture_default_str();
  sub->add_option(names("--tp"), o.tp, "tensor parallel size")->capture_default_str();
  sub->add_option(names("--pp"), o.pp, "pipeline parallel size")->capture_default_str();
  add_opt_int(sub, "--ep", o.ep, "MoE expert parallel size");
  sub->add_option(names("--beam_width"), o.beam_width, "beam width")->capture_default_str();
  sub->add_option(names("--concurrency"), o.concurrency, "maximum in-flight requests; <= 0 = no limit")
      ->capture_default_str();
  sub->add_option(names("--report_json"), o.report_json, "write the statistics (interfaces.md §2.5) here");
  sub->add_option(names("--iteration_log"), o.iteration_log, "write per-iteration statistics (JSON lines) here");
  if (tput) {
    add_opt_int(sub, "--max_batch_size", o.max_batch_size, "maximum runtime batch size (default: heuristic)");
    add_opt_int(sub, "--max_num_tokens", o.max_num_tokens, "token budget per iteration (default: heuristic)");
    sub->add_option(names("--eos_id"), o.eos_id, "end-of-sequence id; -1 ignores EOS")->capture_default_str();
    add_opt_int(sub, "--target_input_len", o.target_input_len, "tuning hint (default: dataset average)");
    add_opt_int(sub, "--target_output_len", o.target_output_len, "tuning hint (default: dataset average)");
    add_opt_int(sub, "--cluster_size", o.cluster_size, "MoE cluster parallel size");
    sub->add_flag(names("--streaming"), o.streaming, "stream tokens; needed for TTFT/TPOT");
    sub->add_option(names("--output_json"), o.output_json, "write {request id: generated text} here");
    sub->add_option(names("--request_json"), o.request_json, "write per-request records here");
    sub->add_flag(names("--enable_chunked_context"), o.enable_chunked_context, "chunked prefill");
    sub->add_option(names("--scheduler_policy"), o.scheduler_policy, "guaranteed_no_evict | max_utilization")
        ->capture_default_str();
  } else {
    sub->add_option(names("--medusa_choices"), o.medusa_choices, "Medusa choices YAML (not supported by dsv3)");
  }
}

}  // namespace

std::optional<int> parse_bench_command_line(int argc, char** argv, BenchConfig& out) {
  CLI::App app{"Benchmark the engine on a dataset; trtllm-bench's options and report", "dsv3 bench"};
  app.fallthrough();  // root options may also follow the subcommand
  BenchOptions root, tput, lat;
  lat.mode = BenchMode::kLatency;
  lat.concurrency = 1;
  lat.streaming = true;
  app.add_option("--model,-m", root.model, "HF model name (reported); a directory here is also the checkpoint");
  app.add_option(names("--model_path"), root.model_path, "checkpoint directory to load");
  app.add_option("--workspace,-w", root.workspace, "scratch directory")->capture_default_str();
  app.add_option(names("--log_level"), root.log_level, "logging level")
      ->check(CLI::IsMember({"internal_error", "error", "warning", "info", "verbose", "debug", "trace"}))
      ->capture_default_str();
  app.add_option("--revision", root.revision, "HF revision (unused: nothing is downloaded)");
  CLI::App* sub_tput = app.add_subcommand("throughput", "offline throughput over the dataset");
  CLI::App* sub_lat = app.add_subcommand("latency", "low-latency run: concurrency 1, streaming, batch 1");
  add_run_options(sub_tput, tput, BenchMode::kThroughput);
  add_run_options(sub_lat, lat, BenchMode::kLatency);
  app.require_subcommand(1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  BenchOptions o = sub_lat->parsed() ? lat : tput;
  o.model = root.model;
  o.model_path = root.model_path;
  o.workspace = root.workspace;
  o.log_level = root.log_level;
  o.revision = root.revision;
  out = make_bench_config(o);
  return std::nullopt;
}

BenchConfig make_bench_config(const BenchOptions& in) {
  BenchConfig c;
  c.options = in;
  BenchOptions& o = c.options;
  const bool latency = o.mode == BenchMode::kLatency;

  // --- validation of the flags themselves
  EXPECT(!o.model.empty() || !o.model_path.empty(), "--model (or --model_path) is required");
  if (o.model_path.empty() && std::filesystem::is_directory(o.model)) o.model_path = o.model;
  if (o.model.empty()) o.model = o.model_path;
  EXPECT(!o.dataset.empty(), "--dataset is required");
  const std::string backend = lower(o.backend);
  EXPECT(backend == "pytorch" || backend == "cpu" || backend == "cuda",
         "--backend {}: dsv3 has no TensorRT or autodeploy backend; use pytorch (the default engine), cpu or cuda",
         o.backend);
  EXPECT(o.engine_dir.empty(), "--engine_dir: TensorRT engines are not supported; dsv3 runs the HF checkpoint "
                               "given by --model_path");
  EXPECT(o.modality.empty(), "--modality {}: multimodal benchmarks are not supported", o.modality);
  EXPECT(o.medusa_choices.empty(), "--medusa_choices: Medusa is not supported (dsv3 speculates with MTP)");
  EXPECT(o.kv_cache_free_gpu_mem_fraction > 0.0 && o.kv_cache_free_gpu_mem_fraction <= 1.0,
         "--kv_cache_free_gpu_mem_fraction must be in (0, 1], got {}", o.kv_cache_free_gpu_mem_fraction);
  EXPECT(o.tp >= 1 && o.pp >= 1, "--tp and --pp must be >= 1, got {} and {}", o.tp, o.pp);
  EXPECT(!o.ep || *o.ep >= 1, "--ep must be >= 1, got {}", o.ep.value_or(0));
  EXPECT(o.beam_width >= 1, "--beam_width must be >= 1, got {}", o.beam_width);
  EXPECT(o.num_requests >= 0, "--num_requests must be >= 0, got {}", o.num_requests);
  EXPECT(o.warmup >= 0, "--warmup must be >= 0, got {}", o.warmup);
  for (auto [flag, v] : {std::pair{"--max_batch_size", o.max_batch_size}, {"--max_num_tokens", o.max_num_tokens},
                         {"--max_seq_len", o.max_seq_len}})
    EXPECT(!v || *v >= 1, "{} must be >= 1, got {}", flag, *v);
  const std::string policy = lower(o.scheduler_policy);
  EXPECT(policy == "guaranteed_no_evict" || policy == "max_utilization",
         "--scheduler_policy {}: expected guaranteed_no_evict or max_utilization", o.scheduler_policy);
  if (latency) o.streaming = true;

  // --- the CLI layer: what trtllm-bench puts into the LLM arguments before the YAML
  LlmArgs& a = c.llm_args;
  ArgOrigins& from = c.origins;
  std::set<std::string> keys;
  auto set = [&](const std::string& key, const std::string& field, const std::string& origin) {
    keys.insert(key);
    from[field] = origin;
  };
  a.backend = backend == "cpu" ? EngineBackend::kCpu : backend == "cuda" ? EngineBackend::kCuda : EngineBackend::kAuto;
  set("backend", "backend", "--backend");
  if (latency) {
    a.max_batch_size = 1;  // §2.6: latency forces batch 1 and no chunking
    set("max_batch_size", "max_batch_size", "bench latency (batch 1)");
  } else if (o.max_batch_size) {
    a.max_batch_size = o.max_batch_size;
    set("max_batch_size", "max_batch_size", "--max_batch_size");
  }
  if (o.max_num_tokens) {
    a.max_num_tokens = o.max_num_tokens;
    set("max_num_tokens", "max_num_tokens", "--max_num_tokens");
  }
  if (o.max_seq_len) {
    a.max_seq_len = o.max_seq_len;
    set("max_seq_len", "max_seq_len", "--max_seq_len");
  }
  a.tensor_parallel_size = o.tp;
  set("tensor_parallel_size", "tensor_parallel_size", "--tp");
  a.pipeline_parallel_size = o.pp;
  set("pipeline_parallel_size", "pipeline_parallel_size", "--pp");
  if (o.ep) {
    a.moe_expert_parallel_size = o.ep;
    set("moe_expert_parallel_size", "moe_expert_parallel_size", "--ep");
  }
  if (o.cluster_size) {
    a.moe_cluster_parallel_size = o.cluster_size;
    set("moe_cluster_parallel_size", "moe_cluster_parallel_size", "--cluster_size");
  }
  a.max_beam_width = o.beam_width;
  set("max_beam_width", "max_beam_width", "--beam_width");
  a.kv_cache_config.free_gpu_memory_fraction = o.kv_cache_free_gpu_mem_fraction;
  a.kv_cache_config.enable_block_reuse = false;  // §2.2: trtllm-bench turns prefix reuse off
  set("kv_cache_config", "kv_cache_config.free_gpu_memory_fraction", "--kv_cache_free_gpu_mem_fraction");
  a.scheduler_config.capacity_scheduler_policy = policy == "max_utilization"
                                                     ? CapacitySchedulerPolicy::kMaxUtilization
                                                     : CapacitySchedulerPolicy::kGuaranteedNoEvict;
  set("scheduler_config", "scheduler_config.capacity_scheduler_policy", "--scheduler_policy");
  a.enable_chunked_prefill = latency ? false : o.enable_chunked_context;
  set("enable_chunked_prefill", "enable_chunked_prefill", latency ? "bench latency" : "--enable_chunked_context");
  // The PyTorch defaults trtllm-bench injects (§2.2): CUDA graphs with padding up to max_batch_size, overlap on.
  a.use_cuda_graph = true;
  a.cuda_graph_config.enable_padding = true;
  a.cuda_graph_config.max_batch_size = a.max_batch_size.value_or(-1);  // -1: the runtime max_batch_size
  a.disable_overlap_scheduler = false;
  for (const char* k : {"pytorch_backend_config", "use_cuda_graph", "cuda_graph_padding_enabled",
                        "cuda_graph_max_batch_size", "cuda_graph_config", "enable_overlap_scheduler",
                        "disable_overlap_scheduler", "kv_cache_dtype"})
    keys.insert(k);

  // --- the YAML over it
  if (!o.extra_llm_api_options.empty())
    c.warnings = apply_llm_api_options_file(a, from, o.extra_llm_api_options, keys);
  if (!o.iteration_log.empty()) a.enable_iter_perf_stats = true;  // --iteration_log needs the iteration stats
  return c;
}

DatasetReadOptions dataset_read_options(const BenchConfig& c) {
  DatasetReadOptions r;
  r.num_requests = c.options.num_requests;
  r.max_seq_len = c.llm_args.max_seq_len;
  return r;
}

void apply_dataset_defaults(BenchConfig& c, const BenchDataset& ds) {
  LlmArgs& a = c.llm_args;
  const DatasetStats st = dataset_stats(ds);
  if (!a.max_seq_len) {
    a.max_seq_len = st.max_sequence_length();
    c.origins["max_seq_len"] = "the dataset's longest request";
  }
  if (!a.enable_chunked_prefill && a.max_num_tokens) {
    auto longest = std::max_element(ds.requests.begin(), ds.requests.end(), [](const auto& x, const auto& y) {
      return x.input_ids.size() < y.input_ids.size();
    });
    EXPECT(static_cast<int64_t>(longest->input_ids.size()) <= *a.max_num_tokens,
           "{}:{}: the prompt has {} tokens but max_num_tokens is {} (set by {}) and chunked prefill is off; raise "
           "--max_num_tokens or pass --enable_chunked_context",
           ds.path, longest->line, longest->input_ids.size(), *a.max_num_tokens,
           c.origins.count("max_num_tokens") ? c.origins.at("max_num_tokens") : "default");
  }
}

}  // namespace dsv3
