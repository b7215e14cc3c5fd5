// test_tokenizer.cpp: the DeepSeek-V3 tokenizer against model-spec.md §7.2 and property tests (tests/unit/tokenizer).
// Test vectors and the special-token table come from the spec (splintr, llama.cpp); properties: round trip of random
// Unicode, streaming deltas that concatenate to decode(), concurrent encodes equal to serial ones.
#include <random>
#include <thread>

#include "dsv3/base/error.h"
#include "dsv3/tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace dsv3 {
namespace {

using Ids = std::vector<int32_t>;

TEST(Tokenizer, SpecVectorsWithoutBos) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  EXPECT_EQ(tok->encode("Hello world", false), (Ids{19923, 2058}));
  EXPECT_EQ(tok->encode(" hello world ", false), (Ids{44388, 2058, 223}));
  EXPECT_EQ(tok->encode("你好世界", false), (Ids{30594, 3427}));
  EXPECT_EQ(tok->encode("Hello 你好 World 世界!", false), (Ids{19923, 223, 30594, 4495, 223, 3427, 3}));
  EXPECT_EQ(tok->encode("Hello 🌍 World!", false), (Ids{19923, 73369, 238, 4495, 3}));
}

TEST(Tokenizer, BosHandling) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  // add_bos_token true, add_eos_token false: encode(text) = [0] + ids (§7.2).
  EXPECT_EQ(tok->encode("Hello world"), (Ids{0, 19923, 2058}));
  EXPECT_EQ(tok->encode(""), (Ids{0}));
  EXPECT_EQ(tok->encode("", false), Ids{});
  ASSERT_TRUE(tok->bos_id().has_value());
  ASSERT_TRUE(tok->eos_id().has_value());
  EXPECT_EQ(*tok->bos_id(), 0);
  EXPECT_EQ(*tok->eos_id(), 1);
}

TEST(Tokenizer, CountsAndSpecialTokens) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  EXPECT_EQ(tok->vocab_size(), 128000);  // BPE vocabulary; ids 0..2 are in it and also added tokens
  EXPECT_EQ(tok->num_tokens(), 128815);  // §7.2 "Counts"
  const std::pair<int32_t, const char*> table[] = {
      {0, "<｜begin▁of▁sentence｜>"}, {1, "<｜end▁of▁sentence｜>"}, {2, "<｜▁pad▁｜>"},
      {128000, "<｜place▁holder▁no▁0｜>"}, {128797, "<｜place▁holder▁no▁797｜>"},
      {128800, "<｜fim▁hole｜>"}, {128801, "<｜fim▁begin｜>"}, {128802, "<｜fim▁end｜>"},
      {128803, "<｜User｜>"}, {128804, "<｜Assistant｜>"}, {128805, "<|EOT|>"},
      {128806, "<｜tool▁calls▁begin｜>"}, {128807, "<｜tool▁calls▁end｜>"}, {128808, "<｜tool▁call▁begin｜>"},
      {128809, "<｜tool▁call▁end｜>"}, {128810, "<｜tool▁outputs▁begin｜>"}, {128811, "<｜tool▁outputs▁end｜>"},
      {128812, "<｜tool▁output▁begin｜>"}, {128813, "<｜tool▁output▁end｜>"}, {128814, "<｜tool▁sep｜>"},
  };
  for (const auto& [id, s] : table) {
    EXPECT_EQ(tok->token_to_id(s), id) << s;
    EXPECT_EQ(tok->id_to_token(id), s) << id;
    // Written in text, each is one token, even without add_special_tokens.
    EXPECT_EQ(tok->encode(std::string("a") + s + "b", false), (Ids{67, id, 68})) << s;  // a = 67, b = 68
  }
  // This tokenizer.json is the V3 one: 128798/128799 are still placeholders (R1 renamed them <think>, </think>).
  EXPECT_EQ(tok->id_to_token(128798), "<｜place▁holder▁no▁798｜>");
  EXPECT_FALSE(tok->token_to_id("<think>").has_value());
  // "special" as flagged in tokenizer.json: BOS/EOS/pad, placeholders and <|EOT|>; the chat markers are not.
  for (int32_t id : {0, 1, 2, 128000, 128799, 128805}) EXPECT_TRUE(tok->is_special(id)) << id;
  for (int32_t id : {3, 19923, 128803, 128804, 128806, 128814}) EXPECT_FALSE(tok->is_special(id)) << id;
  EXPECT_FALSE(tok->is_special(-1));
  EXPECT_FALSE(tok->is_special(200000));
  EXPECT_EQ(tok->id_to_token(19923), "Hello");
  EXPECT_EQ(tok->id_to_token(2058), "Ġworld");  // the byte-level alphabet: Ġ is the space
  EXPECT_EQ(tok->id_to_token(200000), "");
}

