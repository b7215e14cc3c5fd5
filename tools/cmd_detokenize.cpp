// cmd_detokenize.cpp: `dsv3 detokenize` — one JSON list of ids per line in, one JSON string per line out; the
// inverse of `dsv3 tokenize` (tools).
#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common/json_lines.h"
#include "dsv3/base/error.h"
#include "dsv3/tokenizer/tokenizer.h"

namespace dsv3::tools {

int cmd_detokenize(int argc, char** argv) {
  CLI::App app{"Decode JSON-lines id lists (one JSON list per line) into one JSON string per line",
               "dsv3 detokenize"};
  std::string tokenizer_dir, input;
  bool skip_special = false;
  app.add_option("--tokenizer,--tokenizer_dir,--tokenizer-dir", tokenizer_dir,
                 "folder with tokenizer.json (+ tokenizer_config.json)")->required();
  app.add_flag("--skip_special_tokens,--skip-special-tokens", skip_special, "drop special tokens");
  app.add_option("--input", input, "JSON-lines input file (default: stdin)");
  CLI11_PARSE(app, argc, argv);

  auto tok = Tokenizer::load(tokenizer_dir);
  std::ifstream file;
  if (!input.empty()) {
    file.open(input, std::ios::binary);
    EXPECT(file.good(), "cannot open {}", input);
  }
  std::istream& in = input.empty() ? std::cin : file;
  const std::string name = input.empty() ? "<stdin>" : input;
  for_each_json_line(in, name, [&](const nlohmann::json& j, int64_t n) {
    EXPECT(j.is_array(), "{}:{}: expected a JSON list of ids", name, n);
    std::vector<int32_t> ids;
    for (const auto& v : j) {
      EXPECT(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < tok->num_tokens(),
             "{}:{}: {} is not a token id (0..{})", name, n, v.dump(), tok->num_tokens() - 1);
      ids.push_back(v.get<int32_t>());
    }
    std::printf("%s\n", nlohmann::json(tok->decode(ids, skip_special)).dump().c_str());
  });
  return 0;
}

}  // namespace dsv3::tools
