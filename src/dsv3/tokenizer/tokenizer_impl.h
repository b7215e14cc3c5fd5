// tokenizer_impl.h: the pieces behind dsv3::Tokenizer (tokenizer, internal): BPE model over raw bytes, Split regexes
// (PCRE2), added-token matcher, normalizer, post-processor template. Shared by the tokenizer's .cpp files only.
// NOTE: BPE runs on raw bytes, not on the byte-level alphabet: vocabulary strings are mapped back to bytes at load,
// so encoding never builds byte-level strings.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3::detail {

// Transparent string hash so maps keyed by std::string can be probed with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// GPT-2 bytes_to_unicode: byte -> code point of the byte-level alphabet, and its inverse (-1 if not in it).
uint32_t byte_to_unicode(uint8_t b);
int unicode_to_byte(uint32_t cp);
// Byte-level string -> raw bytes; nullopt if a character is outside the alphabet.
std::optional<std::string> byte_level_to_bytes(std::string_view token);

// Open-addressing map from a (left id, right id) pair to its merge: rank (lower merges first) and merged id.
class MergeMap {
 public:
  struct Merge {
    int32_t rank = -1, id = -1;
  };
  void reserve(size_t n);
  // Returns false if the pair was already present (then the new merge replaces it, as in HF).
  bool insert(int32_t a, int32_t b, Merge m);
  Merge find(int32_t a, int32_t b) const {
    const uint64_t key = pack(a, b);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return s.merge;
      if (s.key == kEmpty) return {};
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge;
  };
  static uint64_t pack(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

struct BpeModel {
  std::vector<std::string> vocab;  // id -> byte-level string ("" for holes)
  StringMap<int32_t> token_to_id;  // byte-level string -> id
  StringMap<int32_t> bytes_to_id;  // raw bytes -> id (tokens of the byte-level alphabet only)
  int32_t byte_id[256];            // id of each single-byte token, -1 if absent
  MergeMap merges;
  bool ignore_merges = false;  // a piece that is itself a token is emitted whole (Llama-3)
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
  int64_t n_tokens = 0;  // entries in the vocabulary

  static BpeModel from_json(const nlohmann::json& model);
  // Appends the ids of one pre-token (raw bytes) to out; no cache.
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

 private:
  void merge_small(int32_t* ids, int n, std::vector<int32_t>& out) const;
  void merge_heap(std::vector<int32_t>& ids, std::vector<int32_t>& out) const;
};

// A compiled regex (PCRE2, UTF + UCP, JIT when available). Thread-safe: match data is per thread.
class Regex {
 public:
  // pattern is in the HF/Oniguruma dialect; literal = a {"String": ...} pattern.
  Regex(const std::string& pattern, bool literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Finds the next match in subject at or after start; false if none. subject must be valid UTF-8.
  bool find(std::string_view subject, size_t start, size_t* match_begin, size_t* match_end) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
  uint64_t serial_;  // key of this regex's per-thread match data
};

// One pre-token: a byte range of the (normalized) segment being encoded.
struct Span {
  uint32_t begin, end;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct SplitStep {
  std::unique_ptr<Regex> regex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

// The pre-tokenizer, reduced to the regex splits that run in order; the ByteLevel step adds nothing at encode
// time because BPE works on raw bytes (its use_regex split is one more SplitStep).
struct PreTokenizer {
  std::vector<SplitStep> steps;
  bool byte_level = false;

  static PreTokenizer from_json(const nlohmann::json& j);
  // Splits text into pre-tokens; scratch is reused between calls.
  void split(std::string_view text, std::vector<Span>& out, std::vector<Span>& scratch) const;
};

enum class NormalizerKind { kNFC, kNFD, kNFKC, kNFKD };

struct Normalizer {
  std::vector<NormalizerKind> steps;  // empty = identity
  static Normalizer from_json(const nlohmann::json& j);
  bool identity() const { return steps.empty(); }
  std::string apply(std::string_view text) const;
};

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// Finds added tokens: leftmost-longest, non-overlapping, honoring single_word/lstrip/rstrip (HF AddedVocabulary).
class AddedTokenMatcher {
 public:
  void build(const std::vector<AddedToken>& tokens, const std::vector<int>& members);
  bool empty() const { return members_.empty(); }
  struct Match {
    size_t begin, end;  // the text the token consumes, stripped whitespace included
    int32_t id;
  };
  // Appends the matches in text to out in order.
  void find_all(std::string_view text, std::vector<Match>& out) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;  // sorted by byte
    int token = -1;                                 // index into tokens_ of the token ending here
  };
  int32_t child(int32_t node, uint8_t b) const;
  std::vector<Node> nodes_;
  std::vector<AddedToken> tokens_;
  std::vector<int> members_;
  bool first_byte_[256] = {};
};

struct TokenizerImpl {
  BpeModel model;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  std::vector<AddedToken> added;  // in tokenizer.json order
  AddedTokenMatcher match_raw;    // pass 1: added tokens with normalized=false, on the raw text
  AddedTokenMatcher match_norm;   // pass 2: normalized=true, on normalized text
  StringMap<int32_t> added_to_id;
  std::vector<std::string> id_bytes;  // id -> bytes the decoder emits
  std::vector<uint8_t> special;       // id -> 1 if a special added token
  std::vector<std::string> id_token;  // id -> token string (added tokens win over the model vocabulary)
  std::vector<int32_t> prefix_ids, suffix_ids;  // added by add_special_tokens
  std::optional<int32_t> bos, eos;
  bool clean_up_spaces = false;  // transformers' clean_up_tokenization_spaces
  int64_t n_distinct = 0;
  uint64_t serial = 0;  // identifies this tokenizer's per-thread caches

  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;
  void encode_pretokenized(std::string_view text, std::vector<int32_t>& out) const;
};

// transformers' clean_up_tokenization: " ." -> "." and friends, applied in sequence.
std::string clean_up_tokenization(std::string text);
// The length of text's longest suffix that could start one of the clean-up patterns (held back when streaming).
size_t clean_up_holdback(std::string_view text);

}  // namespace dsv3::detail