TEST(Tokenizer, DecodeSkipsSpecialTokensAndUnknownIds) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  const Ids ids = {0, 19923, 128803, 2058, 128805, 1};
  EXPECT_EQ(tok->decode(ids), "<｜begin▁of▁sentence｜>Hello<｜User｜> world<|EOT|><｜end▁of▁sentence｜>");
  EXPECT_EQ(tok->decode(ids, true), "Hello<｜User｜> world");
  // Ids past the tokenizer (the model's padding rows 128815..129279) and negative ids are dropped, as HF does.
  EXPECT_EQ(tok->decode({19923, 128900, -5, 2058}), "Hello world");
}

TEST(Tokenizer, DecodeOfAPartialCharacterIsReplacementChar) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  // "🌍" is F0 9F 8C 8D; 73369 carries " F0 9F 8C" and 238 the last byte (see the spec vector).
  EXPECT_EQ(tok->decode({19923, 73369}), "Hello \xEF\xBF\xBD");
  EXPECT_EQ(tok->decode({238}), "\xEF\xBF\xBD");
  EXPECT_EQ(tok->decode({19923, 73369, 238}), "Hello 🌍");
}

TEST(Tokenizer, InvalidUtf8InputIsAnError) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  EXPECT_THROW(tok->encode("abc\xff"), Error);
  EXPECT_THROW(tok->encode("\xE4\xBD"), Error);  // truncated 你
  EXPECT_THROW(tok->encode("\xED\xA0\x80"), Error);  // a UTF-16 surrogate
  EXPECT_THROW(tok->encode_batch({"ok", "bad\xC0\x80"}), Error);
}

TEST(Tokenizer, MissingTokenizerSaysHowToGetIt) {
  try {
    Tokenizer::load("/nonexistent/dir");
    FAIL() << "expected dsv3::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("scripts/setup.sh"), std::string::npos) << e.what();
  }
}

// Random Unicode text drawn from blocks that exercise every pre-tokenizer branch, plus any scalar value.
std::string random_text(std::mt19937& rng) {
  static const std::pair<uint32_t, uint32_t> blocks[] = {
      {0x20, 0x7E},       {0x09, 0x0D},       {0xA0, 0x17F},      {0x300, 0x36F},     {0x400, 0x4FF},
      {0x600, 0x6FF},     {0x900, 0x97F},     {0x3040, 0x30FF},   {0x4E00, 0x9FFF},   {0xAC00, 0xD7A3},
      {0x2000, 0x206F},   {0x1F300, 0x1F6FF}, {0x1F3FB, 0x1F3FF}, {0xFE00, 0xFE0F},   {0xFF00, 0xFFEF},
      {0x0, 0x10FFFF},
  };
  std::uniform_int_distribution<int> len_dist(0, 80), block_dist(0, std::size(blocks) - 1);
  std::string s;
  const int len = len_dist(rng);
  for (int i = 0; i < len; ++i) {
    const auto [lo, hi] = blocks[block_dist(rng)];
    uint32_t cp = std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0x200D;  // surrogates are not scalar values; use a ZWJ instead
    detail::utf8_append(s, cp);
    if (i % 7 == 0 && len_dist(rng) < 10) s += std::string(static_cast<size_t>(len_dist(rng) % 5 + 1), ' ');
  }
  return s;
}

