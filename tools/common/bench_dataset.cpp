// bench_dataset.cpp: JSON-lines dataset reader for `dsv3 bench` (tools/common); see bench_dataset.h.
#include "common/bench_dataset.h"

#include <fstream>
#include <limits>
#include <random>

#include <nlohmann/json.hpp>

#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

using json = nlohmann::json;

// nlohmann's messages start with "[json.exception.parse_error.101] parse error at line 1, "; the line is ours.
std::string short_parse_message(const std::string& what) {
  std::string s = what;
  if (auto p = s.find("] "); p != std::string::npos) s = s.substr(p + 2);
  if (auto p = s.find("at line 1, "); p != std::string::npos) s.erase(p, 11);
  return s;
}

int64_t integer_key(const json& row, const char* key, const std::string& where) {
  EXPECT(row.contains(key), "{}: missing required key '{}'", where, key);
  const json& v = row[key];
  EXPECT(v.is_number_integer(), "{}: '{}' must be an integer, got {}", where, key, v.dump());
  return v.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), INT64_MAX))
                                : v.get<int64_t>();
}

std::vector<int32_t> token_ids(const json& v, const char* key, const std::string& where,
                               const DatasetReadOptions& opts) {
  EXPECT(v.is_array(), "{}: '{}' must be a list of token ids, got {}", where, key, v.type_name());
  EXPECT(!v.empty(), "{}: '{}' is empty; a request needs at least one input token", where, key);
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const json& t = v[i];
    EXPECT(t.is_number_integer(), "{}: '{}'[{}] must be an integer token id, got {}", where, key, i, t.dump());
    const bool neg = t.is_number_integer() && !t.is_number_unsigned() && t.get<int64_t>() < 0;
    EXPECT(!neg, "{}: '{}'[{}] = {} is negative", where, key, i, t.get<int64_t>());
    const uint64_t id = t.get<uint64_t>();
    EXPECT(id <= static_cast<uint64_t>(std::numeric_limits<int32_t>::max()), "{}: '{}'[{}] = {} is too large",
           where, key, i, id);
    EXPECT(!opts.vocab_size || static_cast<int64_t>(id) < *opts.vocab_size,
           "{}: '{}'[{}] = {} is outside the vocabulary (vocab_size {})", where, key, i, id, *opts.vocab_size);
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

BenchRequest parse_row(const std::string& text, const std::string& where, const DatasetReadOptions& opts) {
  json row;
  try {
    row = json::parse(text);
  } catch (const json::parse_error& e) {
    FAIL("{}: bad JSON (the dataset is JSON lines: one request object per line): {}", where,
         short_parse_message(e.what()));
  }
  EXPECT(row.is_object(), "{}: expected a JSON object per line, got {}", where, row.type_name());

  BenchRequest r;
  r.task_id = integer_key(row, "task_id", where);
  r.output_tokens = integer_key(row, "output_tokens", where);
  EXPECT(r.output_tokens >= 1, "{}: 'output_tokens' must be >= 1, got {}", where, r.output_tokens);
  EXPECT(!row.contains("media_paths") || row["media_paths"].is_null(),
         "{}: 'media_paths': multimodal requests are not supported", where);

  // pydantic's AliasChoices("input_ids", "logits"): the first present wins.
  const char* ids_key = row.contains("input_ids") && !row["input_ids"].is_null() ? "input_ids"
                        : row.contains("logits") && !row["logits"].is_null()   ? "logits"
                                                                                : nullptr;
  if (ids_key) {
    r.input_ids = token_ids(row[ids_key], ids_key, where, opts);
  } else if (row.contains("prompt") && !row["prompt"].is_null()) {
    EXPECT(row["prompt"].is_string(), "{}: 'prompt' must be a string, got {}", where, row["prompt"].type_name());
    EXPECT(static_cast<bool>(opts.tokenize), "{}: 'prompt' rows need the model's tokenizer, which is not loaded",
           where);
    r.input_ids = opts.tokenize(row["prompt"].get<std::string>());
    EXPECT(!r.input_ids.empty(), "{}: 'prompt' tokenizes to no tokens", where);
  } else {
    FAIL("{}: missing 'input_ids' (or its alias 'logits', or 'prompt')", where);
  }

  const int64_t seq = static_cast<int64_t>(r.input_ids.size()) + r.output_tokens;
  EXPECT(!opts.max_seq_len || seq <= *opts.max_seq_len,
         "{}: request too long: '{}' has {} tokens + 'output_tokens' {} = {} > max_seq_len {}", where,
         ids_key ? ids_key : "prompt", r.input_ids.size(), r.output_tokens, seq, *opts.max_seq_len);
  return r;
}

}  // namespace

BenchDataset parse_bench_dataset(std::istream& in, const std::string& source, const DatasetReadOptions& opts) {
  BenchDataset ds;
  ds.path = source;
  std::string text;
  int64_t line = 0;
  while ((opts.num_requests <= 0 || static_cast<int64_t>(ds.requests.size()) < opts.num_requests) &&
         std::getline(in, text)) {
    ++line;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    const std::string where = source + ":" + std::to_string(line);
    EXPECT(text.find_first_not_of(" \t") != std::string::npos,
           "{}: blank line (the dataset is JSON lines: one request object per line, no blank lines)", where);
    BenchRequest r = parse_row(text, where, opts);
    r.line = line;
    ds.requests.push_back(std::move(r));
  }
  EXPECT(!ds.requests.empty(), "{}: the dataset has no requests", source);
  return ds;
}

BenchDataset read_bench_dataset(const std::string& path, const DatasetReadOptions& opts) {
  std::ifstream f(path, std::ios::binary);
  EXPECT(f, "cannot read the dataset file '{}'", path);
  return parse_bench_dataset(f, path, opts);
}

DatasetStats dataset_stats(const BenchDataset& ds) {
  std::vector<int64_t> isl, osl, seq;
  for (const auto& r : ds.requests) {
    isl.push_back(static_cast<int64_t>(r.input_ids.size()));
    osl.push_back(r.output_tokens);
    seq.push_back(isl.back() + osl.back());
  }
  DatasetStats s;
  s.isl = percentile_stats(isl);
  s.osl = percentile_stats(osl);
  s.seq_len = percentile_stats(seq);
  s.num_requests = static_cast<int64_t>(ds.requests.size());
  s.dataset_path = ds.path;
  return s;
}

std::vector<size_t> warmup_indices(size_t dataset_size, int64_t n, uint64_t seed) {
  CHECK(dataset_size > 0 || n <= 0, "warm-up from an empty dataset");
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, dataset_size - 1);
  std::vector<size_t> idx;
  for (int64_t i = 0; i < n; ++i) idx.push_back(pick(rng));
  return idx;
}

}  // namespace dsv3
