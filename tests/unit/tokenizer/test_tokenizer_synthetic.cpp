// test_tokenizer_synthetic.cpp: tokenizer.json features beyond DeepSeek-V3, on tiny tokenizers the test writes
// (tests/unit/tokenizer). Expected ids are worked out by hand: the vocabulary maps byte b to id b, extra tokens
// follow from 256, so 'a' is 97. Covers merge forms and priorities (both merge paths), every Split behavior, added
// token options, post-processors, ignore_merges, clean-up of spaces, NFC and the load-time errors.
#include <filesystem>
#include <fstream>

#include "dsv3/base/error.h"
#include "dsv3/tokenizer/tokenizer.h"
#include "dsv3/tokenizer/tokenizer_impl.h"
#include "dsv3/tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace dsv3 {
namespace {

using Ids = std::vector<int32_t>;
using nlohmann::json;

// GPT-2's bytes_to_unicode, written out here independently of the library.
std::string byte_char(int b) {
  const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  uint32_t cp = static_cast<uint32_t>(b);
  if (!printable) {
    uint32_t n = 0;
    for (int x = 0; x < b; ++x)
      if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) ++n;
    cp = 256 + n;
  }
  std::string s;
  detail::utf8_append(s, cp);
  return s;
}

std::string bl(std::string_view raw) {  // raw bytes -> byte-level string
  std::string s;
  for (char c : raw) s += byte_char(static_cast<uint8_t>(c));
  return s;
}

struct Spec {
  std::vector<std::string> extra;  // raw-byte tokens from id 256
  json merges = json::array();     // raw-byte pairs, written as "a b" unless array_merges
  bool array_merges = false;
  json pre_tokenizer = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  json normalizer = nullptr;
  json post_processor = nullptr;
  json added = json::array();
  json model_extra = json::object();
  json decoder = {{"type", "ByteLevel"}};
  json config;  // tokenizer_config.json; null = none
};

std::string write_tokenizer(const Spec& s, const std::string& name) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  for (size_t i = 0; i < s.extra.size(); ++i) vocab[bl(s.extra[i])] = 256 + static_cast<int>(i);
  json merges = json::array();
  for (const auto& m : s.merges) {
    const std::string a = bl(m[0].get<std::string>()), b = bl(m[1].get<std::string>());
    merges.push_back(s.array_merges ? json::array({a, b}) : json(a + " " + b));
  }
  json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}};
  for (auto it = s.model_extra.begin(); it != s.model_extra.end(); ++it) model[it.key()] = it.value();
  const json tj = {{"version", "1.0"}, {"added_tokens", s.added}, {"normalizer", s.normalizer},
                   {"pre_tokenizer", s.pre_tokenizer}, {"post_processor", s.post_processor},
                   {"decoder", s.decoder}, {"model", model}};
  const auto dir = std::filesystem::temp_directory_path() / ("dsv3_tok_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tj.dump();
  std::filesystem::remove(dir / "tokenizer_config.json");
  if (!s.config.is_null()) std::ofstream(dir / "tokenizer_config.json") << s.config.dump();
  return dir.string();
}

json added_token(const std::string& content, int id, bool special, json opts = json::object()) {
  json t = {{"id", id}, {"content", content}, {"special", special}, {"single_word", false}, {"lstrip", false},
            {"rstrip", false}, {"normalized", !special}};
  for (auto it = opts.begin(); it != opts.end(); ++it) t[it.key()] = it.value();
  return t;
}

