// dataset_gen.cpp: prepare_dataset.py's generators (benchmarks/cpp/utils/{utils,prepare_synthetic_data,
// prepare_real_data}.py, E1/E2) and its writers (tools/common). Where the Python tool crashes on an input (an empty
// length list, a negative sample size, a seed numpy rejects) we throw dsv3::Error with the reason instead.
#include "common/dataset_gen.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "dsv3/base/error.h"
#include "dsv3/base/log.h"

namespace dsv3::tools {
namespace {

void append_int(std::string& out, int64_t v) {
  char buf[24];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, res.ptr);
}

// json.dumps(str) with ensure_ascii=True: \" \\ \n \r \t \b \f, other controls and all non-ASCII as \uXXXX
// (UTF-16 surrogate pairs above the BMP, lowercase hex).
void append_py_json_string(std::string& out, const std::string& s) {
  auto u16 = [&](uint32_t u) {
    static const char* kHex = "0123456789abcdef";
    out += "\\u";
    for (int sh = 12; sh >= 0; sh -= 4) out += kHex[(u >> sh) & 0xf];
  };
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20) {
            u16(c);
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    const int n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    EXPECT(n > 1 && i + n <= s.size(), "invalid UTF-8 in metadata string");
    uint32_t cp = c & (0x7f >> n);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    i += n;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      u16(0xd800 + (cp >> 10));
      u16(0xdc00 + (cp & 0x3ff));
    } else {
      u16(cp);
    }
  }
  out += '"';
}

std::string metadata_str(const MetadataValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  return std::get<std::string>(v);
}

void append_ids(std::string& out, const std::vector<int32_t>& ids, const char* sep) {
  out += '[';
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += sep;
    append_int(out, ids[i]);
  }
  out += ']';
}

std::vector<int64_t> task_ids_for(const GenOptions& g, int64_t n, PyRandom& rng) {
  std::vector<int64_t> ids(n, g.task_id);
  if (g.rand_task_id) {
    for (int64_t& id : ids) id = rng.randint(g.rand_task_id->first, g.rand_task_id->second);
  }
  return ids;
}

uint64_t py_seed(int64_t seed) { return seed < 0 ? 0 - static_cast<uint64_t>(seed) : static_cast<uint64_t>(seed); }

void check_rand_task_id(const GenOptions& g) {
  if (g.rand_task_id) {
    EXPECT(g.rand_task_id->first <= g.rand_task_id->second, "--rand-task-id: min {} > max {}",
           g.rand_task_id->first, g.rand_task_id->second);
  }
}

}  // namespace

std::vector<int64_t> norm_dist_lengths(int64_t mean, int64_t stdev, int64_t n, int64_t seed) {
  EXPECT(seed >= 0 && seed <= int64_t{0xffffffff}, "--random-seed {}: numpy's np.random.seed needs 0 <= seed < 2**32",
         seed);
  EXPECT(stdev >= 0, "normal distribution stdev {} < 0", stdev);
  EXPECT(n >= 0, "negative request count {}", n);
  NumpyLegacyRandom rng(static_cast<uint32_t>(seed));
  std::vector<int64_t> lens(n);
  for (int64_t& len : lens) {
    const double x = std::ceil(rng.normal(static_cast<double>(mean), static_cast<double>(stdev)));
    EXPECT(x < 9.0e18, "normal length {} is out of range", x);
    len = std::max<int64_t>(1, x < -9.0e18 ? 1 : static_cast<int64_t>(x));
  }
  return lens;
}

std::vector<int64_t> unif_dist_lengths(int64_t min, int64_t max, int64_t n, int64_t seed) {
  EXPECT(seed >= 0, "--random-seed {}: numpy's default_rng needs a non-negative seed", seed);
  EXPECT(min <= max, "uniform distribution: min {} > max {}", min, max);
  EXPECT(max < INT64_MAX, "uniform distribution: max {} is too large", max);
  EXPECT(n >= 0, "negative request count {}", n);
  NumpyPcg64 rng(static_cast<uint64_t>(seed));
  return rng.integers_closed(min, max, n);
}

