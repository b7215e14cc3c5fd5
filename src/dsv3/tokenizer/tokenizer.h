// tokenizer.h: byte-level BPE tokenizer loaded from a HuggingFace tokenizer.json (+ tokenizer_config.json) (tokenizer).
// Pipeline as in HF `tokenizers`: added/special tokens are split out first (longest match), the rest is normalized,
// pre-tokenized by the Split regexes (PCRE2, UTF + UCP) and BPE-merged by merge rank over raw bytes.
// Written for DeepSeek-V3 (model-spec.md §7.2) and general enough for Llama-3 / Qwen2 style tokenizers;
// anything else is a dsv3::Error at load that names the unsupported field.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

namespace detail {
struct TokenizerImpl;
}

class Tokenizer {
 public:
  // dir holds tokenizer.json and, optionally, tokenizer_config.json.
  static std::unique_ptr<Tokenizer> load(const std::string& dir);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Thread-safe. add_special_tokens adds BOS/EOS as tokenizer_config.json (add_bos_token/add_eos_token) or the
  // tokenizer.json post-processor says. Special tokens written in the text are always recognized (as HF does).
  // Throws dsv3::Error if text is not valid UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Encodes on the process thread pool (ThreadPool::global()); same ids as encode() one by one.
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string>& texts,
                                                 bool add_special_tokens = true) const;
  // Unknown ids are skipped, as HF does. Invalid UTF-8 byte sequences decode to U+FFFD (one per maximal subpart).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  int64_t vocab_size() const;  // as HF `tokenizer.vocab_size`: the model vocabulary WITHOUT added tokens
  int64_t num_tokens() const;  // as HF `len(tokenizer)`: distinct tokens including added tokens
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // the vocabulary string (byte-level alphabet); "" for unknown ids
  bool is_special(int32_t id) const;          // an added token marked "special" (skipped by skip_special_tokens)

  const detail::TokenizerImpl& impl() const { return *impl_; }

 private:
  explicit Tokenizer(std::unique_ptr<detail::TokenizerImpl> impl);
  std::unique_ptr<detail::TokenizerImpl> impl_;
};

// Streaming detokenizer: push ids one at a time, get text deltas that never split a UTF-8 character and whose
// concatenation (with flush()) equals tok.decode(all ids, skip_special_tokens).
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tok, bool skip_special_tokens);
  std::string push(int32_t id);
  // Whatever is held back at the end: an incomplete UTF-8 sequence becomes U+FFFD, as HF's decode does.
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_tokens_;
  std::string pending_bytes_;  // bytes of a UTF-8 sequence not complete yet
  std::string held_text_;      // decoded text held back for clean_up_tokenization_spaces (a possible " ." etc.)
};

}  // namespace dsv3
