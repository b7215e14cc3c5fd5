// test_bench_options.cpp: `dsv3 bench` options (tools/common/bench_options): the recipe's command line parses to
// the expected BenchOptions and LlmArgs (CLI layer, injected defaults, then the YAML over them), dashed forms and
// aliases, latency's fixed settings, usage errors, and the dataset-derived defaults.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/bench_options.h"
#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("dsv3_test_bench_options_" + name)).string();
}

// Parses a command line given as words after "dsv3 bench".
std::optional<int> parse(std::vector<std::string> words, BenchConfig& cfg) {
  words.insert(words.begin(), "dsv3 bench");
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  return parse_bench_command_line(static_cast<int>(argv.size()), argv.data(), cfg);
}

TEST(BenchOptions, RecipeCommandLine) {
  // interfaces.md §0, the E1 README's bench command with its YAML.
  const std::string yml = temp_path("recipe.yml");
  std::ofstream(yml) << "enable_attention_dp: true\npytorch_backend_config:\n  enable_overlap_scheduler: true\n";
  BenchConfig c;
  ASSERT_FALSE(parse({"--model", "deepseek-ai/DeepSeek-V3", "--model_path", "/models/dsv3", "throughput",
                      "--backend", "pytorch", "--max_batch_size", "161", "--max_num_tokens", "1160", "--dataset",
                      "dataset.txt", "--tp", "8", "--ep", "4", "--pp", "1", "--concurrency", "1024", "--streaming",
                      "--kv_cache_free_gpu_mem_fraction", "0.95", "--extra_llm_api_options", yml},
                     c)
                   .has_value());
  const BenchOptions& o = c.options;
  EXPECT_EQ(o.mode, BenchMode::kThroughput);
  EXPECT_EQ(o.model, "deepseek-ai/DeepSeek-V3");
  EXPECT_EQ(o.checkpoint_dir(), "/models/dsv3");
  EXPECT_EQ(o.dataset, "dataset.txt");
  EXPECT_EQ(o.concurrency, 1024);
  EXPECT_TRUE(o.streaming);
  EXPECT_EQ(o.warmup, 2);
  EXPECT_EQ(o.num_requests, 0);
  EXPECT_EQ(o.eos_id, -1);

  const LlmArgs& a = c.llm_args;
  EXPECT_EQ(a.backend, EngineBackend::kAuto);
  EXPECT_EQ(a.max_batch_size, 161);
  EXPECT_EQ(a.max_num_tokens, 1160);
  EXPECT_EQ(a.tensor_parallel_size, 8);
  EXPECT_EQ(a.pipeline_parallel_size, 1);
  EXPECT_EQ(a.moe_expert_parallel_size, 4);
  EXPECT_EQ(a.kv_cache_config.free_gpu_memory_fraction, 0.95);
  EXPECT_FALSE(a.kv_cache_config.enable_block_reuse);  // trtllm-bench's default
  EXPECT_EQ(a.scheduler_config.capacity_scheduler_policy, CapacitySchedulerPolicy::kGuaranteedNoEvict);
  EXPECT_TRUE(a.enable_attention_dp);
  EXPECT_FALSE(a.disable_overlap_scheduler);
  EXPECT_FALSE(a.use_cuda_graph);  // the YAML's pytorch_backend_config replaced the injected CUDA-graph block
  EXPECT_EQ(c.warnings, (std::vector<std::string>{"Overriding pytorch_backend_config because it's specified in " + yml}));
  EXPECT_EQ(c.origins.at("tensor_parallel_size"), "--tp");

  // Until parallel runs work, the bench refuses --tp 8 by name.
  try {
    reject_unsupported(a, c.origins, EngineCapabilities{});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(set by --tp)"), std::string::npos) << e.what();
  }
  std::filesystem::remove(yml);
}

TEST(BenchOptions, InjectedDefaultsWithoutYaml) {
  BenchConfig c;
  ASSERT_FALSE(parse({"--model", "m", "throughput", "--dataset", "d", "--max_batch_size", "64"}, c).has_value());
  const LlmArgs& a = c.llm_args;
  EXPECT_TRUE(a.use_cuda_graph);
  EXPECT_TRUE(a.cuda_graph_config.enable_padding);
  EXPECT_EQ(a.cuda_graph_config.max_batch_size, 64);
  EXPECT_FALSE(a.disable_overlap_scheduler);
  EXPECT_EQ(a.kv_cache_config.free_gpu_memory_fraction, 0.90);
  EXPECT_FALSE(a.max_num_tokens.has_value());  // left to the engine's heuristic
  EXPECT_FALSE(a.enable_chunked_prefill);
  EXPECT_FALSE(a.enable_iter_perf_stats);
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_EQ(c.options.concurrency, -1);
  EXPECT_FALSE(c.options.streaming);
  // Without --max_batch_size, the graphs follow whatever batch size the engine picks.
  ASSERT_FALSE(parse({"--model", "m", "throughput", "--dataset", "d"}, c).has_value());
  EXPECT_EQ(c.llm_args.cuda_graph_config.max_batch_size, -1);
}

