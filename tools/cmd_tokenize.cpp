// cmd_tokenize.cpp: `dsv3 tokenize` — JSON-lines text in, one JSON list of ids per line out; --chat renders and
// encodes a messages list; --bench measures encode throughput (MB/s) on a JSON-lines file (tools).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common/json_lines.h"
#include "dsv3/base/error.h"
#include "dsv3/base/thread_pool.h"
#include "dsv3/tokenizer/chat_template.h"
#include "dsv3/tokenizer/tokenizer.h"

namespace dsv3::tools {
namespace {

std::string ids_json(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(ids[i]);
  }
  return s + "]";
}

// Reads JSON-lines of strings; empty lines are skipped.
std::vector<std::string> read_text_lines(std::istream& in, const std::string& name) {
  std::vector<std::string> texts;
  for_each_json_line(in, name, [&](const nlohmann::json& j, int64_t n) {
    EXPECT(j.is_string(), "{}:{}: expected a JSON string", name, n);
    texts.push_back(j.get<std::string>());
  });
  return texts;
}

int run_bench(const Tokenizer& tok, const std::string& path, int n_threads, bool add_special) {
  std::ifstream f(path, std::ios::binary);
  EXPECT(f.good(), "cannot open {}", path);
  const std::vector<std::string> docs = read_text_lines(f, path);
  EXPECT(!docs.empty(), "{}: no documents", path);
  size_t bytes = 0;
  for (const auto& d : docs) bytes += d.size();
  ThreadPool pool(std::max(1, n_threads));
  std::vector<size_t> n_ids(docs.size());
  auto pass = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(static_cast<int64_t>(docs.size()), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) n_ids[i] = tok.encode(docs[i], add_special).size();
    });
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const double cold = pass();  // empty word caches
  double best = cold;
  for (int r = 0; r < 3; ++r) best = std::min(best, pass());
  size_t tokens = 0;
  for (size_t n : n_ids) tokens += n;
  std::printf("{\"file\": %s, \"documents\": %zu, \"bytes\": %zu, \"tokens\": %zu, \"threads\": %d, "
              "\"cold_s\": %.4f, \"best_s\": %.4f, \"cold_mb_per_s\": %.2f, \"mb_per_s\": %.2f}\n",
              nlohmann::json(path).dump().c_str(), docs.size(), bytes, tokens, pool.size(), cold, best,
              bytes / 1e6 / cold, bytes / 1e6 / best);
  return 0;
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  CLI::App app{"Encode JSON-lines text (one JSON string per line) into one JSON list of ids per line", "dsv3 tokenize"};
  std::string tokenizer_dir, input, chat, chat_template, bench;
  bool add_special = false, add_generation_prompt = true, thinking = false, render_only = false;
  int threads = 1;
  app.add_option("--tokenizer,--tokenizer_dir,--tokenizer-dir", tokenizer_dir,
                 "folder with tokenizer.json (+ tokenizer_config.json)")->required();
  app.add_flag("--add_special_tokens,--add-special-tokens", add_special, "add BOS/EOS as the tokenizer config says");
  app.add_option("--input", input, "JSON-lines input file (default: stdin)");
  app.add_option("--chat", chat, "render and encode an OpenAI-style messages list (JSON file)");
  app.add_option("--chat_template,--chat-template", chat_template,
                 "deepseek-v3 | v3-0324 | r1 | v3.1 (default: recognized from tokenizer_config.json)");
  app.add_option("--add_generation_prompt,--add-generation-prompt", add_generation_prompt,
                 "with --chat: end with the assistant prompt")->capture_default_str();
  app.add_flag("--thinking", thinking, "with --chat: V3.1 thinking mode");
  app.add_flag("--render_only,--render-only", render_only, "with --chat: print the prompt text (a JSON string)");
  app.add_option("--bench", bench, "measure encode throughput on a JSON-lines file");
  app.add_option("--threads", threads, "threads for --bench")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto tok = Tokenizer::load(tokenizer_dir);
  if (!bench.empty()) return run_bench(*tok, bench, threads, add_special);
  if (!chat.empty()) {
    std::ifstream f(chat, std::ios::binary);
    EXPECT(f.good(), "cannot open {}", chat);
    std::stringstream ss;
    ss << f.rdbuf();
    const auto messages = parse_chat_messages(ss.str());
    const ChatTemplate tmpl =
        chat_template.empty() ? ChatTemplate::from_tokenizer_dir(tokenizer_dir) : ChatTemplate::from_name(chat_template);
    const std::string prompt = tmpl.render(messages, add_generation_prompt, thinking);
    if (render_only) {
      std::printf("%s\n", nlohmann::json(prompt).dump().c_str());
    } else {
      // The template writes BOS itself, so no special tokens are added (as apply_chat_template).
      std::printf("%s\n", ids_json(tok->encode(prompt, false)).c_str());
    }
    return 0;
  }
  std::vector<std::string> texts;
  if (input.empty()) {
    texts = read_text_lines(std::cin, "<stdin>");
  } else {
    std::ifstream f(input, std::ios::binary);
    EXPECT(f.good(), "cannot open {}", input);
    texts = read_text_lines(f, input);
  }
  for (const auto& ids : tok->encode_batch(texts, add_special)) std::printf("%s\n", ids_json(ids).c_str());
  return 0;
}

}  // namespace dsv3::tools
