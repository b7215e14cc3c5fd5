// llm_args.cpp: the extra_llm_api_options YAML reader over LlmArgs (tools/common). Two passes over the top-level
// mapping: first every sub-config the YAML names is reset to its defaults (the shallow override of §2.2), then every
// key is applied through a handler table. Each handler marks the canonical field it sets, so two spellings of one
// setting in one file (e.g. E3 `use_cuda_graph` and E4 `cuda_graph_config: null`) are an error, not a silent pick.
#include "common/llm_args.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <functional>
#include <sstream>
#include <utility>

#include <yaml-cpp/yaml.h>

#include "dsv3/base/error.h"

namespace dsv3 {

const char* engine_backend_name(EngineBackend b) {
  switch (b) {
    case EngineBackend::kAuto: return "pytorch";
    case EngineBackend::kCpu: return "cpu";
    case EngineBackend::kCuda: return "cuda";
  }
  return "?";
}

const char* capacity_scheduler_policy_name(CapacitySchedulerPolicy p) {
  switch (p) {
    case CapacitySchedulerPolicy::kGuaranteedNoEvict: return "GUARANTEED_NO_EVICT";
    case CapacitySchedulerPolicy::kMaxUtilization: return "MAX_UTILIZATION";
    case CapacitySchedulerPolicy::kStaticBatch: return "STATIC_BATCH";
  }
  return "?";
}

std::vector<int64_t> cuda_graph_batch_sizes(const LlmArgs& args, int64_t runtime_max_batch_size) {
  if (!args.use_cuda_graph) return {};
  const CudaGraphConfig& c = args.cuda_graph_config;
  if (!c.batch_sizes.empty()) {
    std::vector<int64_t> v = c.batch_sizes;
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
  }
  const int64_t max_bs = c.max_batch_size == -1 ? runtime_max_batch_size
                         : c.max_batch_size == 0 ? 128
                                                 : c.max_batch_size;
  CHECK(max_bs >= 1, "cuda graph max batch size %ld", (long)max_bs);
  // interfaces.md §3.1: [1,2,4]+[8,16..128] with padding, 1..31+[32,64,128] without; then powers of two from 256
  // below the maximum; keep <= max; end with the maximum itself.
  std::vector<int64_t> v;
  if (c.enable_padding) {
    v = {1, 2, 4};
    for (int64_t i = 8; i <= 128; i += 8) v.push_back(i);
  } else {
    for (int64_t i = 1; i < 32; ++i) v.push_back(i);
    v.insert(v.end(), {32, 64, 128});
  }
  for (int64_t p = 256; p < max_bs; p *= 2) v.push_back(p);
  std::erase_if(v, [&](int64_t x) { return x > max_bs; });
  if (v.empty() || v.back() != max_bs) v.push_back(max_bs);
  return v;
}

namespace {

using Handler = std::function<void(const YAML::Node& value, const std::string& path)>;
using HandlerTable = std::vector<std::pair<std::string, Handler>>;

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string join_path(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

const char* kind_of(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "null";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    default: return "a scalar";
  }
}

// Typed access to YAML values with messages "<file>:<line>: <key path>: <problem>".
class YamlReader {
 public:
  YamlReader(std::string source, ArgOrigins& origins) : source_(std::move(source)), origins_(origins) {}

  int line(const YAML::Node& n) const { return n.Mark().line + 1; }

  [[noreturn]] void fail(const YAML::Node& n, const std::string& path, const std::string& what) const {
    FAIL("{}:{}: {}: {}", source_, line(n), path, what);
  }

  // Records that `path` sets the canonical field `field`; a second spelling of the same field is an error.
  // The line is the key's: a block mapping's own mark is its first child's line.
  void mark(const std::string& field, const YAML::Node& n, const std::string& path) {
    auto it = set_by_.find(field);
    if (it != set_by_.end())
      FAIL("{}:{}: {}: sets {} again (already set by `{}`); keep one spelling", source_, key_line_, path, field,
           it->second);
    set_by_[field] = path;
    origins_[field] = fmt::format("{}:{} ({})", source_, key_line_, path);
  }

