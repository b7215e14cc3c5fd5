// test_llm_args.cpp: the extra_llm_api_options YAML over LlmArgs (tools/common/llm_args): every era's spelling of
// a setting gives the same LlmArgs, TensorRT-LLM's shallow top-level override of the CLI-derived arguments, errors
// naming file, line and key path (unknown keys, bad types and values, malformed YAML, mixed eras), the CUDA-graph
// batch list of §3.1, and reject_unsupported().
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/llm_args.h"
#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

struct Applied {
  LlmArgs args;
  ArgOrigins origins;
  std::vector<std::string> warnings;
};

Applied apply(const std::string& yaml, LlmArgs base = {}, const std::set<std::string>& cli_keys = {}) {
  Applied a{std::move(base), {}, {}};
  a.warnings = apply_llm_api_options_yaml(a.args, a.origins, yaml, "extra.yml", cli_keys);
  return a;
}

// The message of the dsv3::Error that applying `yaml` throws ("" if none).
std::string error_of(const std::string& yaml, LlmArgs base = {}) {
  try {
    apply(yaml, std::move(base));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR(yaml, ...)                                                    \
  do {                                                                             \
    const std::string msg_ = error_of(yaml);                                       \
    ASSERT_FALSE(msg_.empty()) << "no error for:\n" << yaml;                       \
    for (const char* part_ : {__VA_ARGS__})                                        \
      EXPECT_NE(msg_.find(part_), std::string::npos) << "[" << part_ << "] not in: " << msg_; \
  } while (0)

TEST(LlmArgsYaml, EveryEraSpellingGivesTheSameArgs) {
  // One set of settings in the four eras of interfaces.md §3.2.
  const std::string e1 = R"(
pytorch_backend_config:
  enable_overlap_scheduler: true
  use_cuda_graph: true
  cuda_graph_batch_sizes: [1, 2, 4, 8, 64]
  cuda_graph_padding_enabled: true
  cuda_graph_max_batch_size: 64
  moe_backend: TRTLLM
  moe_max_num_tokens: 8192
  kv_cache_dtype: fp8
  attn_backend: FLASHINFER
  print_iter_log: true
  autotuner_enabled: false
  torch_compile_enabled: true
  torch_compile_inductor_enabled: true
  mixed_decoder: true
speculative_config:
  decoding_type: MTP
  num_nextn_predict_layers: 3
)";
  const std::string e2 = R"(
pytorch_backend_config:
  disable_overlap_scheduler: false
  use_cuda_graph: true
  cuda_graph_batch_sizes: [1, 2, 4, 8, 64]
  cuda_graph_padding_enabled: true
  cuda_graph_max_batch_size: 64
  moe_backend: TRTLLM
  moe_max_num_tokens: 8192
  kv_cache_dtype: fp8
  attn_backend: FLASHINFER
  print_iter_log: true
  autotuner_enabled: false
  torch_compile_enabled: true
  torch_compile_inductor_enabled: true
  mixed_sampler: true
speculative_config: {decoding_type: MTP, num_nextn_predict_layers: 3}
)";
  const std::string e3 = R"(
disable_overlap_scheduler: false
use_cuda_graph: true
cuda_graph_batch_sizes: [1, 2, 4, 8, 64]
cuda_graph_padding_enabled: true
cuda_graph_max_batch_size: 64
moe_backend: TRTLLM
moe_max_num_tokens: 8192
kv_cache_dtype: fp8
attn_backend: FLASHINFER
print_iter_log: true
autotuner_enabled: false
torch_compile_config:
  torch_compile_inductor_enabled: true
mixed_sampler: true
speculative_config: {decoding_type: MTP, num_nextn_predict_layers: 3}
)";
  const std::string e4 = R"(
disable_overlap_scheduler: false
cuda_graph_config:
  batch_sizes: [1, 2, 4, 8, 64]
  padding_enabled: true
  max_batch_size: 64
moe_config:
  backend: TRTLLM
  max_num_tokens: 8192
kv_cache_config:
  dtype: fp8
