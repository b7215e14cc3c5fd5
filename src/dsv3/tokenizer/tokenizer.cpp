// tokenizer.cpp: loading tokenizer.json + tokenizer_config.json, encode/decode, streaming detokenizer (tokenizer).
// Encode: added tokens out (pass 1 on raw text, pass 2 on normalized text, as HF), then per pre-token a per-thread
// cache in front of BPE. The cache is per thread (no locks), keyed by the tokenizer's serial number.
#include "dsv3/tokenizer/tokenizer.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "dsv3/base/error.h"
#include "dsv3/base/thread_pool.h"
#include "dsv3/tokenizer/tokenizer_impl.h"
#include "dsv3/tokenizer/utf8.h"

namespace dsv3 {
namespace detail {
namespace {

std::atomic<uint64_t> g_tokenizer_serial{1};

constexpr size_t kMaxCachedPiece = 256;       // longer pieces are rare; HF caches below 256 chars too
constexpr size_t kMaxCacheEntries = 1 << 15;  // per thread (a few MB); the cache restarts when full

struct ThreadState {
  uint64_t serial = 0;
  StringMap<std::vector<int32_t>> cache;
  std::vector<Span> spans, scratch;
  std::vector<AddedTokenMatcher::Match> raw_matches, norm_matches;
};

ThreadState& thread_state(uint64_t serial) {
  thread_local std::vector<std::unique_ptr<ThreadState>> states;
  for (auto& s : states)
    if (s->serial == serial) return *s;
  if (states.size() >= 8) states.erase(states.begin());  // states of tokenizers that are likely gone
  states.push_back(std::make_unique<ThreadState>());
  states.back()->serial = serial;
  return *states.back();
}

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT(f.good(), "cannot open {}", path.string());
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    FAIL("{}: invalid JSON: {}", path.string(), e.what());
  }
}

// A token in tokenizer_config.json: a string or {"content": ...} (AddedToken); nullopt when absent or null.
std::optional<std::string> config_token(const nlohmann::json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::nullopt;
  const auto& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  EXPECT(v.is_object() && v.contains("content") && v["content"].is_string(),
         "tokenizer_config.json: {} is neither a string nor an AddedToken", key);
  return v["content"].get<std::string>();
}

// Ids the post-processor puts around a single sequence.
void parse_post_processor(const nlohmann::json& j, const std::string& where, std::vector<int32_t>& prefix,
                          std::vector<int32_t>& suffix) {
  if (j.is_null()) return;
  const std::string type = j.value("type", std::string());
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    for (size_t i = 0; i < j.at("processors").size(); ++i)
      parse_post_processor(j["processors"][i], fmt::format("{}.processors[{}]", where, i), prefix, suffix);
    return;
  }
  EXPECT(type == "TemplateProcessing", "tokenizer.json: {} type '{}' is not supported (TemplateProcessing, ByteLevel, "
         "Sequence are)", where, type);
  prefix.clear();
  suffix.clear();
  bool seen_a = false;
  for (const auto& piece : j.at("single")) {
    if (piece.contains("Sequence")) {
      EXPECT(piece["Sequence"].value("id", std::string()) == "A", "tokenizer.json: {}.single uses sequence B", where);
      seen_a = true;
      continue;
    }
    EXPECT(piece.contains("SpecialToken"), "tokenizer.json: {}.single has an unknown piece", where);
    const std::string name = piece["SpecialToken"].at("id");
    EXPECT(j.contains("special_tokens") && j["special_tokens"].contains(name),
           "tokenizer.json: {}.special_tokens has no '{}'", where, name);
    for (const auto& id : j["special_tokens"][name].at("ids")) (seen_a ? suffix : prefix).push_back(id.get<int32_t>());
  }
}

const char* const kCleanUpFrom[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
const char* const kCleanUpTo[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};

}  // namespace

std::string clean_up_tokenization(std::string text) {
  for (size_t k = 0; k < std::size(kCleanUpFrom); ++k) {
    const std::string_view from = kCleanUpFrom[k], to = kCleanUpTo[k];
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
      out.append(text, pos, hit - pos);
      out += to;
    }
    if (pos == 0) continue;
    out.append(text, pos);
    text.swap(out);
  }
  return text;
}