  std::string scalar(const YAML::Node& n, const std::string& path, const char* expected) const {
    if (!n.IsScalar()) fail(n, path, fmt::format("expected {}, got {}", expected, kind_of(n)));
    return n.Scalar();
  }
  bool boolean(const YAML::Node& n, const std::string& path) const {
    const std::string s = scalar(n, path, "true or false");
    bool v = false;
    if (!YAML::convert<bool>::decode(n, v)) fail(n, path, fmt::format("expected true or false, got '{}'", s));
    return v;
  }
  int64_t integer(const YAML::Node& n, const std::string& path, int64_t min_value = INT64_MIN) const {
    const std::string s = scalar(n, path, "an integer");
    int64_t v = 0;
    if (!YAML::convert<int64_t>::decode(n, v)) fail(n, path, fmt::format("expected an integer, got '{}'", s));
    if (v < min_value) fail(n, path, fmt::format("must be >= {}, got {}", min_value, v));
    return v;
  }
  std::optional<int64_t> opt_integer(const YAML::Node& n, const std::string& path, int64_t min_value) const {
    if (n.IsNull()) return std::nullopt;
    return integer(n, path, min_value);
  }
  double number(const YAML::Node& n, const std::string& path) const {
    const std::string s = scalar(n, path, "a number");
    double v = 0;
    if (!YAML::convert<double>::decode(n, v)) fail(n, path, fmt::format("expected a number, got '{}'", s));
    return v;
  }
  std::string string(const YAML::Node& n, const std::string& path) const { return scalar(n, path, "a string"); }
  std::vector<int64_t> int_list(const YAML::Node& n, const std::string& path, int64_t min_value) const {
    if (n.IsNull()) return {};
    if (!n.IsSequence()) fail(n, path, fmt::format("expected a list of integers, got {}", kind_of(n)));
    std::vector<int64_t> v;
    for (size_t i = 0; i < n.size(); ++i) v.push_back(integer(n[i], fmt::format("{}[{}]", path, i), min_value));
    return v;
  }
  // One of `choices`, compared case-insensitively; returns the choice's own spelling.
  std::string one_of(const YAML::Node& n, const std::string& path, const std::vector<std::string>& choices) const {
    const std::string s = string(n, path);
    for (const auto& c : choices)
      if (upper(c) == upper(s)) return c;
    fail(n, path, fmt::format("'{}' is not one of: {}", s, fmt::join(choices, ", ")));
  }

  // Applies `table` to every key of the mapping `map`; unknown keys are errors naming their full path.
  void walk(const YAML::Node& map, const std::string& prefix, const HandlerTable& table) const {
    if (!map.IsMap()) fail(map, prefix, fmt::format("expected a mapping, got {}", kind_of(map)));
    for (auto it = map.begin(); it != map.end(); ++it) {
      const std::string key = it->first.as<std::string>();
      const std::string path = join_path(prefix, key);
      auto h = std::find_if(table.begin(), table.end(), [&](const auto& e) { return e.first == key; });
      if (h == table.end()) {
        std::vector<std::string> known;
        for (const auto& e : table) known.push_back(e.first);
        FAIL("{}:{}: unknown key `{}` (known keys{}: {})", source_, line(it->first), path,
             prefix.empty() ? " at the top level" : " in " + prefix, fmt::join(known, ", "));
      }
      key_line_ = line(it->first);
      h->second(it->second, path);
    }
  }

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  ArgOrigins& origins_;
  std::map<std::string, std::string> set_by_;  // canonical field -> YAML path that set it
  mutable int key_line_ = 0;                    // line of the key being applied (walk() sets it)
};

const std::vector<std::string> kKvDtypes = {"auto", "fp8"};
const std::vector<std::string> kMoeBackends = {"CUTLASS", "TRTLLM", "WIDEEP", "DEEPGEMM", "CUTEDSL", "VANILLA"};
const std::vector<std::string> kAttnBackends = {"TRTLLM", "VANILLA", "FLASHINFER", "FLASHINFER_STAR_ATTENTION"};
const std::vector<std::string> kDecodingTypes = {"MTP",         "Eagle",        "Medusa", "Lookahead", "NGram",
                                                 "DraftTarget", "UserProvided", "AUTO"};

// Applies one YAML document to LlmArgs; holds the scratch state for settings spread over several keys.
class Applier {
 public:
  Applier(LlmArgs& a, YamlReader& r) : a_(a), r_(r) {}

