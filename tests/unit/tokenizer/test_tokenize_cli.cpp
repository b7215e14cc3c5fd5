// test_tokenize_cli.cpp: `dsv3 tokenize` / `dsv3 detokenize` as black boxes (tests/unit/tokenizer): their JSON-lines
// output must equal the library's encode/decode/render on the corpus and conversations, and bad input must name
// the file and line.
#include <cstdio>
#include <cstdlib>

#include "dsv3/tokenizer/chat_template.h"
#include "tokenizer_test_util.h"

namespace dsv3 {
namespace {

struct CliRun {
  int rc;
  std::string out;
};

CliRun run(const std::string& args) {
  const char* bin = std::getenv("DSV3_BIN");
  CliRun r{-1, {}};
  if (!bin) return r;
  if (FILE* p = popen((std::string(bin) + " " + args + " 2>&1").c_str(), "r")) {
    char buf[65536];
    for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) r.out.append(buf, n);
    r.rc = pclose(p);
  }
  return r;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> v;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) v.push_back(l);
  return v;
}

std::string temp_file(const std::string& name, const std::string& content) {
  const auto path = std::filesystem::temp_directory_path() / ("dsv3_cli_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(path, std::ios::binary) << content;
  return path.string();
}

#define REQUIRE_CLI()                                                                    \
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);                                                  \
  if (!std::getenv("DSV3_BIN")) GTEST_SKIP() << "DSV3_BIN is not set (run through ctest)"

TEST(TokenizeCli, CorpusRoundTrip) {
  REQUIRE_CLI();
  const auto corpus = test::read_corpus();
  std::string input;
  for (const auto& t : corpus) input += nlohmann::json(t).dump() + "\n";
  const std::string in_path = temp_file("corpus.jsonl", input);
  const CliRun enc = run("tokenize --tokenizer '" + test::deepseek_tokenizer_dir() + "' --add_special_tokens --input '" +
                      in_path + "'");
  ASSERT_EQ(enc.rc, 0) << enc.out;
  const auto enc_lines = lines_of(enc.out);
  ASSERT_EQ(enc_lines.size(), corpus.size());
  for (size_t i = 0; i < corpus.size(); ++i)
    EXPECT_EQ(nlohmann::json::parse(enc_lines[i]).get<std::vector<int32_t>>(), tok->encode(corpus[i], true)) << i;

  const CliRun dec = run("detokenize --tokenizer '" + test::deepseek_tokenizer_dir() + "' --skip_special_tokens --input '" +
                      temp_file("ids.jsonl", enc.out) + "'");
  ASSERT_EQ(dec.rc, 0) << dec.out;
  const auto dec_lines = lines_of(dec.out);
  ASSERT_EQ(dec_lines.size(), corpus.size());
  for (size_t i = 0; i < corpus.size(); ++i) {
    // Lines made only of special tokens lose them with --skip_special_tokens.
    EXPECT_EQ(nlohmann::json::parse(dec_lines[i]).get<std::string>(), tok->decode(tok->encode(corpus[i], true), true)) << i;
  }
}

TEST(TokenizeCli, ChatRendersAndEncodes) {
  REQUIRE_CLI();
  for (const auto& conv : test::read_conversations()) {
    // Two conversations keep this test fast (each run loads the tokenizer); the templates have their own tests.
    if (conv["name"] != "tool_call_single" && conv["name"] != "think_history") continue;
    const std::string path = temp_file("chat.json", conv["messages"].dump());
    const auto messages = parse_chat_messages(conv["messages"].dump());
    for (const char* name : {"r1", "v3.1"}) {
      const CliRun ids = run("tokenize --tokenizer '" + test::deepseek_tokenizer_dir() + "' --chat '" + path +
                          "' --chat_template " + name + " --thinking");
      ASSERT_EQ(ids.rc, 0) << ids.out;
      const std::string prompt = ChatTemplate::from_name(name).render(messages, true, true);
      EXPECT_EQ(nlohmann::json::parse(ids.out).get<std::vector<int32_t>>(), tok->encode(prompt, false)) << name;
    }
    // Default: the template recognized from tokenizer_config.json (V3), text output.
    const CliRun text = run("tokenize --tokenizer '" + test::deepseek_tokenizer_dir() + "' --chat '" + path +
                         "' --render_only --add_generation_prompt false");
    ASSERT_EQ(text.rc, 0) << text.out;
    EXPECT_EQ(nlohmann::json::parse(text.out).get<std::string>(),
              ChatTemplate::from_name("deepseek-v3").render(messages, false));
  }
}

TEST(TokenizeCli, BadInputNamesFileAndLine) {
  REQUIRE_CLI();
  const std::string dir = test::deepseek_tokenizer_dir();
  CliRun r = run("tokenize --tokenizer '" + dir + "' --input '" + temp_file("bad1.jsonl", "\"ok\"\n\n{\"x\": 1}\n") + "'");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("bad1.jsonl:3: expected a JSON string"), std::string::npos) << r.out;
  r = run("detokenize --tokenizer '" + dir + "' --input '" + temp_file("bad2.jsonl", "[1, 2]\n[5, 999999]\n") + "'");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("bad2.jsonl:2: 999999 is not a token id"), std::string::npos) << r.out;
  r = run("tokenize --tokenizer /nonexistent");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("scripts/setup.sh"), std::string::npos) << r.out;
}

TEST(TokenizeCli, BenchReportsTheText) {
  REQUIRE_CLI();
  const auto corpus = test::read_corpus();
  std::string input;
  size_t bytes = 0, tokens = 0;
  for (const auto& t : corpus) {
    input += nlohmann::json(t).dump() + "\n";
    bytes += t.size();
    tokens += tok->encode(t, false).size();
  }
  const CliRun r = run("tokenize --tokenizer '" + test::deepseek_tokenizer_dir() + "' --bench '" +
                    temp_file("bench.jsonl", input) + "' --threads 2");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["bytes"].get<size_t>(), bytes);
  EXPECT_EQ(j["tokens"].get<size_t>(), tokens);
  EXPECT_EQ(j["threads"].get<int>(), 2);
  EXPECT_GT(j["mb_per_s"].get<double>(), 0.0);
}

}  // namespace
}  // namespace dsv3