std::vector<std::vector<int32_t>> gen_random_tokens(std::span<const int64_t> lens, int64_t vocab_size,
                                                    std::span<const int32_t> eos_ids, PyRandom& rng) {
  EXPECT(vocab_size >= 2 && vocab_size <= INT32_MAX, "tokenizer vocab_size {} is out of range", vocab_size);
  EXPECT(!eos_ids.empty(), "the tokenizer's eos_token encodes to no ids");
  const int32_t eos = eos_ids[0];
  const int32_t replacement = static_cast<int32_t>((static_cast<int64_t>(eos) + 1) % vocab_size);
  std::vector<std::vector<int32_t>> out;
  out.reserve(lens.size());
  for (const int64_t len : lens) {
    EXPECT(len >= 0, "negative input length {}", len);
    std::vector<int32_t> ids = len < vocab_size ? rng.sample_range(vocab_size, len) : rng.choices_range(vocab_size, len);
    // `while set(eos_id).issubset(start_ids)`: one pass removes eos_ids[0] (replacement != eos as vocab_size >= 2).
    const bool all_present = std::all_of(eos_ids.begin(), eos_ids.end(), [&](int32_t e) {
      return std::find(ids.begin(), ids.end(), e) != ids.end();
    });
    if (all_present) std::replace(ids.begin(), ids.end(), eos, replacement);
    out.push_back(std::move(ids));
  }
  return out;
}

std::pair<int64_t, int64_t> parse_output_len_dist(const std::string& value) {
  // re.match(r"(\d+),(\d+)"): digits, a comma, digits, at the start; anything may follow.
  size_t i = 0;
  auto digits = [&](int64_t& v) {
    const size_t start = i;
    while (i < value.size() && value[i] >= '0' && value[i] <= '9') ++i;
    if (i == start) return false;
    const auto res = std::from_chars(value.data() + start, value.data() + i, v);
    EXPECT(res.ec == std::errc(), "--output-len-dist '{}': number out of range", value);
    return true;
  };
  int64_t mean = 0, stdev = 0;
  bool ok = digits(mean) && i < value.size() && value[i++] == ',' && digits(stdev);
  EXPECT(ok, "Incorrect specification for --output-len-dist '{}'. Correct format: --output-len-dist "
             "<output_len_mean>,<output_len_stdev>",
         value);
  return {mean, stdev};
}

Workload token_norm_dist(const DatasetTokenizer& tok, const GenOptions& g, const NormDistOptions& o) {
  EXPECT(o.num_requests >= 1, "--num-requests must be >= 1, got {}", o.num_requests);
  EXPECT(o.input_stdev >= 0, "--input-stdev must be >= 0, got {}", o.input_stdev);
  EXPECT(o.output_stdev >= 0, "--output-stdev must be >= 0, got {}", o.output_stdev);
  check_rand_task_id(g);
  Workload w;
  const std::vector<int64_t> input_lens = norm_dist_lengths(o.input_mean, o.input_stdev, o.num_requests, g.random_seed);
  w.output_lens = norm_dist_lengths(o.output_mean, o.output_stdev, o.num_requests, g.random_seed);
  PyRandom rng(py_seed(g.random_seed));
  w.input_ids = gen_random_tokens(input_lens, tok.vocab_size, tok.eos_ids, rng);
  w.task_ids = task_ids_for(g, o.num_requests, rng);
  w.metadata = {{"workload_type", std::string("token-norm-dist")},
                {"input_mean", o.input_mean},
                {"input_stdev", o.input_stdev},
                {"output_mean", o.output_mean},
                {"output_stdev", o.output_stdev},
                {"num_requests", o.num_requests},
                {"tokenize_vocabsize", tok.vocab_size},
                {"max_input_len", *std::max_element(input_lens.begin(), input_lens.end())},
                {"max_output_len", *std::max_element(w.output_lens.begin(), w.output_lens.end())}};
  return w;
}