  void apply(const YAML::Node& root) {
    // Pass 1: a sub-config named in the YAML replaces the CLI-derived one wholesale (its defaults + the YAML).
    // pytorch_backend_config first: it spans fields that the E4 groups (cuda_graph_config, ...) also reset.
    if (root["pytorch_backend_config"]) reset_group("pytorch_backend_config", root["pytorch_backend_config"]);
    for (auto it = root.begin(); it != root.end(); ++it) {
      const std::string key = it->first.as<std::string>();
      if (key != "pytorch_backend_config") reset_group(key, it->second);
    }
    tc_enabled_ = a_.torch_compile_config.has_value();
    tc_ = a_.torch_compile_config.value_or(TorchCompileConfig{});
    // Pass 2: every key through its handler.
    r_.walk(root, "", top_level_table());
    if (tc_touched_) a_.torch_compile_config = tc_enabled_ ? std::optional(tc_) : std::nullopt;
    if (a_.speculative_config) {
      const SpeculativeConfig& s = *a_.speculative_config;
      EXPECT(!(s.max_draft_len && s.num_nextn_predict_layers && *s.max_draft_len != *s.num_nextn_predict_layers),
             "{}: speculative_config: max_draft_len ({}) and num_nextn_predict_layers ({}) disagree; give one",
             r_.source(), *s.max_draft_len, *s.num_nextn_predict_layers);
    }
  }

 private:
  void reset_group(const std::string& key, const YAML::Node& v) {
    if (key == "pytorch_backend_config") {
      // E1/E2: the YAML block replaces the injected one; what it does not restate falls back to PyTorchConfig's
      // defaults, which have CUDA graphs off and (as interfaces.md §2.2 states) the overlap scheduler off.
      a_.use_cuda_graph = false;
      a_.cuda_graph_config = CudaGraphConfig{};
      a_.disable_overlap_scheduler = true;
      a_.attn_backend = "TRTLLM";
      a_.moe_config = MoeConfig{};
      a_.kv_cache_config.dtype = "auto";
      a_.mixed_sampler = false;
      a_.enable_trtllm_sampler = false;
      a_.use_kv_cache = true;
      a_.enable_iter_perf_stats = a_.enable_iter_req_stats = a_.print_iter_log = false;
      a_.torch_compile_config.reset();
      a_.enable_autotuner = true;
      a_.enable_layerwise_nvtx_marker = false;
      a_.load_format = "auto";
      a_.enable_min_latency = false;
      a_.allreduce_strategy = "AUTO";
      a_.stream_interval = 1;
    } else if (key == "kv_cache_config") {
      a_.kv_cache_config = KvCacheConfig{};
    } else if (key == "cuda_graph_config") {
      a_.use_cuda_graph = !v.IsNull();  // E4: default-constructed = on, null = off
      a_.cuda_graph_config = CudaGraphConfig{};
    } else if (key == "moe_config") {
      a_.moe_config = MoeConfig{};
    } else if (key == "torch_compile_config") {
      a_.torch_compile_config = v.IsNull() ? std::nullopt : std::optional(TorchCompileConfig{});
    } else if (key == "speculative_config") {
      a_.speculative_config = v.IsNull() ? std::nullopt : std::optional(SpeculativeConfig{});
    } else if (key == "scheduler_config") {
      a_.scheduler_config = SchedulerConfig{};
    } else if (key == "attention_dp_config") {
      a_.attention_dp_config = v.IsNull() ? std::nullopt : std::optional(AttentionDpConfig{});
    }
  }

  // Shorthands for handlers that set one plain field.
  Handler set_bool(const std::string& field, bool& dst) {
    return [this, field, &dst](const YAML::Node& n, const std::string& p) {
      r_.mark(field, n, p);
      dst = r_.boolean(n, p);
    };
  }
  Handler set_int(const std::string& field, int64_t& dst, int64_t min_value) {
    return [this, field, &dst, min_value](const YAML::Node& n, const std::string& p) {
      r_.mark(field, n, p);
      dst = r_.integer(n, p, min_value);
    };
  }
  Handler set_opt_int(const std::string& field, std::optional<int64_t>& dst, int64_t min_value) {
    return [this, field, &dst, min_value](const YAML::Node& n, const std::string& p) {
      r_.mark(field, n, p);
      dst = r_.opt_integer(n, p, min_value);
    };
  }
  Handler set_choice(const std::string& field, std::string& dst, const std::vector<std::string>& choices) {
    return [this, field, &dst, &choices](const YAML::Node& n, const std::string& p) {
      r_.mark(field, n, p);
      dst = r_.one_of(n, p, choices);
    };
  }
  Handler set_tc_bool(const std::string& field, bool TorchCompileConfig::*member) {
    return [this, field, member](const YAML::Node& n, const std::string& p) {
      r_.mark("torch_compile_config." + field, n, p);
      tc_.*member = r_.boolean(n, p);
      tc_touched_ = true;
    };
  }