TEST(TokenizerSynthetic, MergeFormsAndPriorities) {
  Spec s;
  s.extra = {"he", "ll", "hell", "hello", "lo"};  // 256..260
  s.merges = json::array({{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}});
  for (bool array_form : {false, true}) {
    s.array_merges = array_form;
    auto tok = Tokenizer::load(write_tokenizer(s, "merges"));
    EXPECT_EQ(tok->encode("hello"), Ids{259}) << array_form;
    EXPECT_EQ(tok->encode("lll"), (Ids{257, 108})) << "equal ranks merge leftmost first";
    EXPECT_EQ(tok->decode({259, 257}), "helloll");
    EXPECT_EQ(tok->vocab_size(), 261);
  }
  // Rank, not position, decides: (l,o) ranked before (l,l) turns "llo" into l + lo, and the other way round.
  s.merges = json::array({{"l", "o"}, {"l", "l"}});
  EXPECT_EQ(Tokenizer::load(write_tokenizer(s, "rank1"))->encode("llo"), (Ids{108, 260}));
  s.merges = json::array({{"l", "l"}, {"l", "o"}});
  EXPECT_EQ(Tokenizer::load(write_tokenizer(s, "rank2"))->encode("llo"), (Ids{257, 111}));
}

TEST(TokenizerSynthetic, ShortAndLongPiecesMergeAlike) {
  // Pieces up to 128 bytes merge by scanning, longer ones with a heap; l^n under (l l), (ll ll) gives
  // floor(n/4) x llll, then ll if n mod 4 >= 2, then l if n is odd.
  Spec s;
  s.extra = {"ll", "llll"};  // 256, 257
  s.merges = json::array({{"l", "l"}, {"ll", "ll"}});
  auto tok = Tokenizer::load(write_tokenizer(s, "long"));
  for (int n : {1, 2, 3, 6, 126, 127, 128, 129, 130, 131, 301, 1000}) {
    Ids expect(static_cast<size_t>(n / 4), 257);
    if (n % 4 >= 2) expect.push_back(256);
    if (n % 2) expect.push_back('l');
    EXPECT_EQ(tok->encode(std::string(static_cast<size_t>(n), 'l')), expect) << "n = " << n;
  }
}

std::vector<std::string> split_with(const json& pre_tokenizer, const std::string& text) {
  const detail::PreTokenizer pt = detail::PreTokenizer::from_json(pre_tokenizer);
  std::vector<detail::Span> spans, scratch;
  pt.split(text, spans, scratch);
  std::vector<std::string> out;
  for (const auto& sp : spans) out.push_back(text.substr(sp.begin, sp.end - sp.begin));
  return out;
}

json split(const std::string& behavior, bool invert, json pattern = {{"String", "-"}}) {
  return {{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}};
}

TEST(TokenizerSynthetic, SplitBehaviors) {
  using V = std::vector<std::string>;
  const std::string t = "a-b--c-";
  EXPECT_EQ(split_with(split("Isolated", false), t), (V{"a", "-", "b", "-", "-", "c", "-"}));
  EXPECT_EQ(split_with(split("Removed", false), t), (V{"a", "b", "c"}));
  EXPECT_EQ(split_with(split("MergedWithPrevious", false), t), (V{"a-", "b-", "-", "c-"}));
  EXPECT_EQ(split_with(split("MergedWithNext", false), t), (V{"a", "-b", "-", "-c", "-"}));
  EXPECT_EQ(split_with(split("Contiguous", false), t), (V{"a", "-", "b", "--", "c", "-"}));
  EXPECT_EQ(split_with(split("Removed", true), t), (V{"-", "-", "-", "-"}));  // invert: the gaps are removed
  // Regex patterns: lookahead as in the GPT-4 style rule, and a sequence applying to every piece.
  EXPECT_EQ(split_with(split("Isolated", false, {{"Regex", R"(\s+(?!\S)|\s+)"}}), "a   b"), (V{"a", "  ", " ", "b"}));
  const json seq = {{"type", "Sequence"},
                    {"pretokenizers", json::array({split("Isolated", false, {{"Regex", R"(\p{N}{1,3})"}}),
                                                   split("Isolated", false, {{"Regex", " "}})})}};
  EXPECT_EQ(split_with(seq, "ab 12345 c"), (V{"ab", " ", "123", "45", " ", "c"}));
  // Oniguruma's \s includes U+0085 (NEL); PCRE2's does not, so the pattern is widened.
  EXPECT_EQ(split_with(split("Isolated", false, {{"Regex", R"(\s+)"}}), "a\u0085b"), (V{"a", "\u0085", "b"}));
  EXPECT_EQ(split_with(split("Isolated", false, {{"Regex", R"([^\s]+)"}}), "a\u0085b"), (V{"a", "\u0085", "b"}));
  // ByteLevel with use_regex: the GPT-2 rule.
  EXPECT_EQ(split_with({{"type", "ByteLevel"}, {"add_prefix_space", false}}, "I'm  fine!!"),
            (V{"I", "'m", " ", " fine", "!!"}));
}

