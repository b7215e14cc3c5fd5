// tokenizer_test_util.h: shared helpers of the tokenizer tests (tests/unit/tokenizer): where the real DeepSeek-V3
// tokenizer and the test data live, and small readers.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "dsv3/tokenizer/tokenizer.h"

namespace dsv3::test {

inline std::string deepseek_tokenizer_dir() { return std::string(DSV3_SOURCE_DIR) + "/models/tokenizers/deepseek-v3"; }
inline std::string tokenizer_data_dir() { return std::string(DSV3_TEST_DATA) + "/tokenizer"; }

// The real tokenizer, loaded once per test binary; nullptr if setup.sh has not fetched it.
inline const Tokenizer* deepseek_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    if (!std::filesystem::exists(deepseek_tokenizer_dir() + "/tokenizer.json")) return std::unique_ptr<Tokenizer>();
    return Tokenizer::load(deepseek_tokenizer_dir());
  }();
  return tok.get();
}

#define DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok)                                                              \
  const ::dsv3::Tokenizer* tok = ::dsv3::test::deepseek_tokenizer();                                      \
  if (!tok) GTEST_SKIP() << "no DeepSeek-V3 tokenizer in " << ::dsv3::test::deepseek_tokenizer_dir()    \
                         << " (run `make setup` / `bash scripts/setup.sh`)"

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<std::string> read_corpus() {
  std::vector<std::string> lines;
  std::istringstream in(read_file(tokenizer_data_dir() + "/corpus.jsonl"));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line).get<std::string>());
  return lines;
}

inline nlohmann::json read_conversations() {
  return nlohmann::json::parse(read_file(tokenizer_data_dir() + "/conversations.json"));
}

}  // namespace dsv3::test