attn_backend: FLASHINFER
print_iter_log: true
enable_autotuner: false
torch_compile_config: {enable_inductor: true}
mixed_sampler: true
speculative_config: {decoding_type: MTP, max_draft_len: 3}
)";
  const LlmArgs a1 = apply(e1).args, a2 = apply(e2).args, a3 = apply(e3).args, a4 = apply(e4).args;
  EXPECT_TRUE(a1.use_cuda_graph);
  EXPECT_EQ(a1.cuda_graph_config.batch_sizes, (std::vector<int64_t>{1, 2, 4, 8, 64}));
  EXPECT_TRUE(a1.cuda_graph_config.enable_padding);
  EXPECT_EQ(a1.cuda_graph_config.max_batch_size, 64);
  EXPECT_FALSE(a1.disable_overlap_scheduler);
  EXPECT_EQ(a1.moe_config.backend, "TRTLLM");
  EXPECT_EQ(a1.moe_config.max_num_tokens, 8192);
  EXPECT_EQ(a1.kv_cache_config.dtype, "fp8");
  EXPECT_EQ(a1.attn_backend, "FLASHINFER");
  EXPECT_TRUE(a1.print_iter_log);
  EXPECT_FALSE(a1.enable_autotuner);
  ASSERT_TRUE(a1.torch_compile_config.has_value());
  EXPECT_TRUE(a1.torch_compile_config->enable_inductor);
  EXPECT_TRUE(a1.mixed_sampler);
  ASSERT_TRUE(a1.speculative_config.has_value());
  EXPECT_EQ(a1.speculative_config->draft_len(), 3);
  EXPECT_EQ(a4.speculative_config->draft_len(), 3);
  // num_nextn_predict_layers and max_draft_len are two spellings of one depth; compare the rest field by field.
  LlmArgs a4n = a4;
  a4n.speculative_config->max_draft_len.reset();
  a4n.speculative_config->num_nextn_predict_layers = 3;
  EXPECT_TRUE(a1 == a2);
  EXPECT_TRUE(a1 == a3);
  EXPECT_TRUE(a1 == a4n);
}

TEST(LlmArgsYaml, SmallerEraEquivalences) {
  // E4 cuda_graph_config: null = graphs off; {} = on with defaults; E3 use_cuda_graph the same.
  LlmArgs on;
  on.use_cuda_graph = true;
  on.cuda_graph_config.enable_padding = true;
  EXPECT_FALSE(apply("cuda_graph_config: null\n", on).args.use_cuda_graph);
  EXPECT_FALSE(apply("use_cuda_graph: false\n", on).args.use_cuda_graph);
  EXPECT_TRUE(apply("cuda_graph_config: {}\n").args == apply("use_cuda_graph: true\n").args);
  // E1 enable_overlap_scheduler: false == E2/E3/E4 disable_overlap_scheduler: true.
  EXPECT_TRUE(apply("enable_overlap_scheduler: false\n").args == apply("disable_overlap_scheduler: true\n").args);
  // E1-E3 autotuner_enabled == E4 enable_autotuner; E1 enable_trtllm_decoder == enable_trtllm_sampler.
  EXPECT_TRUE(apply("autotuner_enabled: false\n").args == apply("enable_autotuner: false\n").args);
  EXPECT_TRUE(apply("enable_trtllm_decoder: true\n").args == apply("enable_trtllm_sampler: true\n").args);
  // E3 moe_load_balancer == E4 moe_config.load_balancer (a path or an inline mapping).
  EXPECT_EQ(apply("moe_load_balancer: eplb.yml\n").args.moe_config.load_balancer, "eplb.yml");
  EXPECT_TRUE(apply("moe_load_balancer: eplb.yml\n").args == apply("moe_config: {load_balancer: eplb.yml}\n").args);
  EXPECT_NE(apply("moe_config:\n  load_balancer: {num_slots: 288}\n").args.moe_config.load_balancer.find("288"),
            std::string::npos);
  // Case of enum values does not matter; the stored spelling is the canonical one.
  EXPECT_EQ(apply("kv_cache_config: {dtype: FP8}\n").args.kv_cache_config.dtype, "fp8");
  EXPECT_EQ(apply("scheduler_config: {capacity_scheduler_policy: max_utilization}\n")
                .args.scheduler_config.capacity_scheduler_policy,
            CapacitySchedulerPolicy::kMaxUtilization);
}