  // The PyTorchConfig fields: inside `pytorch_backend_config:` (E1/E2) and flattened at the top level (E3).
  HandlerTable pytorch_config_table() {
    auto overlap = [this](bool enable_spelling) {
      return [this, enable_spelling](const YAML::Node& n, const std::string& p) {
        r_.mark("disable_overlap_scheduler", n, p);
        const bool v = r_.boolean(n, p);
        a_.disable_overlap_scheduler = enable_spelling ? !v : v;
      };
    };
    return {
        {"use_cuda_graph", set_bool("use_cuda_graph", a_.use_cuda_graph)},
        {"cuda_graph_batch_sizes",
         [this](const YAML::Node& n, const std::string& p) {
           r_.mark("cuda_graph_config.batch_sizes", n, p);
           a_.cuda_graph_config.batch_sizes = r_.int_list(n, p, 1);
         }},
        {"cuda_graph_max_batch_size", set_int("cuda_graph_config.max_batch_size", a_.cuda_graph_config.max_batch_size, 0)},
        {"cuda_graph_padding_enabled", set_bool("cuda_graph_config.enable_padding", a_.cuda_graph_config.enable_padding)},
        {"enable_overlap_scheduler", overlap(true)},
        {"disable_overlap_scheduler", overlap(false)},
        {"attn_backend", set_choice("attn_backend", a_.attn_backend, kAttnBackends)},
        {"moe_backend", set_choice("moe_config.backend", a_.moe_config.backend, kMoeBackends)},
        {"moe_max_num_tokens", set_opt_int("moe_config.max_num_tokens", a_.moe_config.max_num_tokens, 1)},
        {"moe_load_balancer", load_balancer_handler()},
        {"kv_cache_dtype", set_choice("kv_cache_config.dtype", a_.kv_cache_config.dtype, kKvDtypes)},
        {"mixed_decoder", set_bool("mixed_sampler", a_.mixed_sampler)},
        {"mixed_sampler", set_bool("mixed_sampler", a_.mixed_sampler)},
        {"enable_trtllm_decoder", set_bool("enable_trtllm_sampler", a_.enable_trtllm_sampler)},
        {"enable_trtllm_sampler", set_bool("enable_trtllm_sampler", a_.enable_trtllm_sampler)},
        {"use_kv_cache", set_bool("use_kv_cache", a_.use_kv_cache)},
        {"enable_iter_perf_stats", set_bool("enable_iter_perf_stats", a_.enable_iter_perf_stats)},
        {"enable_iter_req_stats", set_bool("enable_iter_req_stats", a_.enable_iter_req_stats)},
        {"print_iter_log", set_bool("print_iter_log", a_.print_iter_log)},
        {"torch_compile_enabled",
         [this](const YAML::Node& n, const std::string& p) {
           r_.mark("torch_compile_config", n, p);
           tc_enabled_ = r_.boolean(n, p);
           tc_touched_ = true;
         }},
        {"torch_compile_fullgraph", set_tc_bool("enable_fullgraph", &TorchCompileConfig::enable_fullgraph)},
        {"torch_compile_inductor_enabled", set_tc_bool("enable_inductor", &TorchCompileConfig::enable_inductor)},
        {"torch_compile_piecewise_cuda_graph",
         set_tc_bool("enable_piecewise_cuda_graph", &TorchCompileConfig::enable_piecewise_cuda_graph)},
        {"torch_compile_enable_userbuffers",
         set_tc_bool("enable_userbuffers", &TorchCompileConfig::enable_userbuffers)},
        {"autotuner_enabled", set_bool("enable_autotuner", a_.enable_autotuner)},
        {"enable_layerwise_nvtx_marker", set_bool("enable_layerwise_nvtx_marker", a_.enable_layerwise_nvtx_marker)},
        {"load_format", set_choice("load_format", a_.load_format, kLoadFormats)},
        {"enable_min_latency", set_bool("enable_min_latency", a_.enable_min_latency)},
        {"allreduce_strategy",
         [this](const YAML::Node& n, const std::string& p) {
           r_.mark("allreduce_strategy", n, p);
           a_.allreduce_strategy = upper(r_.string(n, p));
         }},
        {"stream_interval", set_int("stream_interval", a_.stream_interval, 1)},
    };
  }

