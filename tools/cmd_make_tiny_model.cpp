// cmd_make_tiny_model.cpp: `dsv3 make-tiny-model` — a deterministic random DeepSeek-V3-architecture checkpoint
// in the published HF layout, from a preset (tools).
#include <filesystem>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "dsv3/base/error.h"
#include "dsv3/base/log.h"
#include "dsv3/base/timer.h"
#include "dsv3/io/schema.h"
#include "dsv3/io/tiny_model.h"

namespace dsv3::tools {

int cmd_make_tiny_model(int argc, char** argv) {
  CLI::App app{"Write a deterministic random DeepSeek-V3-architecture checkpoint (config.json, sharded safetensors "
               "with FP8 weights + scale_inv, the MTP layer)",
               "dsv3 make-tiny-model"};
  std::string out, preset = "tiny", dtype = "fp8", tokenizer;
  uint64_t seed = 0;
  bool config_only = false, force = false;
  double shard_mb = 64;
  int64_t n_layers = 0, n_experts = 0;
  app.add_option("--out,--output", out, "output folder")->required();
  std::string presets;
  for (const auto& n : tiny_model_preset_names()) presets += (presets.empty() ? "" : ", ") + n;
  app.add_option("--preset", preset, "model preset: " + presets)->capture_default_str();
  app.add_option("--dtype", dtype, "fp8 (FP8 e4m3 + 128x128 scale_inv) or bf16")->capture_default_str();
  app.add_option("--seed", seed, "weight generator seed")->capture_default_str();
  app.add_flag("--config_only,--config-only", config_only,
               "write config.json (and tokenizer) only, for --load_format dummy");
  app.add_option("--shard_mb,--shard-mb", shard_mb, "shard size in MB")->capture_default_str();
  app.add_option("--tokenizer", tokenizer,
                 "folder with tokenizer.json + tokenizer_config.json to copy in (default: "
                 "models/tokenizers/deepseek-v3 when the vocabulary is 129280 and it exists)");
  app.add_option("--num_hidden_layers,--num-hidden-layers", n_layers,
                 "override the preset's layer count (0: keep); e.g. a smaller v3-slice for a load test")
      ->capture_default_str();
  app.add_option("--n_routed_experts,--n-routed-experts", n_experts,
                 "override the preset's routed expert count (0: keep); a multiple of n_group that leaves "
                 "topk_group groups >= num_experts_per_tok experts")
      ->capture_default_str();
  app.add_flag("--force", force, "write the tensors even when they exceed 100 GB");
  CLI11_PARSE(app, argc, argv);

  EXPECT(dtype == "fp8" || dtype == "bf16", "--dtype '{}' is not supported (supported: fp8, bf16)", dtype);
  ModelConfig c = tiny_model_preset(preset);
  if (n_layers != 0) {
    EXPECT(n_layers > 0, "--num_hidden_layers must be > 0, got {}", n_layers);
    c.num_hidden_layers = n_layers;
  }
  if (n_experts != 0) {
    EXPECT(n_experts > 0 && n_experts % c.n_group == 0 && n_experts / c.n_group * c.topk_group >= c.num_experts_per_tok,
           "--n_routed_experts {}: must be a multiple of n_group {} with topk_group {} groups holding at least "
           "num_experts_per_tok {} experts", n_experts, c.n_group, c.topk_group, c.num_experts_per_tok);
    c.n_routed_experts = n_experts;
  }
  if (!config_only && !force) {
    int64_t bytes = 0;
    for (const auto& s : checkpoint_schema(c, dtype == "fp8", true)) bytes += s.shape.numel() * dtype_size(s.dtype);
    EXPECT(bytes < 100'000'000'000, "--preset {} would write {:.1f} GB of tensors; pass --config_only (for "
           "--load_format dummy and inspect) or --force", preset, bytes / 1e9);
  }
  TinyModelOptions opt;
  opt.out_dir = out;
  opt.fp8 = dtype == "fp8";
  opt.seed = seed;
  opt.config_only = config_only;
  opt.shard_bytes = static_cast<int64_t>(shard_mb * (1 << 20));
  if (tokenizer.empty() && c.vocab_size == 129280 &&
      std::filesystem::exists("models/tokenizers/deepseek-v3/tokenizer.json"))
    tokenizer = "models/tokenizers/deepseek-v3";
  if (!tokenizer.empty())
    EXPECT(std::filesystem::exists(tokenizer + "/tokenizer.json"), "--tokenizer {}: no tokenizer.json there",
           tokenizer);
  opt.tokenizer_dir = tokenizer;
  const double t0 = now_seconds();
  const uint64_t bytes = write_tiny_model(c, opt);
  std::printf("wrote %s: preset %s, %s, %.1f MB of tensors in %.1f s%s%s\n", out.c_str(), preset.c_str(),
              dtype.c_str(), bytes / 1e6, now_seconds() - t0, tokenizer.empty() ? "" : ", tokenizer from ",
              tokenizer.c_str());
  return 0;
}

}  // namespace dsv3::tools