// The CLI-derived arguments of the recipe's bench command (what trtllm-bench builds before the YAML).
LlmArgs recipe_cli_args() {
  LlmArgs a;
  a.max_batch_size = 161;
  a.max_num_tokens = 1160;
  a.tensor_parallel_size = 8;
  a.moe_expert_parallel_size = 4;
  a.kv_cache_config.free_gpu_memory_fraction = 0.95;
  a.kv_cache_config.enable_block_reuse = false;
  a.use_cuda_graph = true;
  a.cuda_graph_config.enable_padding = true;
  a.cuda_graph_config.max_batch_size = 161;
  return a;
}

TEST(LlmArgsYaml, TopLevelOverrideRule) {
  const std::set<std::string> cli = {"max_batch_size", "kv_cache_config", "pytorch_backend_config",
                                     "tensor_parallel_size"};
  // A top-level scalar in the YAML beats the flag, with trtllm-bench's warning.
  Applied a = apply("max_batch_size: 64\nenable_attention_dp: true\n", recipe_cli_args(), cli);
  EXPECT_EQ(a.args.max_batch_size, 64);
  EXPECT_TRUE(a.args.enable_attention_dp);
  EXPECT_EQ(a.args.max_num_tokens, 1160);  // untouched keys keep the CLI value
  EXPECT_EQ(a.warnings, (std::vector<std::string>{"Overriding max_batch_size because it's specified in extra.yml"}));

  // A sub-config replaces the CLI one wholesale: unspecified fields fall back to KvCacheConfig's defaults.
  a = apply("kv_cache_config:\n  dtype: fp8\n", recipe_cli_args(), cli);
  EXPECT_EQ(a.args.kv_cache_config.dtype, "fp8");
  EXPECT_FALSE(a.args.kv_cache_config.free_gpu_memory_fraction.has_value());  // not 0.95 any more
  EXPECT_DOUBLE_EQ(a.args.kv_cache_config.effective_free_gpu_memory_fraction(), 0.9);
  EXPECT_TRUE(a.args.kv_cache_config.enable_block_reuse);
  EXPECT_EQ(a.warnings.size(), 1u);

  // E1 recipe YAML: pytorch_backend_config replaces the injected block, so CUDA graphs fall back to off.
  a = apply("enable_attention_dp: true\npytorch_backend_config:\n  enable_overlap_scheduler: true\n",
            recipe_cli_args(), cli);
  EXPECT_FALSE(a.args.use_cuda_graph);
  EXPECT_FALSE(a.args.cuda_graph_config.enable_padding);
  EXPECT_FALSE(a.args.disable_overlap_scheduler);
  EXPECT_EQ(a.args.kv_cache_config.free_gpu_memory_fraction, 0.95);  // kv_cache_config was not in the YAML
  // ... and a block that does not restate the overlap scheduler leaves it off (PyTorchConfig's default).
  EXPECT_TRUE(apply("pytorch_backend_config: {use_cuda_graph: true}\n", recipe_cli_args()).args
                  .disable_overlap_scheduler);

  // E3 flat keys override one field each: the rest of the injected CUDA-graph settings stay.
  a = apply("cuda_graph_max_batch_size: 32\n", recipe_cli_args(), cli);
  EXPECT_TRUE(a.args.use_cuda_graph);
  EXPECT_TRUE(a.args.cuda_graph_config.enable_padding);
  EXPECT_EQ(a.args.cuda_graph_config.max_batch_size, 32);
  EXPECT_TRUE(a.warnings.empty());

  // E4 cuda_graph_config replaces the injected block: padding falls back to false.
  a = apply("cuda_graph_config:\n  max_batch_size: 32\n", recipe_cli_args(), cli);
  EXPECT_TRUE(a.args.use_cuda_graph);
  EXPECT_FALSE(a.args.cuda_graph_config.enable_padding);
  EXPECT_EQ(a.origins.at("cuda_graph_config.max_batch_size"), "extra.yml:2 (cuda_graph_config.max_batch_size)");

  // An empty file changes nothing.
  EXPECT_TRUE(apply("", recipe_cli_args()).args == recipe_cli_args());
  EXPECT_TRUE(apply("# only a comment\n", recipe_cli_args()).args == recipe_cli_args());
}