  Handler load_balancer_handler() {
    return [this](const YAML::Node& n, const std::string& p) {
      r_.mark("moe_config.load_balancer", n, p);
      if (n.IsNull()) {
        a_.moe_config.load_balancer.clear();
      } else if (n.IsScalar()) {
        a_.moe_config.load_balancer = n.Scalar();  // a path to an EPLB YAML file
      } else if (n.IsMap()) {
        YAML::Emitter e;
        e << n;
        a_.moe_config.load_balancer = e.c_str();
      } else {
        r_.fail(n, p, "expected a file path or a mapping, got a list");
      }
    };
  }

  HandlerTable kv_cache_table() {
    KvCacheConfig& k = a_.kv_cache_config;
    return {
        {"free_gpu_memory_fraction",
         [this, &k](const YAML::Node& n, const std::string& p) {
           r_.mark("kv_cache_config.free_gpu_memory_fraction", n, p);
           if (n.IsNull()) return k.free_gpu_memory_fraction.reset();
           const double f = r_.number(n, p);
           if (!(f > 0.0 && f <= 1.0)) r_.fail(n, p, fmt::format("must be in (0, 1], got {}", f));
           k.free_gpu_memory_fraction = f;
         }},
        {"max_tokens", set_opt_int("kv_cache_config.max_tokens", k.max_tokens, 1)},
        {"enable_block_reuse", set_bool("kv_cache_config.enable_block_reuse", k.enable_block_reuse)},
        {"dtype", set_choice("kv_cache_config.dtype", k.dtype, kKvDtypes)},
        {"max_attention_window",
         [this, &k](const YAML::Node& n, const std::string& p) {
           r_.mark("kv_cache_config.max_attention_window", n, p);
           k.max_attention_window = r_.int_list(n, p, 1);
         }},
        {"sink_token_length", set_opt_int("kv_cache_config.sink_token_length", k.sink_token_length, 0)},
        {"host_cache_size", set_opt_int("kv_cache_config.host_cache_size", k.host_cache_size, 0)},
        {"onboard_blocks", set_bool("kv_cache_config.onboard_blocks", k.onboard_blocks)},
        {"cross_kv_cache_fraction",
         [this, &k](const YAML::Node& n, const std::string& p) {
           r_.mark("kv_cache_config.cross_kv_cache_fraction", n, p);
           k.cross_kv_cache_fraction = n.IsNull() ? std::nullopt : std::optional(r_.number(n, p));
         }},
        {"secondary_offload_min_priority",
         set_opt_int("kv_cache_config.secondary_offload_min_priority", k.secondary_offload_min_priority, INT64_MIN)},
        {"event_buffer_max_size", set_int("kv_cache_config.event_buffer_max_size", k.event_buffer_max_size, 0)},
        {"enable_partial_reuse", set_bool("kv_cache_config.enable_partial_reuse", k.enable_partial_reuse)},
        {"copy_on_partial_reuse", set_bool("kv_cache_config.copy_on_partial_reuse", k.copy_on_partial_reuse)},
        {"use_uvm", set_bool("kv_cache_config.use_uvm", k.use_uvm)},
    };
  }

  HandlerTable scheduler_table() {
    SchedulerConfig& s = a_.scheduler_config;
    return {
        {"capacity_scheduler_policy",
         [this, &s](const YAML::Node& n, const std::string& p) {
           r_.mark("scheduler_config.capacity_scheduler_policy", n, p);
           const std::string v = r_.one_of(n, p, {"GUARANTEED_NO_EVICT", "MAX_UTILIZATION", "STATIC_BATCH"});
           s.capacity_scheduler_policy = v == "MAX_UTILIZATION" ? CapacitySchedulerPolicy::kMaxUtilization
                                         : v == "STATIC_BATCH"  ? CapacitySchedulerPolicy::kStaticBatch
                                                                : CapacitySchedulerPolicy::kGuaranteedNoEvict;
         }},
        {"context_chunking_policy",
         set_choice("scheduler_config.context_chunking_policy", s.context_chunking_policy, kChunkingPolicies)},
        {"dynamic_batch_config",
         [this, &s](const YAML::Node& n, const std::string& p) {
           r_.mark("scheduler_config.dynamic_batch_config", n, p);
           if (n.IsNull()) return s.dynamic_batch_config.reset();
           s.dynamic_batch_config = DynamicBatchConfig{};
           DynamicBatchConfig& d = *s.dynamic_batch_config;
           r_.walk(n, p,
                   {{"enable_batch_size_tuning", set_bool(p + ".enable_batch_size_tuning", d.enable_batch_size_tuning)},
                    {"enable_max_num_tokens_tuning",
                     set_bool(p + ".enable_max_num_tokens_tuning", d.enable_max_num_tokens_tuning)},
                    {"dynamic_batch_moving_average_window",
                     set_int(p + ".dynamic_batch_moving_average_window", d.dynamic_batch_moving_average_window, 1)}});
         }},
    };
  }

