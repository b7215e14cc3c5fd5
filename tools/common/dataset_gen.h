// dataset_gen.h: the request generators of TensorRT-LLM's prepare_dataset.py and its two output formats
// (tools/common). token-norm-dist / token-unif-dist / dataset produce a Workload; write_dataset_lines gives the
// JSON lines that `--stdout` prints and trtllm-bench reads (interfaces.md §1.2), workload_file_json the
// gptManagerBenchmark document written to --output (§1.3). Same options and seed -> the same bytes as the Python tool.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/dataset_file.h"
#include "common/dataset_tokenizer.h"
#include "common/py_random.h"

namespace dsv3::tools {

using MetadataValue = std::variant<int64_t, std::string>;

struct Workload {
  std::vector<std::vector<int32_t>> input_ids;  // [n_requests][input_len]
  std::vector<int64_t> output_lens;             // [n_requests]
  std::vector<int64_t> task_ids;                // [n_requests] LoRA task ids (file format only)
  std::vector<std::pair<std::string, MetadataValue>> metadata;  // in the tool's key order
};

// Root options shared by the subcommands.
struct GenOptions {
  int64_t random_seed = 420;
  int64_t task_id = -1;
  std::optional<std::pair<int64_t, int64_t>> rand_task_id;  // inclusive [min, max]
};

// np.random.seed(seed); [max(1, ceil(x)) for x in np.random.normal(mean, stdev, n)].
std::vector<int64_t> norm_dist_lengths(int64_t mean, int64_t stdev, int64_t n, int64_t seed);
// np.random.default_rng(seed).integers(min, max + 1, n).
std::vector<int64_t> unif_dist_lengths(int64_t min, int64_t max, int64_t n, int64_t seed);
// gen_random_tokens: per length, random.sample(range(vocab_size), len) (random.choices once len >= vocab_size), then
// every eos_ids[0] becomes (eos_ids[0] + 1) % vocab_size while all eos ids occur. `rng` carries across requests.
std::vector<std::vector<int32_t>> gen_random_tokens(std::span<const int64_t> lens, int64_t vocab_size,
                                                    std::span<const int32_t> eos_ids, PyRandom& rng);

struct NormDistOptions {
  int64_t num_requests = 0, input_mean = 0, input_stdev = 0, output_mean = 0, output_stdev = 0;
};
struct UnifDistOptions {
  int64_t num_requests = 0, input_min = 0, input_max = 0, output_min = 0, output_max = 0;
};
struct RealDatasetOptions {
  std::string name;  // the local file; labels error messages
  std::optional<std::string> input_key, prompt_key, prompt, output_key;
  std::optional<int64_t> num_requests;   // cap; 0 or absent = all rows
  std::optional<int64_t> max_input_len;  // filter; 0 or absent = no filter
  std::optional<std::pair<int64_t, int64_t>> output_len_dist;  // (mean, stdev)
};

// "--output-len-dist" as the tool reads it: re.match(r"(\d+),(\d+)", value).
std::pair<int64_t, int64_t> parse_output_len_dist(const std::string& value);

Workload token_norm_dist(const DatasetTokenizer& tok, const GenOptions& g, const NormDistOptions& o);
Workload token_unif_dist(const DatasetTokenizer& tok, const GenOptions& g, const UnifDistOptions& o);
// Needs tok.encode. Prompt = prompt + ' ' + input, encoded with special tokens; the output length is the token count
// of the output text (special tokens included) unless output_len_dist is given.
Workload real_dataset(const DatasetTokenizer& tok, const GenOptions& g, const RealDatasetOptions& o,
                      std::span<const DatasetRow> rows);

// print(json.dumps({"task_id": i, "input_ids": [...], "output_tokens": n}, separators=(',', ':'))) per request.
std::string write_dataset_lines(const Workload& w);
// json.dump({"metadata": {..., "workload_name": ...}, "samples": [{input_len, input_ids, output_len, task_id}]})
// with Python's default separators and ensure_ascii; no trailing newline.
std::string workload_file_json(const Workload& w);

}  // namespace dsv3::tools
