// bench_dataset.h: the dataset file of `dsv3 bench` (tools/common), read as trtllm-bench reads it (interfaces.md
// §2.3): JSON lines, one request object per line with `task_id`, `output_tokens` and `input_ids` (alias `logits`)
// or `prompt` (tokenized by the caller's callback). Errors name the file, the 1-based line and the key.
// Unknown keys (lora_request, category, ...) are ignored, as trtllm-bench does.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "common/bench_percentiles.h"

namespace dsv3 {

struct BenchRequest {
  int64_t task_id = 0;
  std::vector<int32_t> input_ids;  // [isl]
  int64_t output_tokens = 0;       // exactly this many tokens are generated (EOS ignored)
  int64_t line = 0;                // 1-based line of the dataset file, for messages
};

// trtllm-bench's DatasetMetadata: percentile statistics of ISL, OSL and ISL+OSL (§2.4 "DATASET DETAILS").
struct DatasetStats {
  PercentileStats isl, osl, seq_len;
  int64_t num_requests = 0;
  std::string dataset_path;

  int64_t max_isl() const { return static_cast<int64_t>(isl.maximum); }
  int64_t max_osl() const { return static_cast<int64_t>(osl.maximum); }
  int64_t max_sequence_length() const { return static_cast<int64_t>(seq_len.maximum); }
  int64_t avg_isl() const { return static_cast<int64_t>(isl.average); }
  int64_t avg_osl() const { return static_cast<int64_t>(osl.average); }
  int64_t avg_sequence_length() const { return static_cast<int64_t>(seq_len.average); }
};

struct DatasetReadOptions {
  int64_t num_requests = 0;            // > 0: stop after this many lines (--num_requests); 0: the whole file
  std::optional<int64_t> max_seq_len;  // isl + output_tokens must fit (--max_seq_len / YAML max_seq_len)
  std::optional<int64_t> vocab_size;   // input ids must be < vocab_size
  // Tokenizes a `prompt` row the way HF's tokenizer __call__ does (special tokens added). Unset: prompt rows are
  // an error that says so.
  std::function<std::vector<int32_t>(const std::string& prompt)> tokenize;
};

struct BenchDataset {
  std::string path;
  std::vector<BenchRequest> requests;  // in file order
};

// Reads `path`; throws dsv3::Error "<path>:<line>: <key>: <problem>" on the first bad line.
BenchDataset read_bench_dataset(const std::string& path, const DatasetReadOptions& opts = {});
// Same over a stream; `source` stands for the path in messages and in the result.
BenchDataset parse_bench_dataset(std::istream& in, const std::string& source, const DatasetReadOptions& opts = {});

DatasetStats dataset_stats(const BenchDataset& ds);

// The warm-up requests: `n` indices into the dataset drawn uniformly with replacement (trtllm-bench samples its
// --warmup requests the same way), deterministic for a seed.
std::vector<size_t> warmup_indices(size_t dataset_size, int64_t n, uint64_t seed = 0);

}  // namespace dsv3
