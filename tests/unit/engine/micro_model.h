// micro_model.h: the engine tests' checkpoint — a "micro" preset model (no tokenizer: token ids only) written once
// per test binary into the test temp dir (tests/unit/engine).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "dsv3/io/tiny_model.h"

namespace dsv3 {

// Writes the micro model with `seed` into TempDir()/name (replacing what is there) and returns the folder.
inline std::string write_micro_model(const std::string& name, uint64_t seed) {
  const std::string d = ::testing::TempDir() + "/" + name;
  std::filesystem::remove_all(d);
  TinyModelOptions o;
  o.out_dir = d;
  o.seed = seed;
  write_tiny_model(tiny_model_preset("micro"), o);
  return d;
}

}  // namespace dsv3