size_t clean_up_holdback(std::string_view text) {
  for (size_t k = std::min<size_t>(3, text.size()); k > 0; --k) {
    const std::string_view tail = text.substr(text.size() - k);
    for (const char* p : kCleanUpFrom) {
      const std::string_view pat = p;
      if (pat.size() > k && pat.substr(0, k) == tail) return k;
    }
  }
  return 0;
}

void TokenizerImpl::encode_pretokenized(std::string_view text, std::vector<int32_t>& out) const {
  ThreadState& ts = thread_state(serial);
  pre_tokenizer.split(text, ts.spans, ts.scratch);
  for (const Span sp : ts.spans) {
    const std::string_view piece = text.substr(sp.begin, sp.end - sp.begin);
    if (piece.size() == 1 && model.byte_id[static_cast<uint8_t>(piece[0])] >= 0) {
      out.push_back(model.byte_id[static_cast<uint8_t>(piece[0])]);
      continue;
    }
    if (piece.size() > kMaxCachedPiece) {
      model.encode_piece(piece, out);
      continue;
    }
    auto it = ts.cache.find(piece);
    if (it != ts.cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      continue;
    }
    const size_t before = out.size();
    model.encode_piece(piece, out);
    if (ts.cache.size() >= kMaxCacheEntries) ts.cache.clear();
    ts.cache.emplace(std::string(piece), std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(before), out.end()));
  }
}

void TokenizerImpl::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  ThreadState& ts = thread_state(serial);
  std::vector<AddedTokenMatcher::Match> raw;  // not ts.raw_matches: encode_pretokenized may run in between
  raw.swap(ts.raw_matches);
  raw.clear();
  match_raw.find_all(text, raw);
  auto encode_normalized = [&](std::string_view part) {
    if (part.empty()) return;
    std::string storage;
    std::string_view norm = part;
    if (!normalizer.identity()) {
      storage = normalizer.apply(part);
      norm = storage;
    }
    if (match_norm.empty()) {
      encode_pretokenized(norm, out);
      return;
    }
    std::vector<AddedTokenMatcher::Match> matches;
    match_norm.find_all(norm, matches);
    size_t pos = 0;
    for (const auto& m : matches) {
      if (m.begin > pos) encode_pretokenized(norm.substr(pos, m.begin - pos), out);
      out.push_back(m.id);
      pos = m.end;
    }
    if (pos < norm.size()) encode_pretokenized(norm.substr(pos), out);
  };
  size_t pos = 0;
  for (const auto& m : raw) {
    if (m.begin > pos) encode_normalized(text.substr(pos, m.begin - pos));
    out.push_back(m.id);
    pos = m.end;
  }
  if (pos < text.size()) encode_normalized(text.substr(pos));
  raw.swap(ts.raw_matches);
}

}  // namespace detail