  HandlerTable cuda_graph_table() {
    CudaGraphConfig& c = a_.cuda_graph_config;
    auto padding = set_bool("cuda_graph_config.enable_padding", c.enable_padding);
    return {
        {"batch_sizes",
         [this, &c](const YAML::Node& n, const std::string& p) {
           r_.mark("cuda_graph_config.batch_sizes", n, p);
           c.batch_sizes = r_.int_list(n, p, 1);
         }},
        {"max_batch_size", set_int("cuda_graph_config.max_batch_size", c.max_batch_size, 0)},
        {"enable_padding", padding},
        {"padding_enabled", padding},
    };
  }

  HandlerTable torch_compile_table() {
    return {
        {"enable_fullgraph", set_tc_bool("enable_fullgraph", &TorchCompileConfig::enable_fullgraph)},
        {"torch_compile_fullgraph", set_tc_bool("enable_fullgraph", &TorchCompileConfig::enable_fullgraph)},
        {"enable_inductor", set_tc_bool("enable_inductor", &TorchCompileConfig::enable_inductor)},
        {"torch_compile_inductor_enabled", set_tc_bool("enable_inductor", &TorchCompileConfig::enable_inductor)},
        {"enable_piecewise_cuda_graph",
         set_tc_bool("enable_piecewise_cuda_graph", &TorchCompileConfig::enable_piecewise_cuda_graph)},
        {"torch_compile_piecewise_cuda_graph",
         set_tc_bool("enable_piecewise_cuda_graph", &TorchCompileConfig::enable_piecewise_cuda_graph)},
        {"enable_userbuffers", set_tc_bool("enable_userbuffers", &TorchCompileConfig::enable_userbuffers)},
        {"torch_compile_enable_userbuffers",
         set_tc_bool("enable_userbuffers", &TorchCompileConfig::enable_userbuffers)},
        {"max_num_streams",
         [this](const YAML::Node& n, const std::string& p) {
           r_.mark("torch_compile_config.max_num_streams", n, p);
           tc_.max_num_streams = r_.integer(n, p, 1);
           tc_touched_ = true;
         }},
    };
  }

  HandlerTable speculative_table(SpeculativeConfig& s) {
    return {
        {"decoding_type",
         [this, &s](const YAML::Node& n, const std::string& p) {
           r_.mark("speculative_config.decoding_type", n, p);
           s.decoding_type = r_.one_of(n, p, kDecodingTypes);
         }},
        {"num_nextn_predict_layers",
         set_opt_int("speculative_config.num_nextn_predict_layers", s.num_nextn_predict_layers, 1)},
        {"max_draft_len", set_opt_int("speculative_config.max_draft_len", s.max_draft_len, 0)},
        {"use_relaxed_acceptance_for_thinking",
         set_bool("speculative_config.use_relaxed_acceptance_for_thinking", s.use_relaxed_acceptance_for_thinking)},
        {"relaxed_topk", set_int("speculative_config.relaxed_topk", s.relaxed_topk, 1)},
        {"relaxed_delta",
         [this, &s](const YAML::Node& n, const std::string& p) {
           r_.mark("speculative_config.relaxed_delta", n, p);
           s.relaxed_delta = r_.number(n, p);
         }},
        {"use_mtp_vanilla", set_bool("speculative_config.use_mtp_vanilla", s.use_mtp_vanilla)},
        {"speculative_model_dir",
         [this, &s](const YAML::Node& n, const std::string& p) {
           r_.mark("speculative_config.speculative_model_dir", n, p);
           s.speculative_model_dir = r_.string(n, p);
         }},
    };
  }