Workload token_unif_dist(const DatasetTokenizer& tok, const GenOptions& g, const UnifDistOptions& o) {
  EXPECT(o.num_requests >= 1, "--num-requests must be >= 1, got {}", o.num_requests);
  EXPECT(o.input_min >= 0, "--input-min must be >= 0, got {}", o.input_min);
  EXPECT(o.output_min >= 0, "--output-min must be >= 0, got {}", o.output_min);
  EXPECT(o.input_min <= o.input_max, "--input-min {} > --input-max {}", o.input_min, o.input_max);
  EXPECT(o.output_min <= o.output_max, "--output-min {} > --output-max {}", o.output_min, o.output_max);
  check_rand_task_id(g);
  Workload w;
  const std::vector<int64_t> input_lens = unif_dist_lengths(o.input_min, o.input_max, o.num_requests, g.random_seed);
  w.output_lens = unif_dist_lengths(o.output_min, o.output_max, o.num_requests, g.random_seed);
  PyRandom rng(py_seed(g.random_seed));
  w.input_ids = gen_random_tokens(input_lens, tok.vocab_size, tok.eos_ids, rng);
  w.task_ids = task_ids_for(g, o.num_requests, rng);
  w.metadata = {{"workload_type", std::string("token-unif-dist")},
                {"input_min", o.input_min},
                {"input_max", o.input_max},
                {"output_min", o.output_min},
                {"output_max", o.output_max},
                {"num_requests", o.num_requests},
                {"tokenize_vocabsize", tok.vocab_size},
                {"max_input_len", *std::max_element(input_lens.begin(), input_lens.end())},
                {"max_output_len", *std::max_element(w.output_lens.begin(), w.output_lens.end())}};
  return w;
}

Workload real_dataset(const DatasetTokenizer& tok, const GenOptions& g, const RealDatasetOptions& o,
                      std::span<const DatasetRow> rows) {
  // pydantic DatasetConfig.check_prompt: exactly one of the two (empty strings count as unset).
  const bool has_prompt_key = o.prompt_key && !o.prompt_key->empty();
  const bool has_prompt = o.prompt && !o.prompt->empty();
  EXPECT(!(has_prompt_key && has_prompt), "--dataset-prompt-key and --dataset-prompt cannot be set at the same time");
  EXPECT(has_prompt_key || has_prompt, "either --dataset-prompt-key or --dataset-prompt must be set");
  EXPECT(o.input_key && !o.input_key->empty(), "--dataset-input-key is required");
  EXPECT(!o.num_requests || *o.num_requests >= 0, "--num-requests must be >= 0, got {}", *o.num_requests);
  EXPECT(!o.max_input_len || *o.max_input_len >= 0, "--max-input-len must be >= 0, got {}", *o.max_input_len);
  EXPECT(o.output_len_dist || (o.output_key && !o.output_key->empty()),
         "--dataset-output-key is not set. Either define the output length with --output-len-dist, or name the "
         "dataset key of the golden output with --dataset-output-key");
  EXPECT(static_cast<bool>(tok.encode),
         "the `dataset` subcommand needs the tokenizer's encoder, which this build does not have");
  check_rand_task_id(g);

  auto field = [&](const DatasetRow& row, const std::string& key, const char* option) -> std::string {
    if (!row.value.contains(key)) {
      std::string keys;
      for (const auto& [k, v] : row.value.items()) keys += (keys.empty() ? "" : ", ") + k;
      FAIL("{}:{}: the row has no key '{}' ({}); its keys are: {}", o.name, row.line, key, option, keys);
    }
    const nlohmann::json& v = row.value[key];
    EXPECT(v.is_string(), "{}:{}: key '{}' ({}) is a {}, not a string", o.name, row.line, key, option, v.type_name());
    return v.get<std::string>();
  };

  Workload w;
  PyRandom rng(py_seed(g.random_seed));  // the Python tool draws random task ids from its unseeded global RNG
  int64_t n_taken = 0;
  for (const DatasetRow& row : rows) {
    for (const char* k : {"image", "image_1", "video"}) {
      EXPECT(!row.value.contains(k), "{}:{}: multimodal rows (key '{}') are not supported", o.name, row.line, k);
    }
    const std::string prompt = has_prompt_key ? field(row, *o.prompt_key, "--dataset-prompt-key") : *o.prompt;
    const std::string text = prompt + ' ' + field(row, *o.input_key, "--dataset-input-key");
    std::vector<int32_t> ids = tok.encode(text, true);
    if (o.max_input_len && *o.max_input_len > 0 && static_cast<int64_t>(ids.size()) > *o.max_input_len) continue;
    w.input_ids.push_back(std::move(ids));
    if (!o.output_len_dist) {
      w.output_lens.push_back(
          static_cast<int64_t>(tok.encode(field(row, *o.output_key, "--dataset-output-key"), true).size()));
    }
    w.task_ids.push_back(g.rand_task_id ? rng.randint(g.rand_task_id->first, g.rand_task_id->second) : g.task_id);
    ++n_taken;
    if (o.num_requests && *o.num_requests > 0 && n_taken >= *o.num_requests) break;
  }
  const int64_t n = static_cast<int64_t>(w.input_ids.size());
  if (o.num_requests && *o.num_requests > 0 && n < *o.num_requests)
    log_warn("Number of requests={} is smaller than the num-requests user set={}.", n, *o.num_requests);
  if (o.output_len_dist)
    w.output_lens = norm_dist_lengths(o.output_len_dist->first, o.output_len_dist->second, n, g.random_seed);

  int64_t max_in = 0, max_out = 0;
  for (const auto& ids : w.input_ids) max_in = std::max<int64_t>(max_in, static_cast<int64_t>(ids.size()));
  for (const int64_t len : w.output_lens) max_out = std::max(max_out, len);
  w.metadata = {{"workload_type", std::string("dataset")},
                {"tokenizer", tok.class_name},
                {"num_requests", n},
                {"max_input_len", max_in},
                {"max_output_len", max_out}};
  return w;
}

