// cmd_make_tiny_model.cpp: `dsv3 make-tiny-model` — a deterministic random DeepSeek-V3-architecture checkpoint
// in the published HF layout, from a preset (tools).
#include <filesystem>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "dsv3/base/error.h"
#include "dsv3/base/log.h"
#include "dsv3/base/timer.h"
#include "dsv3/io/tiny_model.h"

namespace dsv3::tools {

int cmd_make_tiny_model(int argc, char** argv) {
  CLI::App app{"Write a deterministic random DeepSeek-V3-architecture checkpoint (config.json, sharded safetensors "
               "with FP8 weights + scale_inv, the MTP layer)",
               "dsv3 make-tiny-model"};
  std::string out, preset = "tiny", dtype = "fp8", tokenizer;
  uint64_t seed = 0;
  bool config_only = false;
  double shard_mb = 64;
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
  CLI11_PARSE(app, argc, argv);

  EXPECT(dtype == "fp8" || dtype == "bf16", "--dtype '{}' is not supported (supported: fp8, bf16)", dtype);
  ModelConfig c = tiny_model_preset(preset);
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