  HandlerTable top_level_table() {
    HandlerTable t = {
        {"backend",
         [this](const YAML::Node& n, const std::string& p) {
           r_.mark("backend", n, p);
           const std::string v = r_.string(n, p);
           if (v == "pytorch") a_.backend = EngineBackend::kAuto;
           else if (v == "cpu") a_.backend = EngineBackend::kCpu;
           else if (v == "cuda") a_.backend = EngineBackend::kCuda;
           else r_.fail(n, p, fmt::format("'{}' is not one of: pytorch, cpu, cuda (dsv3 has no TensorRT or "
                                          "autodeploy backend)", v));
         }},
        {"numerics", set_choice("numerics", a_.numerics, kNumerics)},
        {"dtype",
         [this](const YAML::Node& n, const std::string& p) {
           r_.mark("dtype", n, p);
           a_.dtype = r_.one_of(n, p, {"auto", "bfloat16", "float16", "float32"});
         }},
        {"trust_remote_code", set_bool("trust_remote_code", a_.trust_remote_code)},
        {"skip_tokenizer_init", set_bool("skip_tokenizer_init", a_.skip_tokenizer_init)},
        {"max_batch_size", set_opt_int("max_batch_size", a_.max_batch_size, 1)},
        {"max_num_tokens", set_opt_int("max_num_tokens", a_.max_num_tokens, 1)},
        {"max_seq_len", set_opt_int("max_seq_len", a_.max_seq_len, 1)},
        {"max_input_len", set_opt_int("max_input_len", a_.max_input_len, 1)},
        {"max_beam_width", set_int("max_beam_width", a_.max_beam_width, 1)},
        {"tensor_parallel_size", set_int("tensor_parallel_size", a_.tensor_parallel_size, 1)},
        {"pipeline_parallel_size", set_int("pipeline_parallel_size", a_.pipeline_parallel_size, 1)},
        {"moe_expert_parallel_size", set_opt_int("moe_expert_parallel_size", a_.moe_expert_parallel_size, 1)},
        {"moe_tensor_parallel_size", set_opt_int("moe_tensor_parallel_size", a_.moe_tensor_parallel_size, 1)},
        {"moe_cluster_parallel_size", set_opt_int("moe_cluster_parallel_size", a_.moe_cluster_parallel_size, 1)},
        {"enable_attention_dp", set_bool("enable_attention_dp", a_.enable_attention_dp)},
        {"attention_dp_config",
         [this](const YAML::Node& n, const std::string& p) {
           r_.mark("attention_dp_config", n, p);
           if (n.IsNull()) return;
           AttentionDpConfig& d = *a_.attention_dp_config;
           r_.walk(n, p,
                   {{"enable_balance", set_bool(p + ".enable_balance", d.enable_balance)},
                    {"batching_wait_iters", set_int(p + ".batching_wait_iters", d.batching_wait_iters, 0)},
                    {"timeout_iters", set_int(p + ".timeout_iters", d.timeout_iters, 0)}});
         }},
        {"kv_cache_config", [this](const YAML::Node& n, const std::string& p) { r_.walk(n, p, kv_cache_table()); }},
        {"scheduler_config", [this](const YAML::Node& n, const std::string& p) { r_.walk(n, p, scheduler_table()); }},
        {"enable_chunked_prefill", set_bool("enable_chunked_prefill", a_.enable_chunked_prefill)},
        {"cuda_graph_config",
         [this](const YAML::Node& n, const std::string& p) {
           r_.mark("use_cuda_graph", n, p);
           if (!n.IsNull()) r_.walk(n, p, cuda_graph_table());
         }},
        {"moe_config",
         [this](const YAML::Node& n, const std::string& p) {
           r_.walk(n, p,
                   {{"backend", set_choice("moe_config.backend", a_.moe_config.backend, kMoeBackends)},
                    {"max_num_tokens", set_opt_int("moe_config.max_num_tokens", a_.moe_config.max_num_tokens, 1)},
                    {"load_balancer", load_balancer_handler()}});
         }},
        {"torch_compile_config",
         [this](const YAML::Node& n, const std::string& p) {
           r_.mark("torch_compile_config", n, p);
           tc_touched_ = true;
           tc_enabled_ = !n.IsNull();
           tc_ = TorchCompileConfig{};
           if (!n.IsNull()) r_.walk(n, p, torch_compile_table());
         }},
        {"enable_autotuner", set_bool("enable_autotuner", a_.enable_autotuner)},
        {"speculative_config",
         [this](const YAML::Node& n, const std::string& p) {
           r_.mark("speculative_config", n, p);
           if (n.IsNull()) return;
           if (n.IsMap() && !n["decoding_type"])
             r_.fail(n, p, fmt::format("missing decoding_type (one of: {})", fmt::join(kDecodingTypes, ", ")));
           r_.walk(n, p, speculative_table(*a_.speculative_config));
         }},
        {"pytorch_backend_config",
         [this](const YAML::Node& n, const std::string& p) {
           if (!n.IsNull()) r_.walk(n, p, pytorch_config_table());
         }},
    };
    for (auto& e : pytorch_config_table()) t.push_back(std::move(e));  // E3: the same fields, flattened
    return t;
  }