TEST(BenchOptions, DashedFormsAliasesAndOrder) {
  const std::string yml = temp_path("e4.yml");
  std::ofstream(yml) << "max_batch_size: 32\nkv_cache_config:\n  dtype: fp8\n";
  BenchConfig c;
  // Root options after the subcommand, dashed spellings, --config (E4 alias of --extra_llm_api_options).
  ASSERT_FALSE(parse({"throughput", "--dataset", "d.jsonl", "--max-batch-size", "4", "--kv-cache-free-gpu-mem-fraction",
                      "0.5", "--model", "m", "--config", yml, "--scheduler-policy", "max_utilization",
                      "--enable-chunked-context", "--iteration-log", "it.jsonl", "--backend", "cpu",
                      "--num-requests", "7", "--warmup", "0"},
                     c)
                   .has_value());
  EXPECT_EQ(c.options.model, "m");
  EXPECT_EQ(c.options.num_requests, 7);
  EXPECT_EQ(c.options.warmup, 0);
  EXPECT_EQ(c.llm_args.backend, EngineBackend::kCpu);
  EXPECT_EQ(c.llm_args.max_batch_size, 32);  // the YAML wins over --max-batch-size
  EXPECT_EQ(c.llm_args.scheduler_config.capacity_scheduler_policy, CapacitySchedulerPolicy::kMaxUtilization);
  EXPECT_TRUE(c.llm_args.enable_chunked_prefill);
  EXPECT_TRUE(c.llm_args.enable_iter_perf_stats);  // --iteration_log turns the iteration statistics on
  EXPECT_EQ(c.llm_args.kv_cache_config.dtype, "fp8");
  EXPECT_FALSE(c.llm_args.kv_cache_config.free_gpu_memory_fraction.has_value());  // shallow: the CLI's 0.5 is gone
  EXPECT_EQ(c.warnings.size(), 2u);  // max_batch_size and kv_cache_config
  std::filesystem::remove(yml);
}

TEST(BenchOptions, LatencyFixesBatchAndStreaming) {
  BenchConfig c;
  ASSERT_FALSE(parse({"--model", "m", "latency", "--dataset", "d", "--report_json", "r.json"}, c).has_value());
  EXPECT_EQ(c.options.mode, BenchMode::kLatency);
  EXPECT_EQ(c.options.concurrency, 1);
  EXPECT_TRUE(c.options.streaming);
  EXPECT_EQ(c.options.report_json, "r.json");
  EXPECT_EQ(c.llm_args.max_batch_size, 1);
  EXPECT_FALSE(c.llm_args.enable_chunked_prefill);
  EXPECT_TRUE(c.llm_args.use_cuda_graph);
  // Throughput-only options are not latency options.
  EXPECT_NE(parse({"--model", "m", "latency", "--dataset", "d", "--max_batch_size", "4"}, c), std::nullopt);
}

TEST(BenchOptions, UsageAndInputErrors) {
  BenchConfig c;
  EXPECT_EQ(parse({"--help"}, c), 0);
  EXPECT_EQ(parse({"throughput", "--help"}, c), 0);
  EXPECT_NE(parse({"--model", "m", "throughput"}, c).value_or(0), 0);                     // --dataset missing
  EXPECT_NE(parse({"--model", "m"}, c).value_or(0), 0);                                   // no subcommand
  EXPECT_NE(parse({"--model", "m", "throughput", "--dataset", "d", "--bogus"}, c).value_or(0), 0);
  EXPECT_NE(parse({"--model", "m", "throughput", "--dataset", "d", "--tp", "two"}, c).value_or(0), 0);

  auto error_of = [&](std::vector<std::string> words) -> std::string {
    try {
      parse(std::move(words), c);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of({"--model", "m", "throughput", "--dataset", "d", "--backend", "tensorrt"}).find("--backend"),
            std::string::npos);
  EXPECT_NE(error_of({"--model", "m", "throughput", "--dataset", "d", "--engine_dir", "e"}).find("--engine_dir"),
            std::string::npos);
  EXPECT_NE(error_of({"throughput", "--dataset", "d"}).find("--model"), std::string::npos);
  EXPECT_NE(error_of({"--model", "m", "throughput", "--dataset", "d", "--kv_cache_free_gpu_mem_fraction", "1.5"})
                .find("(0, 1]"),
            std::string::npos);
  EXPECT_NE(error_of({"--model", "m", "throughput", "--dataset", "d", "--scheduler_policy", "fcfs"})
                .find("--scheduler_policy"),
            std::string::npos);
  EXPECT_NE(error_of({"--model", "m", "throughput", "--dataset", "d", "--extra_llm_api_options", "/nonexistent.yml"})
                .find("/nonexistent.yml"),
            std::string::npos);
}

TEST(BenchOptions, DatasetDefaults) {
  BenchConfig c;
  ASSERT_FALSE(parse({"--model", "m", "throughput", "--dataset", "d", "--num_requests", "3"}, c).has_value());
  EXPECT_EQ(dataset_read_options(c).num_requests, 3);
  EXPECT_FALSE(dataset_read_options(c).max_seq_len.has_value());
  BenchDataset ds;
  ds.path = "d";
  ds.requests = {{0, {1, 2, 3}, 10, 1}, {1, std::vector<int32_t>(50, 7), 4, 2}, {2, {5}, 20, 3}};
  apply_dataset_defaults(c, ds);
  EXPECT_EQ(c.llm_args.max_seq_len, 54);  // the longest ISL+OSL: 50 + 4

  // With chunked prefill off, a token budget below the longest prompt (line 2) cannot run.
  ASSERT_FALSE(parse({"--model", "m", "throughput", "--dataset", "d", "--max_num_tokens", "40"}, c).has_value());
  try {
    apply_dataset_defaults(c, ds);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("d:2: the prompt has 50 tokens but max_num_tokens is 40 (set by "
                                         "--max_num_tokens)"),
              std::string::npos)
        << e.what();
  }
  ASSERT_FALSE(parse({"--model", "m", "throughput", "--dataset", "d", "--max_num_tokens", "40",
                      "--enable_chunked_context", "--max_seq_len", "60"},
                     c)
                   .has_value());
  EXPECT_NO_THROW(apply_dataset_defaults(c, ds));
  EXPECT_EQ(c.llm_args.max_seq_len, 60);
  EXPECT_EQ(dataset_read_options(c).max_seq_len, 60);
}

}  // namespace
}  // namespace dsv3
