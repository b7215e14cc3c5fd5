// test_stop_checker.cpp: stop ids, EOS, lengths and stop strings over streamed deltas (engine, unit, cpu).
// Every case checks the streaming invariant: the pieces returned, concatenated, equal the final text, and at every
// moment the text shown so far is a prefix of the final text (so a stop string that completes later is never shown).
// A randomised test compares against a brute-force reference over many ways of splitting the same text.
#include <gtest/gtest.h>

#include <random>

#include "dsv3/engine/stop_checker.h"

namespace dsv3 {
namespace {

struct Step {
  int32_t token;
  std::string delta;
};

struct Streamed {
  std::vector<std::string> pieces;
  std::string joined;
  int tokens_consumed = 0;
};

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (int k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// Feeds steps until the checker finishes (or the steps run out, then cancels) and checks the streaming invariant.
Streamed feed(StopChecker& sc, const std::vector<Step>& steps, bool cancel_at_end = true) {
  Streamed run;
  for (const Step& s : steps) {
    if (sc.finished()) break;
    run.pieces.push_back(sc.update(s.token, s.delta));
    run.joined += run.pieces.back();
    ++run.tokens_consumed;
    EXPECT_EQ(run.joined, sc.text());
  }
  if (!sc.finished() && cancel_at_end) {
    run.pieces.push_back(sc.finish(FinishReason::kCancelled));
    run.joined += run.pieces.back();
  }
  EXPECT_EQ(run.joined, sc.text()) << "pieces do not add up to the final text";
  std::string prefix;
  for (const std::string& p : run.pieces) {
    prefix += p;
    EXPECT_EQ(sc.text().substr(0, prefix.size()), prefix) << "shown text is not a prefix of the final text";
  }
  return run;
}

std::vector<Step> deltas(std::initializer_list<std::string> parts, int32_t first_token = 100) {
  std::vector<Step> steps;
  for (const std::string& p : parts) steps.push_back({first_token++, p});
  return steps;
}

SamplingParams params_with_stops(std::vector<std::string> stop, int max_tokens = 100) {
  SamplingParams p;
  p.stop = std::move(stop);
  p.max_tokens = max_tokens;
  return p;
}

TEST(StopChecker, MaxTokensGivesLength) {
  SamplingParams p;
  p.max_tokens = 3;
  StopChecker sc(p);
  Streamed r = feed(sc, deltas({"a", "b", "c", "d"}));
  EXPECT_EQ(sc.finish_reason(), FinishReason::kLength);
  EXPECT_STREQ(finish_reason_name(sc.finish_reason()), "length");
  EXPECT_EQ(r.tokens_consumed, 3);
  EXPECT_EQ(sc.text(), "abc");
  EXPECT_EQ(sc.stop_match().kind, StopMatch::Kind::kNone);
}

TEST(StopChecker, StopStringInOneDelta) {
  StopChecker sc(params_with_stops({"###"}));
  Streamed r = feed(sc, deltas({"Hello", " world###rest", "more"}));
  EXPECT_EQ(sc.finish_reason(), FinishReason::kStop);
  EXPECT_EQ(sc.text(), "Hello world");
  EXPECT_EQ(r.tokens_consumed, 2);
  EXPECT_EQ(sc.stop_match().kind, StopMatch::Kind::kStopString);
  EXPECT_EQ(sc.stop_match().str, "###");
}

TEST(StopChecker, StopStringSplitOverThreeDeltas) {
  StopChecker sc(params_with_stops({"STOP"}));
  Streamed r = feed(sc, deltas({"xx ST", "O", "P yy", "zz"}));
  EXPECT_EQ(sc.finish_reason(), FinishReason::kStop);
  EXPECT_EQ(r.pieces, (std::vector<std::string>{"xx ", "", ""}));
  EXPECT_EQ(sc.text(), "xx ");
  // With include_stop_str_in_output the text up to the end of the match is shown (nothing needs holding back).
  SamplingParams inc = params_with_stops({"STOP"});
  inc.include_stop_str_in_output = true;
  StopChecker sc2(inc);
  Streamed r2 = feed(sc2, deltas({"xx ST", "O", "P yy", "zz"}));
  EXPECT_EQ(r2.pieces, (std::vector<std::string>{"xx ST", "O", "P"}));
  EXPECT_EQ(sc2.text(), "xx STOP");
}

TEST(StopChecker, HeldTextIsReleasedWhenTheMatchFails) {
  StopChecker sc(params_with_stops({"STOP"}));
  Streamed r = feed(sc, deltas({"a ST", "AR S", "T", "OR", "Y"}), /*cancel_at_end=*/true);
  EXPECT_EQ(r.pieces, (std::vector<std::string>{"a ", "STAR ", "", "STOR", "Y", ""}));
  EXPECT_EQ(sc.finish_reason(), FinishReason::kCancelled);
  EXPECT_EQ(sc.text(), "a STAR STORY");
}

TEST(StopChecker, LengthReleasesHeldText) {
  StopChecker sc(params_with_stops({"</end>"}, 2));
  Streamed r = feed(sc, deltas({"value", " </e"}));
  EXPECT_EQ(r.pieces, (std::vector<std::string>{"value", " </e"}));
  EXPECT_EQ(sc.finish_reason(), FinishReason::kLength);
}

TEST(StopChecker, MultiByteStopAcrossDeltas) {
  // "你好终止后面" with stop "终止"; the bytes are split inside characters: 终 = e7 bb 88, 止 = e6 ad a2.
  const std::string text = "\xe4\xbd\xa0\xe5\xa5\xbd\xe7\xbb\x88\xe6\xad\xa2\xe5\x90\x8e\xe9\x9d\xa2";
  StopChecker sc(params_with_stops({"\xe7\xbb\x88\xe6\xad\xa2"}));
  Streamed r = feed(sc, deltas({text.substr(0, 4), text.substr(4, 4), text.substr(8, 3), text.substr(11)}));
  EXPECT_EQ(sc.finish_reason(), FinishReason::kStop);
  EXPECT_EQ(sc.text(), "\xe4\xbd\xa0\xe5\xa5\xbd");  // 你好
  EXPECT_EQ(r.pieces[0], "\xe4\xbd\xa0");            // 你, the partial 好 held back
  for (const auto& p : r.pieces) EXPECT_TRUE(valid_utf8(p));

  // A shared first character that does not complete the stop (终点): 终 is held until the next bytes rule 止 out,
  // and the partial 点 until it is whole.
  StopChecker sc2(params_with_stops({"\xe7\xbb\x88\xe6\xad\xa2"}));
  Streamed r2 = feed(sc2, deltas({"a\xe7\xbb", "\x88", "\xe7\x82", "\xb9!"}));
  EXPECT_EQ(r2.pieces, (std::vector<std::string>{"a", "", "\xe7\xbb\x88", "\xe7\x82\xb9!", ""}));
  EXPECT_EQ(sc2.text(), "a\xe7\xbb\x88\xe7\x82\xb9!");
}

TEST(StopChecker, IncompleteUtf8IsHeldWithoutStops) {
  SamplingParams p;
  p.max_tokens = 10;
  StopChecker sc(p);
  const std::string emoji = "\xf0\x9f\x98\x80";  // U+1F600
  Streamed r = feed(sc, deltas({"ok" + emoji.substr(0, 1), emoji.substr(1, 2), emoji.substr(3) + "!"}));
  EXPECT_EQ(r.pieces, (std::vector<std::string>{"ok", "", emoji + "!", ""}));
}

TEST(StopChecker, EarliestEndingStopWinsTiesToTheLonger) {
  // "bc" completes before "abcd" does.
  StopChecker a(params_with_stops({"abcd", "bc"}));
  feed(a, deltas({"xabcdy"}));
  EXPECT_EQ(a.text(), "xa");
  EXPECT_EQ(a.stop_match().str, "bc");
  // "abc" and "bc" end at the same byte: the longer wins (cut earlier).
  StopChecker b(params_with_stops({"bc", "abc"}));
  feed(b, deltas({"xab", "cy"}));
  EXPECT_EQ(b.text(), "x");
  EXPECT_EQ(b.stop_match().str, "abc");
}

TEST(StopChecker, StopTokenAndEos) {
  SamplingParams p;
  p.end_id = 1;
  p.stop_token_ids = {7};
  p.max_tokens = 10;
  {
    StopChecker sc(p);
    Streamed r = feed(sc, {{5, "a"}, {7, "<tool>"}, {5, "b"}});
    EXPECT_EQ(sc.finish_reason(), FinishReason::kStop);
    EXPECT_EQ(sc.text(), "a");
    EXPECT_EQ(sc.stop_match().kind, StopMatch::Kind::kStopToken);
    EXPECT_EQ(sc.stop_match().token, 7);
  }
  {
    SamplingParams inc = p;
    inc.include_stop_str_in_output = true;
    StopChecker sc(inc);
    feed(sc, {{5, "a"}, {7, "<tool>"}});
    EXPECT_EQ(sc.text(), "a<tool>");
  }
  {
    StopChecker sc(p);
    feed(sc, {{5, "a"}, {1, ""}, {5, "b"}});
    EXPECT_EQ(sc.finish_reason(), FinishReason::kStop);
    EXPECT_EQ(sc.stop_match().kind, StopMatch::Kind::kEos);
    EXPECT_EQ(sc.stop_match().token, 1);
    EXPECT_EQ(sc.text(), "a");
  }
  {
    // A stop token releases text held back for a stop string.
    SamplingParams q = p;
    q.stop = {"END"};
    StopChecker sc(q);
    Streamed r = feed(sc, {{5, "aE"}, {7, "x"}});
    EXPECT_EQ(r.pieces, (std::vector<std::string>{"a", "E"}));
  }
  {
    // ignore_eos: EOS is ordinary text, the request runs to max_tokens.
    SamplingParams q = p;
    q.ignore_eos = true;
    q.max_tokens = 3;
    StopChecker sc(q);
    Streamed r = feed(sc, {{5, "a"}, {1, "</s>"}, {5, "b"}, {5, "c"}});
    EXPECT_EQ(sc.finish_reason(), FinishReason::kLength);
    EXPECT_EQ(sc.text(), "a</s>b");
    EXPECT_EQ(r.tokens_consumed, 3);
  }
}

TEST(StopChecker, MinTokensBlocksEarlyStops) {
  SamplingParams p;
  p.end_id = 1;
  p.stop_token_ids = {7};
  p.stop = {"##"};
  p.min_tokens = 3;
  p.max_tokens = 10;
  {
    // EOS and the stop id before min_tokens are plain tokens; EOS as token 3 stops.
    StopChecker sc(p);
    Streamed r = feed(sc, {{1, ""}, {7, "t"}, {1, ""}, {5, "z"}});
    EXPECT_EQ(sc.finish_reason(), FinishReason::kStop);
    EXPECT_EQ(sc.stop_match().kind, StopMatch::Kind::kEos);
    EXPECT_EQ(r.tokens_consumed, 3);
    EXPECT_EQ(sc.text(), "t");
  }
  {
    // "##" complete within the first two tokens is ignored; the one completed by token 4 stops.
    StopChecker sc(p);
    Streamed r = feed(sc, {{5, "a##"}, {5, "b"}, {5, "c#"}, {5, "#d"}});
    EXPECT_EQ(sc.finish_reason(), FinishReason::kStop);
    EXPECT_EQ(sc.text(), "a##bc");
    EXPECT_EQ(r.tokens_consumed, 4);
  }
  {
    // A match that starts before min_tokens and ends in the text of token min_tokens counts.
    StopChecker sc(p);
    feed(sc, {{5, "a"}, {5, "b#"}, {5, "#c"}});
    EXPECT_EQ(sc.text(), "ab");
    EXPECT_EQ(sc.stop_match().str, "##");
  }
}

TEST(StopChecker, CancelFlushesHeldText) {
  StopChecker sc(params_with_stops({"STOP"}));
  Streamed r = feed(sc, deltas({"go S", "T"}));
  EXPECT_EQ(sc.finish_reason(), FinishReason::kCancelled);
  EXPECT_STREQ(finish_reason_name(sc.finish_reason()), "cancelled");
  EXPECT_EQ(r.pieces.back(), "ST");
  EXPECT_EQ(sc.text(), "go ST");
}

// The final text of a stream under stop strings, by brute force over end positions; *found tells whether one matched.
std::string reference_cut(const std::string& text, const std::vector<std::string>& stops, bool include, bool* found) {
  *found = false;
  for (size_t end = 1; end <= text.size(); ++end) {
    const std::string* best = nullptr;
    for (const std::string& s : stops)
      if (s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0 && (!best || s.size() > best->size()))
        best = &s;
    if (best) {
      *found = true;
      return text.substr(0, include ? end : end - best->size());
    }
  }
  return text;
}

TEST(StopChecker, RandomSplitsMatchBruteForce) {
  // Small alphabet so partial matches, overlaps and multi-byte characters (é = c3 a9) are frequent.
  const std::vector<std::string> alphabet = {"a", "b", "c", " ", "\xc3\xa9"};
  const std::vector<std::vector<std::string>> stop_sets = {
      {"abc"}, {"ca", "bb"}, {"a\xc3\xa9" "b", "cc", "b a"}, {"aaa", "aa"}, {"\xc3\xa9\xc3\xa9"}};
  std::mt19937 rng(2024);
  int stopped = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int n_chars = 1 + rng() % 20;
    for (int i = 0; i < n_chars; ++i) text += alphabet[rng() % alphabet.size()];
    const auto& stops = stop_sets[trial % stop_sets.size()];
    const bool include = trial % 3 == 0;
    // Random byte-level split (cuts may fall inside é).
    std::vector<Step> steps;
    for (size_t i = 0; i < text.size();) {
      const size_t len = std::min<size_t>(text.size() - i, rng() % 4);  // empty deltas too
      steps.push_back({10, text.substr(i, len)});
      i += len;
    }
    SamplingParams p = params_with_stops(stops, static_cast<int>(steps.size()) + 1);
    p.include_stop_str_in_output = include;
    StopChecker sc(p);
    Streamed r = feed(sc, steps);
    bool found = false;
    const std::string want = reference_cut(text, stops, include, &found);
    ASSERT_EQ(std::string(sc.text()), want) << "text '" << text << "' trial " << trial;
    // max_tokens is out of reach, so the request either stopped on a string or was cancelled at the end.
    EXPECT_EQ(sc.finish_reason(), found ? FinishReason::kStop : FinishReason::kCancelled) << "trial " << trial;
    for (const auto& piece : r.pieces) EXPECT_TRUE(valid_utf8(piece)) << "trial " << trial;
    stopped += sc.finish_reason() == FinishReason::kStop;
  }
  // Both outcomes are well represented.
  EXPECT_GT(stopped, 400);
  EXPECT_LT(stopped, 1800);
}

}  // namespace
}  // namespace dsv3