std::string write_dataset_lines(const Workload& w) {
  CHECK(w.input_ids.size() == w.output_lens.size());
  std::string out;
  size_t n_ids = 0;
  for (const auto& ids : w.input_ids) n_ids += ids.size();
  out.reserve(n_ids * 7 + w.input_ids.size() * 64);
  for (size_t i = 0; i < w.input_ids.size(); ++i) {
    out += "{\"task_id\":";
    append_int(out, static_cast<int64_t>(i));
    out += ",\"input_ids\":";
    append_ids(out, w.input_ids[i], ",");
    out += ",\"output_tokens\":";
    append_int(out, w.output_lens[i]);
    out += "}\n";
  }
  return out;
}

std::string workload_file_json(const Workload& w) {
  CHECK(w.input_ids.size() == w.output_lens.size() && w.input_ids.size() == w.task_ids.size());
  std::string out = "{\"metadata\": {";
  std::string name;
  for (const auto& [key, value] : w.metadata) {
    append_py_json_string(out, key);
    out += ": ";
    if (const auto* i = std::get_if<int64_t>(&value)) {
      append_int(out, *i);
    } else {
      append_py_json_string(out, std::get<std::string>(value));
    }
    out += ", ";
    if (key != "tokenizer") name += (name.empty() ? "" : "__") + key + ":" + metadata_str(value);
  }
  out += "\"workload_name\": ";
  append_py_json_string(out, name);
  out += "}, \"samples\": [";
  for (size_t i = 0; i < w.input_ids.size(); ++i) {
    if (i) out += ", ";
    out += "{\"input_len\": ";
    append_int(out, static_cast<int64_t>(w.input_ids[i].size()));
    out += ", \"input_ids\": ";
    append_ids(out, w.input_ids[i], ", ");
    out += ", \"output_len\": ";
    append_int(out, w.output_lens[i]);
    out += ", \"task_id\": ";
    append_int(out, w.task_ids[i]);
    out += "}";
  }
  out += "]}";
  return out;
}

}  // namespace dsv3::tools