using detail::TokenizerImpl;

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path tok_path = fs::path(dir) / "tokenizer.json";
  EXPECT(fs::exists(tok_path),
         "no tokenizer.json in '{}'. The DeepSeek-V3 tokenizer is fetched by `make setup` (bash scripts/setup.sh) "
         "into models/tokenizers/deepseek-v3/",
         dir);
  const nlohmann::json tj = detail::read_json(tok_path);
  nlohmann::json cfg = nlohmann::json::object();
  if (fs::exists(fs::path(dir) / "tokenizer_config.json")) cfg = detail::read_json(fs::path(dir) / "tokenizer_config.json");

  auto impl = std::make_unique<TokenizerImpl>();
  impl->serial = detail::g_tokenizer_serial++;
  EXPECT(tj.contains("model"), "{}: no model", tok_path.string());
  impl->model = detail::BpeModel::from_json(tj["model"]);
  impl->normalizer = detail::Normalizer::from_json(tj.value("normalizer", nlohmann::json()));
  impl->pre_tokenizer = detail::PreTokenizer::from_json(tj.value("pre_tokenizer", nlohmann::json()));
  EXPECT(impl->pre_tokenizer.byte_level,
         "{}: pre_tokenizer has no ByteLevel step; only byte-level BPE tokenizers are supported", tok_path.string());
  {
    const nlohmann::json dec = tj.value("decoder", nlohmann::json());
    bool byte_level = dec.is_object() && dec.value("type", std::string()) == "ByteLevel";
    if (dec.is_object() && dec.value("type", std::string()) == "Sequence") {
      byte_level = dec.contains("decoders") && dec["decoders"].size() == 1 &&
                   dec["decoders"][0].value("type", std::string()) == "ByteLevel";
    }
    EXPECT(byte_level, "{}: decoder {} is not supported (ByteLevel is)", tok_path.string(),
           dec.is_null() ? std::string("null") : dec.value("type", std::string("?")));
  }

  // Added tokens.
  std::vector<int> raw_members, norm_members;
  if (tj.contains("added_tokens")) {
    for (const auto& a : tj["added_tokens"]) {
      detail::AddedToken t;
      t.content = a.at("content").get<std::string>();
      t.id = a.at("id").get<int32_t>();
      t.single_word = a.value("single_word", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.special = a.value("special", false);
      t.normalized = a.value("normalized", !t.special);
      EXPECT(detail::utf8_find_invalid(t.content) == detail::kValidUtf8 && !t.content.empty(),
             "{}: added token {} is empty or not UTF-8", tok_path.string(), t.id);
      (t.normalized ? norm_members : raw_members).push_back(static_cast<int>(impl->added.size()));
      impl->added.push_back(t);
    }
  }
  impl->match_raw.build(impl->added, raw_members);
  if (!norm_members.empty()) {
    std::vector<detail::AddedToken> normalized = impl->added;  // the normalized trie matches normalized content
    if (!impl->normalizer.identity())
      for (int i : norm_members) normalized[i].content = impl->normalizer.apply(normalized[i].content);
    impl->match_norm.build(normalized, norm_members);
  }

  // id tables.
  int64_t max_id = static_cast<int64_t>(impl->model.vocab.size()) - 1;
  for (const auto& t : impl->added) max_id = std::max<int64_t>(max_id, t.id);
  const auto n_ids = static_cast<size_t>(max_id + 1);
  impl->id_token.assign(n_ids, std::string());
  impl->special.assign(n_ids, 0);
  for (size_t id = 0; id < impl->model.vocab.size(); ++id) impl->id_token[id] = impl->model.vocab[id];
  std::unordered_set<std::string> distinct;
  for (const auto& [tok, id] : impl->model.token_to_id) distinct.insert(tok);
  for (const auto& t : impl->added) {
    impl->id_token[t.id] = t.content;
    impl->special[t.id] = t.special ? 1 : 0;
    impl->added_to_id[t.content] = t.id;
    distinct.insert(t.content);
  }
  impl->n_distinct = static_cast<int64_t>(distinct.size());
  impl->id_bytes.resize(n_ids);
  for (size_t id = 0; id < n_ids; ++id) {
    // As HF's ByteLevel decoder: a token entirely in the byte-level alphabet becomes its bytes, any other token
    // (e.g. "<｜User｜>") is emitted as its own UTF-8.
    auto bytes = detail::byte_level_to_bytes(impl->id_token[id]);
    impl->id_bytes[id] = bytes ? std::move(*bytes) : impl->id_token[id];
  }

  // Special tokens around a sequence: tokenizer_config.json's add_bos_token/add_eos_token when present (as
  // transformers' LlamaTokenizerFast rebuilds its post-processor), else the tokenizer.json post-processor.
  auto find_id = [&](const std::string& tok) -> std::optional<int32_t> {
    auto it = impl->added_to_id.find(tok);
    if (it != impl->added_to_id.end()) return it->second;
    auto jt = impl->model.token_to_id.find(tok);
    if (jt != impl->model.token_to_id.end()) return jt->second;
    return std::nullopt;
  };
  for (const char* key : {"bos_token", "eos_token"}) {
    if (auto tok = detail::config_token(cfg, key)) {
      auto id = find_id(*tok);
      EXPECT(id.has_value(), "tokenizer_config.json: {} '{}' is not a token", key, *tok);
      (std::string(key) == "bos_token" ? impl->bos : impl->eos) = id;
    }
  }
  detail::parse_post_processor(tj.value("post_processor", nlohmann::json()), "post_processor", impl->prefix_ids,
                               impl->suffix_ids);
  if (cfg.contains("add_bos_token") || cfg.contains("add_eos_token")) {
    impl->prefix_ids.clear();
    impl->suffix_ids.clear();
    if (cfg.value("add_bos_token", false)) {
      EXPECT(impl->bos.has_value(), "tokenizer_config.json: add_bos_token is true but there is no bos_token");
      impl->prefix_ids.push_back(*impl->bos);
    }
    if (cfg.value("add_eos_token", false)) {
      EXPECT(impl->eos.has_value(), "tokenizer_config.json: add_eos_token is true but there is no eos_token");
      impl->suffix_ids.push_back(*impl->eos);
    }
  }
  impl->clean_up_spaces = cfg.value("clean_up_tokenization_spaces", false);
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const size_t bad = detail::utf8_find_invalid(text);
  EXPECT(bad == detail::kValidUtf8, "tokenizer: input text is not valid UTF-8 (byte {} of {})", bad, text.size());
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids = impl_->prefix_ids;
  impl_->encode_segment(text, ids);
  if (add_special_tokens) ids.insert(ids.end(), impl_->suffix_ids.begin(), impl_->suffix_ids.end());
  return ids;
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                                          bool add_special_tokens) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  // An invalid text must surface as dsv3::Error on the caller, not escape a worker thread.
  std::vector<std::string> errors(texts.size());
  parallel_for(static_cast<int64_t>(texts.size()), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      try {
        out[i] = encode(texts[i], add_special_tokens);
      } catch (const Error& e) {
        errors[i] = e.what();
      }
    }
  });
  for (size_t i = 0; i < errors.size(); ++i) EXPECT(errors[i].empty(), "encode_batch: text {}: {}", i, errors[i]);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= impl_->id_bytes.size()) continue;
    if (skip_special_tokens && impl_->special[id]) continue;
    bytes += impl_->id_bytes[id];
  }
  std::string text;
  text.reserve(bytes.size());
  detail::utf8_lossy_append(bytes, true, text);
  if (impl_->clean_up_spaces) text = detail::clean_up_tokenization(std::move(text));
  return text;
}