  static inline const std::vector<std::string> kLoadFormats = {"auto", "dummy"};
  static inline const std::vector<std::string> kNumerics = {"auto", "fp8", "bf16"};
  static inline const std::vector<std::string> kChunkingPolicies = {"FIRST_COME_FIRST_SERVED", "EQUAL_PROGRESS"};

  LlmArgs& a_;
  YamlReader& r_;
  bool tc_enabled_ = false, tc_touched_ = false;
  TorchCompileConfig tc_;
};

}  // namespace

std::vector<std::string> apply_llm_api_options_yaml(LlmArgs& args, ArgOrigins& origins, const std::string& yaml_text,
                                                    const std::string& source, const std::set<std::string>& cli_keys) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    FAIL("{}:{}:{}: malformed YAML: {}", source, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  if (root.IsNull()) return {};  // an empty file overrides nothing
  EXPECT(root.IsMap(), "{}:{}: expected a mapping of LLM-API arguments at the top level, got {}", source,
         root.Mark().line + 1, kind_of(root));

  std::vector<std::string> warnings;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string key = it->first.as<std::string>();
    if (cli_keys.count(key)) warnings.push_back(fmt::format("Overriding {} because it's specified in {}", key, source));
  }
  // Work on a copy so a failed file leaves the caller's arguments untouched.
  LlmArgs merged = args;
  ArgOrigins merged_origins = origins;
  YamlReader reader(source, merged_origins);
  try {
    Applier(merged, reader).apply(root);
  } catch (const YAML::Exception& e) {
    FAIL("{}:{}: {}", source, e.mark.line + 1, e.msg);
  }
  args = std::move(merged);
  origins = std::move(merged_origins);
  return warnings;
}

std::vector<std::string> apply_llm_api_options_file(LlmArgs& args, ArgOrigins& origins, const std::string& path,
                                                    const std::set<std::string>& cli_keys) {
  std::ifstream f(path, std::ios::binary);
  EXPECT(f, "cannot read the extra_llm_api_options file '{}'", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return apply_llm_api_options_yaml(args, origins, ss.str(), path, cli_keys);
}

void reject_unsupported(const LlmArgs& a, const ArgOrigins& origins, const EngineCapabilities& caps) {
  auto from = [&](const std::string& field) {
    auto it = origins.find(field);
    return it == origins.end() ? std::string("default") : it->second;
  };
  EXPECT(a.tensor_parallel_size <= caps.max_tensor_parallel,
         "tensor_parallel_size = {} (set by {}) is not supported yet: this build runs at most {}",
         a.tensor_parallel_size, from("tensor_parallel_size"), caps.max_tensor_parallel);
  EXPECT(a.pipeline_parallel_size <= caps.max_pipeline_parallel,
         "pipeline_parallel_size = {} (set by {}) is not supported yet: this build runs at most {}",
         a.pipeline_parallel_size, from("pipeline_parallel_size"), caps.max_pipeline_parallel);
  EXPECT(a.moe_expert_parallel_size.value_or(1) <= caps.max_expert_parallel,
         "moe_expert_parallel_size = {} (set by {}) is not supported yet: this build runs at most {}",
         a.moe_expert_parallel_size.value_or(1), from("moe_expert_parallel_size"), caps.max_expert_parallel);
  EXPECT(a.moe_tensor_parallel_size.value_or(1) == 1, "moe_tensor_parallel_size = {} (set by {}) is not supported",
         a.moe_tensor_parallel_size.value_or(1), from("moe_tensor_parallel_size"));
  EXPECT(a.moe_cluster_parallel_size.value_or(1) == 1, "moe_cluster_parallel_size = {} (set by {}) is not supported",
         a.moe_cluster_parallel_size.value_or(1), from("moe_cluster_parallel_size"));
  EXPECT(!a.enable_attention_dp || caps.attention_dp,
         "enable_attention_dp (set by {}) is not supported yet by this build", from("enable_attention_dp"));
  if (a.speculative_config) {
    EXPECT(a.speculative_config->decoding_type == "MTP",
           "speculative_config.decoding_type = {} (set by {}): dsv3 implements only MTP",
           a.speculative_config->decoding_type, from("speculative_config.decoding_type"));
    EXPECT(caps.mtp, "speculative_config (MTP, set by {}) is not supported yet by this build",
           from("speculative_config"));
  }
  EXPECT(a.max_beam_width == 1 || caps.beam_search,
         "max_beam_width = {} (set by {}): beam search is not supported", a.max_beam_width, from("max_beam_width"));
}

}  // namespace dsv3