TEST(LlmArgsYaml, UnknownKeysNameTheirPathAndLine) {
  EXPECT_ERROR("max_batch_size: 8\nfoo: 1\n", "extra.yml:2", "unknown key `foo`", "max_batch_size");
  EXPECT_ERROR("kv_cache_config:\n  dtype: fp8\n  foo: 1\n", "extra.yml:3", "unknown key `kv_cache_config.foo`",
               "free_gpu_memory_fraction");
  EXPECT_ERROR("pytorch_backend_config:\n  use_cuda_graphs: true\n", "extra.yml:2",
               "`pytorch_backend_config.use_cuda_graphs`");
  EXPECT_ERROR("cuda_graph_config:\n  batch_size: [1]\n", "`cuda_graph_config.batch_size`");
  EXPECT_ERROR("speculative_config:\n  decoding_type: MTP\n  nextn: 2\n", "extra.yml:3",
               "`speculative_config.nextn`");
  EXPECT_ERROR("scheduler_config:\n  dynamic_batch_config:\n    window: 3\n",
               "`scheduler_config.dynamic_batch_config.window`");
}

TEST(LlmArgsYaml, BadTypesAndValuesNameTheKey) {
  EXPECT_ERROR("max_batch_size: abc\n", "extra.yml:1", "max_batch_size", "expected an integer, got 'abc'");
  EXPECT_ERROR("max_batch_size: 1.5\n", "max_batch_size", "expected an integer");
  EXPECT_ERROR("max_batch_size: 0\n", "max_batch_size", "must be >= 1");
  EXPECT_ERROR("kv_cache_config:\n  enable_block_reuse: maybe\n", "extra.yml:2", "kv_cache_config.enable_block_reuse",
               "true or false");
  EXPECT_ERROR("kv_cache_config: 5\n", "kv_cache_config", "expected a mapping");
  EXPECT_ERROR("kv_cache_config: {free_gpu_memory_fraction: 1.5}\n", "kv_cache_config.free_gpu_memory_fraction",
               "(0, 1]");
  EXPECT_ERROR("kv_cache_config: {dtype: int4}\n", "kv_cache_config.dtype", "'int4' is not one of: auto, fp8");
  EXPECT_ERROR("pytorch_backend_config:\n  cuda_graph_batch_sizes: [1, x, 4]\n", "extra.yml:2",
               "pytorch_backend_config.cuda_graph_batch_sizes[1]", "expected an integer");
  EXPECT_ERROR("cuda_graph_config: {batch_sizes: 8}\n", "cuda_graph_config.batch_sizes", "expected a list");
  EXPECT_ERROR("moe_config: {backend: FOO}\n", "moe_config.backend", "CUTLASS");
  EXPECT_ERROR("backend: tensorrt\n", "backend", "no TensorRT");
  EXPECT_ERROR("speculative_config: {num_nextn_predict_layers: 2}\n", "speculative_config", "missing decoding_type");
  EXPECT_ERROR("speculative_config: {decoding_type: MTP, max_draft_len: 2, num_nextn_predict_layers: 3}\n",
               "max_draft_len (2)", "num_nextn_predict_layers (3)");
  EXPECT_ERROR("use_cuda_graph: [true]\n", "use_cuda_graph", "got a list");
  EXPECT_ERROR("- max_batch_size: 3\n", "extra.yml:1", "expected a mapping");
}

TEST(LlmArgsYaml, TwoErasOfOneSettingIsAnError) {
  EXPECT_ERROR("use_cuda_graph: true\ncuda_graph_config: null\n", "extra.yml:2", "use_cuda_graph",
               "already set by `use_cuda_graph`");
  EXPECT_ERROR("kv_cache_dtype: fp8\nkv_cache_config: {dtype: auto}\n", "kv_cache_config.dtype",
               "already set by `kv_cache_dtype`");
  EXPECT_ERROR("pytorch_backend_config: {enable_overlap_scheduler: true}\ndisable_overlap_scheduler: true\n",
               "already set by `pytorch_backend_config.enable_overlap_scheduler`");
}