int64_t Tokenizer::vocab_size() const { return impl_->model.n_tokens; }
int64_t Tokenizer::num_tokens() const { return impl_->n_distinct; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->added_to_id.find(token);
  if (it != impl_->added_to_id.end()) return it->second;
  auto jt = impl_->model.token_to_id.find(token);
  if (jt != impl_->model.token_to_id.end()) return jt->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_token.size()) return {};
  return impl_->id_token[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[id];
}

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tok, bool skip_special_tokens)
    : tok_(tok), skip_special_tokens_(skip_special_tokens) {}

std::string IncrementalDetokenizer::push(int32_t id) {
  const TokenizerImpl& impl = tok_.impl();
  if (id < 0 || static_cast<size_t>(id) >= impl.id_bytes.size()) return {};
  if (skip_special_tokens_ && impl.special[id]) return {};
  pending_bytes_ += impl.id_bytes[id];
  std::string text;
  const size_t consumed = detail::utf8_lossy_append(pending_bytes_, false, text);
  pending_bytes_.erase(0, consumed);
  if (!impl.clean_up_spaces) return text;
  held_text_ += text;
  const size_t hold = detail::clean_up_holdback(held_text_);
  std::string emit = detail::clean_up_tokenization(held_text_.substr(0, held_text_.size() - hold));
  held_text_.erase(0, held_text_.size() - hold);
  return emit;
}

std::string IncrementalDetokenizer::flush() {
  std::string text;
  detail::utf8_lossy_append(pending_bytes_, true, text);
  pending_bytes_.clear();
  if (!tok_.impl().clean_up_spaces) return text;
  held_text_ += text;
  std::string emit = detail::clean_up_tokenization(std::move(held_text_));
  held_text_.clear();
  return emit;
}

}  // namespace dsv3