TEST(TokenizerSynthetic, AddedTokenOptions) {
  Spec s;
  s.added = json::array({added_token("[L]", 300, false, {{"lstrip", true}}),
                         added_token("[R]", 301, false, {{"rstrip", true}}),
                         added_token("tok", 302, false, {{"single_word", true}}),
                         added_token("<long>", 303, true), added_token("<lo", 304, true),
                         added_token("[LR]", 305, false, {{"lstrip", true}, {"rstrip", true}})});
  auto tok = Tokenizer::load(write_tokenizer(s, "added"));
  EXPECT_EQ(tok->encode("x  [L]y"), (Ids{'x', 300, 'y'}));  // lstrip takes the spaces on its left
  EXPECT_EQ(tok->encode("x[R] \t y"), (Ids{'x', 301, 'y'}));  // rstrip the whitespace on its right
  EXPECT_EQ(tok->encode("x \u3000[LR]\u00a0 y"), (Ids{'x', 305, 'y'}));  // Unicode whitespace both sides
  EXPECT_EQ(tok->encode("a tok b"), (Ids{'a', ' ', 302, ' ', 'b'}));
  EXPECT_EQ(tok->encode("tok."), (Ids{302, '.'}));
  EXPECT_EQ(tok->encode("atok"), (Ids{'a', 't', 'o', 'k'}));  // single_word: a word character on the left
  EXPECT_EQ(tok->encode("tok_"), (Ids{'t', 'o', 'k', '_'}));  // '_' is a word character (\w)
  EXPECT_EQ(tok->encode("\u00e9tok"), (Ids{0xC3, 0xA9, 't', 'o', 'k'}));  // so is é
  EXPECT_EQ(tok->encode("<long>"), Ids{303});                // longest match wins
  EXPECT_EQ(tok->encode("<lox"), (Ids{304, 'x'}));
  EXPECT_EQ(tok->encode("<lo<long>"), (Ids{304, 303}));
  EXPECT_EQ(tok->decode({'a', 303, 304}, true), "a");  // both special
  EXPECT_EQ(tok->decode({'a', 300, 303}, true), "a[L]");
  EXPECT_TRUE(tok->is_special(303));
  EXPECT_FALSE(tok->is_special(300));
  EXPECT_EQ(tok->num_tokens(), 256 + 6);
}

TEST(TokenizerSynthetic, PostProcessorTemplateAndConfigOverride) {
  Spec s;
  s.added = json::array({added_token("<s>", 256, true), added_token("</s>", 257, true)});
  s.post_processor = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {256}}, {"tokens", {"<s>"}}}},
                          {"</s>", {{"id", "</s>"}, {"ids", {257}}, {"tokens", {"</s>"}}}}}}};
  // Llama-3 style: no add_bos_token in the config, the post-processor decides.
  s.config = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  auto tok = Tokenizer::load(write_tokenizer(s, "post"));
  EXPECT_EQ(tok->encode("a"), (Ids{256, 'a', 257}));
  EXPECT_EQ(tok->encode("a", false), Ids{'a'});
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_EQ(tok->eos_id(), 257);
  // add_bos_token / add_eos_token in tokenizer_config.json win, as in transformers' LlamaTokenizerFast.
  s.config = {{"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}}}, {"eos_token", "</s>"},
              {"add_bos_token", true}, {"add_eos_token", false}};
  EXPECT_EQ(Tokenizer::load(write_tokenizer(s, "post2"))->encode("a"), (Ids{256, 'a'}));
  s.config = {{"add_bos_token", true}};
  EXPECT_THROW(Tokenizer::load(write_tokenizer(s, "post3")), Error);  // add_bos_token without a bos_token
}