TEST(LlmArgsYaml, MalformedYamlNamesFileAndLine) {
  // An unclosed flow list: yaml-cpp notices it on the next line, at the ":" of the next key (line 3, column 16).
  const std::string msg = error_of("max_batch_size: 8\ncuda_graph_batch_sizes: [1, 2\nkv_cache_config: {}\n");
  EXPECT_NE(msg.find("extra.yml:3:16: malformed YAML: end of sequence flow not found"), std::string::npos) << msg;

  // A failed file leaves the arguments as they were; a missing file names its path.
  LlmArgs args = recipe_cli_args();
  ArgOrigins origins;
  EXPECT_THROW(apply_llm_api_options_yaml(args, origins, "max_batch_size: 4\nfoo: 1\n", "x.yml"), Error);
  EXPECT_TRUE(args == recipe_cli_args());
  try {
    apply_llm_api_options_file(args, origins, "/nonexistent/extra.yml");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/extra.yml"), std::string::npos);
  }
  // The file variant reads and names the file.
  const std::string path = (std::filesystem::temp_directory_path() / "dsv3_test_llm_args.yml").string();
  std::ofstream(path) << "kv_cache_config:\n  free_gpu_memory_fraction: 0.5\n  bogus: 1\n";
  try {
    apply_llm_api_options_file(args, origins, path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":3: unknown key `kv_cache_config.bogus`"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove(path);
}

TEST(CudaGraphBatchSizes, GeneratedLists) {
  LlmArgs a;
  EXPECT_TRUE(cuda_graph_batch_sizes(a, 64).empty());  // graphs off
  a.use_cuda_graph = true;
  // No padding, max 0 -> 128: 1..31, 32, 64, 128.
  std::vector<int64_t> expect;
  for (int64_t i = 1; i <= 31; ++i) expect.push_back(i);
  expect.insert(expect.end(), {32, 64, 128});
  EXPECT_EQ(cuda_graph_batch_sizes(a, 1), expect);
  // Padding, max 161 (the recipe): 1, 2, 4, 8, 16, ..., 128, then 161 itself.
  a.cuda_graph_config.enable_padding = true;
  a.cuda_graph_config.max_batch_size = 161;
  expect = {1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128, 161};
  EXPECT_EQ(cuda_graph_batch_sizes(a, 1), expect);
  // Padding, max 1024: powers of two from 256 below the max, then the max.
  a.cuda_graph_config.max_batch_size = 1024;
  expect = {1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128, 256, 512, 1024};
  EXPECT_EQ(cuda_graph_batch_sizes(a, 1), expect);
  // Max -1 follows the runtime max_batch_size; a small max cuts the list.
  a.cuda_graph_config.max_batch_size = -1;
  EXPECT_EQ(cuda_graph_batch_sizes(a, 20), (std::vector<int64_t>{1, 2, 4, 8, 16, 20}));
  EXPECT_EQ(cuda_graph_batch_sizes(a, 16), (std::vector<int64_t>{1, 2, 4, 8, 16}));
  // An explicit list wins, sorted and deduplicated.
  a.cuda_graph_config.batch_sizes = {64, 1, 8, 8};
  EXPECT_EQ(cuda_graph_batch_sizes(a, 20), (std::vector<int64_t>{1, 8, 64}));
}

TEST(RejectUnsupported, NamesTheSettingAndWhereItCameFrom) {
  EngineCapabilities caps;
  LlmArgs a;
  ArgOrigins o;
  EXPECT_NO_THROW(reject_unsupported(a, o, caps));
  a.tensor_parallel_size = 2;
  o["tensor_parallel_size"] = "--tp";
  try {
    reject_unsupported(a, o, caps);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor_parallel_size = 2 (set by --tp)"), std::string::npos) << e.what();
  }
  caps.max_tensor_parallel = 8;
  EXPECT_NO_THROW(reject_unsupported(a, o, caps));

  Applied y = apply("moe_expert_parallel_size: 4\n");
  EXPECT_THROW(reject_unsupported(y.args, y.origins, caps), Error);
  y = apply("\nspeculative_config:\n  decoding_type: MTP\n  num_nextn_predict_layers: 1\n");
  try {
    reject_unsupported(y.args, y.origins, caps);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("extra.yml:2 (speculative_config)"), std::string::npos) << e.what();
  }
  caps.mtp = true;
  EXPECT_NO_THROW(reject_unsupported(y.args, y.origins, caps));
  y = apply("speculative_config: {decoding_type: Eagle}\n");
  EXPECT_THROW(reject_unsupported(y.args, y.origins, caps), Error);
  EXPECT_THROW(reject_unsupported(apply("enable_attention_dp: true\n").args, {}, caps), Error);
}

}  // namespace
}  // namespace dsv3
