// micro_model.h: the engine tests' checkpoints — a "micro" preset model (no tokenizer: token ids only) and the tiny
// preset with the DeepSeek-V3 tokenizer, written once per test binary into the test temp dir — and their common
// EngineConfig (tests/unit/engine).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "dsv3/engine/engine_config.h"
#include "dsv3/io/tiny_model.h"

namespace dsv3 {

// Writes the tiny_model_preset(preset) model with options o into TempDir()/name (replacing what is there) and
// returns the folder.
inline std::string write_preset_model(const std::string& name, const std::string& preset, TinyModelOptions o) {
  const std::string d = ::testing::TempDir() + "/" + name;
  std::filesystem::remove_all(d);
  o.out_dir = d;
  write_tiny_model(tiny_model_preset(preset), o);
  return d;
}

// Writes the micro model with `seed` into TempDir()/name and returns the folder.
inline std::string write_micro_model(const std::string& name, uint64_t seed) {
  TinyModelOptions o;
  o.seed = seed;
  return write_preset_model(name, "micro", o);
}

// Writes the tiny preset (real vocabulary) with the DeepSeek-V3 tokenizer into TempDir()/name and returns the folder;
// "" when scripts/setup.sh has not fetched the tokenizer. Callers keep the result in a function-local static.
inline std::string write_tiny_with_tokenizer(const std::string& name) {
  const std::string tok = std::string(DSV3_SOURCE_DIR) + "/models/tokenizers/deepseek-v3";
  if (!std::filesystem::exists(tok + "/tokenizer.json")) return "";
  TinyModelOptions o;
  o.tokenizer_dir = tok;
  return write_preset_model(name, "tiny", o);
}

// The engine tests' configuration: integrity checks every step, a 64-block KV budget, max_seq_len 1024.
inline EngineConfig engine_test_config(const std::string& dir) {
  EngineConfig c;
  c.model_dir = dir;
  c.check_integrity = true;
  c.kv_max_tokens = 64 * 64;
  c.max_seq_len = 1024;
  return c;
}

}  // namespace dsv3
