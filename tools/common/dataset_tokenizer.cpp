// dataset_tokenizer.cpp: vocab size, EOS ids and class name of a HF tokenizer folder, read from its JSON files
// (tools/common). The rules follow transformers' PreTrainedTokenizerFast: vocab_size = the model's vocabulary
// without added tokens; the EOS is tokenizer_config.json's eos_token (a string or an AddedToken object).
#include "common/dataset_tokenizer.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dsv3/base/error.h"

namespace dsv3::tools {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT(f.good(), "cannot read {}", path.string());
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    FAIL("{}: invalid JSON: {}", path.string(), e.what());
  }
}

// A special-token entry is either "text" or {"__type": "AddedToken", "content": "text", ...}.
std::string token_content(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return {};
}

}  // namespace

std::string resolve_tokenizer_dir(const std::string& name_or_dir) {
  EXPECT(!name_or_dir.empty(), "--tokenizer is empty");
  if (fs::is_directory(name_or_dir)) return name_or_dir;
  std::vector<fs::path> caches;
  if (const char* c = std::getenv("HF_HUB_CACHE"); c && *c) caches.emplace_back(c);
  if (const char* c = std::getenv("HF_HOME"); c && *c) caches.emplace_back(fs::path(c) / "hub");
  if (const char* c = std::getenv("XDG_CACHE_HOME"); c && *c) caches.emplace_back(fs::path(c) / "huggingface/hub");
  if (const char* c = std::getenv("HOME"); c && *c) caches.emplace_back(fs::path(c) / ".cache/huggingface/hub");
  const size_t slash = name_or_dir.find('/');
  std::string looked;
  if (slash != std::string::npos && slash > 0 && name_or_dir.find('/', slash + 1) == std::string::npos) {
    const std::string repo = "models--" + name_or_dir.substr(0, slash) + "--" + name_or_dir.substr(slash + 1);
    for (const fs::path& cache : caches) {
      const fs::path root = cache / repo;
      looked += "\n  " + root.string();
      std::ifstream ref(root / "refs" / "main");
      std::string rev;
      if (!(ref >> rev)) continue;
      const fs::path snap = root / "snapshots" / rev;
      if (fs::is_regular_file(snap / "tokenizer.json")) return snap.string();
    }
  }
  FAIL("tokenizer '{}' is not a local folder and was not found in the Hugging Face cache (dsv3 downloads "
       "nothing; pass the folder that holds tokenizer.json){}{}",
       name_or_dir, looked.empty() ? "" : "; looked in:", looked);
}

DatasetTokenizer load_dataset_tokenizer(const std::string& dir, EncodeFn encode) {
  DatasetTokenizer t;
  t.dir = dir;
  t.encode = std::move(encode);
  const fs::path root(dir);
  const fs::path tok_path = root / "tokenizer.json";
  EXPECT(fs::is_regular_file(tok_path), "tokenizer folder {}: no tokenizer.json", dir);
  const json tok = read_json_file(tok_path);
  EXPECT(tok.contains("model") && tok["model"].is_object() && tok["model"].contains("vocab"),
         "{}: no model.vocab", tok_path.string());
  const json& vocab = tok["model"]["vocab"];
  // BPE / WordPiece / WordLevel: {token: id}; Unigram: [[piece, score], ...]. Either way HF counts the entries.
  EXPECT(vocab.is_object() || vocab.is_array(), "{}: model.vocab is neither an object nor a list",
         tok_path.string());
  t.vocab_size = static_cast<int64_t>(vocab.size());
  EXPECT(t.vocab_size >= 1, "{}: model.vocab is empty", tok_path.string());

  json cfg = json::object();
  if (fs::is_regular_file(root / "tokenizer_config.json")) cfg = read_json_file(root / "tokenizer_config.json");
  if (cfg.contains("eos_token")) t.eos_token = token_content(cfg["eos_token"]);
  if (t.eos_token.empty() && fs::is_regular_file(root / "special_tokens_map.json")) {
    const json map = read_json_file(root / "special_tokens_map.json");
    if (map.contains("eos_token")) t.eos_token = token_content(map["eos_token"]);
  }
  EXPECT(!t.eos_token.empty(),
         "tokenizer folder {}: no eos_token in tokenizer_config.json or special_tokens_map.json", dir);

  std::string cls = cfg.value("tokenizer_class", std::string());
  if (cls.empty()) cls = "PreTrainedTokenizer";
  // AutoTokenizer loads the fast class whenever tokenizer.json is present.
  if (cls.size() < 4 || cls.compare(cls.size() - 4, 4, "Fast") != 0) cls += "Fast";
  t.class_name = cls;

  // encode(eos_token, add_special_tokens=False): an added token is matched whole before the model runs.
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
    for (const json& a : tok["added_tokens"]) {
      if (a.is_object() && a.value("content", std::string()) == t.eos_token && a.contains("id")) {
        t.eos_ids = {a["id"].get<int32_t>()};
        break;
      }
    }
  }
  if (t.eos_ids.empty() && vocab.is_object() && vocab.contains(t.eos_token))
    t.eos_ids = {vocab[t.eos_token].get<int32_t>()};
  if (t.eos_ids.empty() && t.encode) t.eos_ids = t.encode(t.eos_token, false);
  EXPECT(!t.eos_ids.empty(), "tokenizer folder {}: eos_token '{}' is not a single token of tokenizer.json", dir,
         t.eos_token);
  return t;
}

}  // namespace dsv3::tools