TEST(Tokenizer, RoundTripOfRandomUnicode) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  std::mt19937 rng(1234);
  for (int i = 0; i < 2000; ++i) {
    const std::string s = random_text(rng);
    const Ids ids = tok->encode(s, false);
    ASSERT_EQ(tok->decode(ids), s) << "case " << i;
    ASSERT_EQ(tok->decode(tok->encode(s, true), true), s) << "case " << i;
  }
}

TEST(Tokenizer, RoundTripOfCorpus) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  for (const std::string& s : test::read_corpus()) EXPECT_EQ(tok->decode(tok->encode(s, false)), s);
}

std::string stream(const Tokenizer& tok, const Ids& ids, bool skip) {
  IncrementalDetokenizer detok(tok, skip);
  std::string out;
  for (int32_t id : ids) {
    const std::string delta = detok.push(id);
    EXPECT_EQ(detail::utf8_find_invalid(delta), detail::kValidUtf8) << "a delta splits a UTF-8 character";
    out += delta;
  }
  return out + detok.flush();
}

TEST(Tokenizer, StreamingDeltasConcatenateToDecode) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  std::mt19937 rng(99);
  for (int i = 0; i < 500; ++i) {
    const Ids ids = tok->encode(random_text(rng), true);
    ASSERT_EQ(stream(*tok, ids, false), tok->decode(ids)) << "case " << i;
    ASSERT_EQ(stream(*tok, ids, true), tok->decode(ids, true)) << "case " << i;
  }
  // Arbitrary id sequences: invalid byte sequences, truncated characters at the end, special tokens in between.
  std::uniform_int_distribution<int32_t> any_id(0, static_cast<int32_t>(tok->num_tokens()) - 1);
  std::uniform_int_distribution<int> len(0, 40);
  for (int i = 0; i < 500; ++i) {
    Ids ids(static_cast<size_t>(len(rng)));
    for (auto& id : ids) id = rng() % 4 ? static_cast<int32_t>(rng() % 300) : any_id(rng);  // many single bytes
    ASSERT_EQ(stream(*tok, ids, false), tok->decode(ids)) << "case " << i;
    ASSERT_EQ(stream(*tok, ids, true), tok->decode(ids, true)) << "case " << i;
  }
}

TEST(Tokenizer, StreamingHoldsBackIncompleteCharacters) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  IncrementalDetokenizer detok(*tok, false);
  EXPECT_EQ(detok.push(19923), "Hello");
  EXPECT_EQ(detok.push(73369), " ");  // the space; F0 9F 8C wait for their last byte
  EXPECT_EQ(detok.push(238), "🌍");
  EXPECT_EQ(detok.push(73369), " ");
  EXPECT_EQ(detok.flush(), "\xEF\xBF\xBD");  // an incomplete character at the end, as decode() gives it
}

TEST(Tokenizer, ConcurrentEncodesEqualSerial) {
  DSV3_REQUIRE_DEEPSEEK_TOKENIZER(tok);
  std::vector<std::string> texts = test::read_corpus();
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) texts.push_back(random_text(rng));
  std::vector<Ids> serial;
  for (const auto& t : texts) serial.push_back(tok->encode(t));
  // A fresh tokenizer so that every thread also fills its word cache concurrently.
  const auto fresh = Tokenizer::load(test::deepseek_tokenizer_dir());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 2; ++rep)
        for (size_t k = 0; k < texts.size(); ++k) {
          const size_t i = (k * 7 + static_cast<size_t>(t) * 13) % texts.size();  // a different order per thread
          if (fresh->encode(texts[i]) != serial[i]) ++mismatches[t];
        }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
  EXPECT_EQ(fresh->encode_batch(texts), serial);
}

}  // namespace
}  // namespace dsv3
