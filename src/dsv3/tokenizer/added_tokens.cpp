// added_tokens.cpp: finding added/special tokens in text before pre-tokenization (tokenizer).
// Mirrors HF AddedVocabulary::find_matches: leftmost-longest non-overlapping matches (a byte trie here, an
// Aho-Corasick automaton there); a single_word token next to a word character (Rust regex \w) is skipped; lstrip and
// rstrip make the token swallow the whitespace (Unicode White_Space) on its left / right.
#include <algorithm>

#include "dsv3/base/error.h"
#include "dsv3/tokenizer/tokenizer_impl.h"
#include "dsv3/tokenizer/utf8.h"

namespace dsv3::detail {
namespace {

// Rust regex's Unicode \w.
bool is_word_char(uint32_t cp) {
  static const Regex word(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])", false);
  std::string s;
  utf8_append(s, cp);
  size_t b, e;
  return word.find(s, 0, &b, &e) && b == 0;
}

}  // namespace

void AddedTokenMatcher::build(const std::vector<AddedToken>& tokens, const std::vector<int>& members) {
  tokens_ = tokens;
  members_ = members;
  nodes_.assign(1, Node{});
  std::fill(std::begin(first_byte_), std::end(first_byte_), false);
  for (int t : members) {
    const std::string& s = tokens_[t].content;
    if (s.empty()) continue;
    first_byte_[static_cast<uint8_t>(s[0])] = true;
    int32_t node = 0;
    for (char ch : s) {
      const auto b = static_cast<uint8_t>(ch);
      int32_t c = child(node, b);
      if (c < 0) {
        c = static_cast<int32_t>(nodes_.size());
        auto& next = nodes_[node].next;
        next.insert(std::lower_bound(next.begin(), next.end(), std::make_pair(b, int32_t(-1))), {b, c});
        nodes_.push_back(Node{});
      }
      node = c;
    }
    if (nodes_[node].token < 0) nodes_[node].token = t;  // duplicates: the first one wins
  }
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t b) const {
  const auto& next = nodes_[node].next;
  auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(b, int32_t(-1)));
  return it != next.end() && it->first == b ? it->second : -1;
}

void AddedTokenMatcher::find_all(std::string_view text, std::vector<Match>& out) const {
  if (members_.empty()) return;
  const size_t n = text.size();
  size_t start_offset = 0;  // end of the last accepted match
  size_t pos = 0;
  while (pos < n) {
    // Leftmost position where some token matches; the longest token there.
    size_t mb = n, me = 0;
    int tok = -1;
    for (size_t p = pos; p < n; ++p) {
      if (!first_byte_[static_cast<uint8_t>(text[p])]) continue;
      int32_t node = 0;
      for (size_t q = p; q < n; ++q) {
        node = child(node, static_cast<uint8_t>(text[q]));
        if (node < 0) break;
        if (nodes_[node].token >= 0) {
          tok = nodes_[node].token;
          me = q + 1;
        }
      }
      if (tok >= 0) {
        mb = p;
        break;
      }
    }
    if (tok < 0) break;
    pos = me;
    const AddedToken& t = tokens_[tok];
    size_t start = mb, stop = me;
    if (start < start_offset) continue;  // inside whitespace an rstrip token already took
    if (t.single_word) {
      uint32_t cp;
      const bool start_space = start == 0 || (utf8_prev(text, start, &cp), !is_word_char(cp));
      const bool stop_space = stop == n || (utf8_next(text, stop, &cp), !is_word_char(cp));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      while (s > 0) {
        uint32_t cp;
        const int len = utf8_prev(text, s, &cp);
        if (!is_unicode_whitespace(cp)) break;
        s -= len;
      }
      start = std::max(s, start_offset);
    }
    if (t.rstrip) {
      while (stop < n) {
        uint32_t cp;
        const int len = utf8_next(text, stop, &cp);
        if (!is_unicode_whitespace(cp)) break;
        stop += len;
      }
      pos = std::max(pos, stop);
    }
    out.push_back({start, stop, t.id});
    start_offset = stop;
  }
}

}  // namespace dsv3::detail