TEST(TokenizerSynthetic, IgnoreMerges) {
  Spec s;
  s.extra = {"he", "hello"};  // 256, 257; no merge builds "hello"
  s.merges = json::array({{"h", "e"}});
  EXPECT_EQ(Tokenizer::load(write_tokenizer(s, "im1"))->encode("hello"), (Ids{256, 'l', 'l', 'o'}));
  s.model_extra = {{"ignore_merges", true}};
  EXPECT_EQ(Tokenizer::load(write_tokenizer(s, "im2"))->encode("hello"), Ids{257});
}

TEST(TokenizerSynthetic, CleanUpTokenizationSpaces) {
  Spec s;
  s.config = {{"clean_up_tokenization_spaces", true}};
  auto tok = Tokenizer::load(write_tokenizer(s, "cleanup"));
  const std::string text = "Hello , world . It 's ok ? Yes ! I 'm sure they 've , we 're and do n't .";
  const Ids ids = tok->encode(text);  // one id per byte: every boundary is tried while streaming
  const std::string expect = "Hello, world. It's ok? Yes! I'm sure they've, we're and don't.";
  EXPECT_EQ(tok->decode(ids), expect);
  IncrementalDetokenizer detok(*tok, false);
  std::string streamed;
  for (int32_t id : ids) streamed += detok.push(id);
  EXPECT_EQ(streamed + detok.flush(), expect);
}

TEST(TokenizerSynthetic, NfcNormalizer) {
  Spec s;
  s.normalizer = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFC"}}})}};
  s.added = json::array({added_token("\u00e9!", 256, false)});  // normalized: matched after NFC
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = Tokenizer::load(write_tokenizer(s, "nfc"));
  } catch (const Error& e) {
    ASSERT_NE(std::string(e.what()).find("ICU"), std::string::npos) << e.what();
    GTEST_SKIP() << "built without ICU: " << e.what();
  }
  EXPECT_EQ(tok->encode("e\u0301"), (Ids{0xC3, 0xA9}));  // composed to U+00E9 before BPE
  EXPECT_EQ(tok->encode("xe\u0301!"), (Ids{'x', 256}));
}

void expect_load_error(const Spec& s, const std::string& name, const std::string& needle) {
  try {
    Tokenizer::load(write_tokenizer(s, name));
    ADD_FAILURE() << name << ": expected dsv3::Error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(TokenizerSynthetic, UnsupportedFeaturesAreLoadErrors) {
  Spec s;
  s.normalizer = {{"type", "Lowercase"}};
  expect_load_error(s, "e1", "normalizer type 'Lowercase'");
  s = Spec{};
  s.pre_tokenizer = {{"type", "Whitespace"}};
  expect_load_error(s, "e2", "pre_tokenizer type 'Whitespace'");
  s = Spec{};
  s.pre_tokenizer = {{"type", "Sequence"}, {"pretokenizers", json::array({split("Isolated", false)})}};
  expect_load_error(s, "e3", "no ByteLevel");
  s = Spec{};
  s.model_extra = {{"type", "WordPiece"}};
  expect_load_error(s, "e4", "model.type 'WordPiece'");
  s = Spec{};
  s.decoder = nullptr;
  expect_load_error(s, "e5", "decoder");
  s = Spec{};
  s.merges = json::array({{"h", "zz"}});
  expect_load_error(s, "e6", "model.merges[0]");
  s = Spec{};
  s.pre_tokenizer = {{"type", "Sequence"},
                     {"pretokenizers", json::array({split("Isolated", false, {{"Regex", "(unclosed"}}),
                                                    {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  expect_load_error(s, "e7", "cannot compile regex '(unclosed'");
  s = Spec{};
  s.model_extra = {{"byte_fallback", true}};
  expect_load_error(s, "e8", "model.byte_fallback");
  s = Spec{};
  s.post_processor = {{"type", "BertProcessing"}};
  expect_load_error(s, "e9", "post_processor type 'BertProcessing'");
}

}  // namespace
}  // namespace dsv3
