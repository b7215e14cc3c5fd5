// test_bench_dataset.cpp: the bench dataset reader (tools/common/bench_dataset): a good file in prepare-dataset's
// format (written here by Python's json.dumps, as prepare_dataset.py writes it), the `logits` alias, `prompt` rows,
// --num_requests, the dataset statistics, and errors naming the line and key.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/bench_dataset.h"
#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

BenchDataset parse(const std::string& text, const DatasetReadOptions& opts = {}) {
  std::istringstream in(text);
  return parse_bench_dataset(in, "data.jsonl", opts);
}

std::string error_of(const std::string& text, const DatasetReadOptions& opts = {}) {
  try {
    parse(text, opts);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR(text, opts, ...)                                                           \
  do {                                                                                          \
    const std::string msg_ = error_of(text, opts);                                              \
    ASSERT_FALSE(msg_.empty()) << "no error for:\n" << text;                                    \
    for (const char* part_ : {__VA_ARGS__})                                                     \
      EXPECT_NE(msg_.find(part_), std::string::npos) << "[" << part_ << "] not in: " << msg_;  \
  } while (0)

TEST(BenchDataset, ReadsPrepareDatasetOutput) {
  // Three rows as prepare_dataset.py --stdout prints them: json.dumps(..., separators=(',', ':')).
  const std::string path = (std::filesystem::temp_directory_path() / "dsv3_test_bench_dataset.jsonl").string();
  const std::string py =
      "import json\n"
      "rows = [{'task_id': 0, 'input_ids': [86120, 9313, 47011, 1204, 77730], 'output_tokens': 7},\n"
      "        {'task_id': 1, 'input_ids': [5, 6, 7], 'output_tokens': 1},\n"
      "        {'task_id': 2, 'input_ids': [1, 2, 3, 4], 'output_tokens': 12}]\n"
      "with open('" + path + "', 'w') as f:\n"
      "    for r in rows: f.write(json.dumps(r, separators=(',', ':'), ensure_ascii=False) + '\\n')\n";
  ASSERT_EQ(std::system(("python3 -c \"" + py + "\"").c_str()), 0);
  const BenchDataset ds = read_bench_dataset(path);
  ASSERT_EQ(ds.requests.size(), 3u);
  EXPECT_EQ(ds.path, path);
  EXPECT_EQ(ds.requests[0].input_ids, (std::vector<int32_t>{86120, 9313, 47011, 1204, 77730}));
  EXPECT_EQ(ds.requests[0].output_tokens, 7);
  EXPECT_EQ(ds.requests[1].task_id, 1);
  EXPECT_EQ(ds.requests[2].line, 3);

  // ISL [5, 3, 4], OSL [7, 1, 12], ISL+OSL [12, 4, 16]; nearest rank: p50 = sorted[1], p90.. = sorted[2].
  const DatasetStats st = dataset_stats(ds);
  EXPECT_EQ(st.num_requests, 3);
  EXPECT_EQ(st.isl.p50, 4);
  EXPECT_EQ(st.isl.p90, 5);
  EXPECT_EQ(st.isl.minimum, 3);
  EXPECT_DOUBLE_EQ(st.isl.average, 4.0);
  EXPECT_EQ(st.osl.p50, 7);
  EXPECT_EQ(st.osl.p99, 12);
  EXPECT_DOUBLE_EQ(st.osl.average, 20.0 / 3.0);
  EXPECT_EQ(st.seq_len.p50, 12);
  EXPECT_EQ(st.max_sequence_length(), 16);
  EXPECT_EQ(st.avg_osl(), 6);  // int(6.67)
  EXPECT_EQ(st.avg_sequence_length(), 10);  // int(32 / 3)
  std::filesystem::remove(path);
  EXPECT_THROW(read_bench_dataset(path), Error);  // gone: "cannot read"
}

TEST(BenchDataset, AliasesPromptsAndUnknownKeys) {
  // `logits` is an alias of input_ids; unknown keys (lora_request, category) are ignored; CRLF is fine.
  const BenchDataset ds = parse(
      "{\"task_id\":4,\"logits\":[9,8],\"output_tokens\":3,\"lora_request\":{\"lora_name\":\"x\"}}\r\n"
      "{\"task_id\":5,\"input_ids\":[1],\"logits\":[7,7,7],\"output_tokens\":2,\"category\":\"math\"}\n");
  EXPECT_EQ(ds.requests[0].input_ids, (std::vector<int32_t>{9, 8}));
  EXPECT_EQ(ds.requests[1].input_ids, (std::vector<int32_t>{1}));  // input_ids wins over logits

  // `prompt` rows go through the caller's tokenizer (here: one id per byte, plus a BOS of 0).
  DatasetReadOptions opts;
  opts.tokenize = [](const std::string& s) {
    std::vector<int32_t> ids = {0};
    for (unsigned char c : s) ids.push_back(c);
    return ids;
  };
  const BenchDataset pd = parse("{\"task_id\":0,\"prompt\":\"Hi\",\"output_tokens\":5}\n", opts);
  EXPECT_EQ(pd.requests[0].input_ids, (std::vector<int32_t>{0, 'H', 'i'}));
  EXPECT_ERROR("{\"task_id\":0,\"prompt\":\"Hi\",\"output_tokens\":5}\n", DatasetReadOptions{}, "data.jsonl:1",
               "'prompt'", "tokenizer");
}

TEST(BenchDataset, NumRequestsStopsReading) {
  DatasetReadOptions opts;
  opts.num_requests = 2;
  // Line 3 is not even JSON: reading stops after two lines, as trtllm-bench does.
  const BenchDataset ds = parse(
      "{\"task_id\":0,\"input_ids\":[1],\"output_tokens\":1}\n"
      "{\"task_id\":1,\"input_ids\":[2],\"output_tokens\":1}\n"
      "not json\n",
      opts);
  EXPECT_EQ(ds.requests.size(), 2u);
  opts.num_requests = 10;  // more than the file has: all of it
  EXPECT_EQ(parse("{\"task_id\":0,\"input_ids\":[1],\"output_tokens\":1}\n", opts).requests.size(), 1u);
}

TEST(BenchDataset, ErrorsNameLineAndKey) {
  const std::string good = "{\"task_id\":0,\"input_ids\":[1,2,3],\"output_tokens\":4}\n";
  const DatasetReadOptions none;
  EXPECT_ERROR(good + "{\"task_id\":1,\"input_ids\":[1,2,3]}\n", none, "data.jsonl:2",
               "missing required key 'output_tokens'");
  EXPECT_ERROR(good + good + "{\"task_id\":2,\"input_ids\":[1,2,3],\"output_tokens\":4\n", none, "data.jsonl:3",
               "bad JSON");
  EXPECT_ERROR("{\"task_id\":0,\"input_ids\":[],\"output_tokens\":4}\n", none, "data.jsonl:1", "'input_ids' is empty");
  EXPECT_ERROR("{\"task_id\":0,\"logits\":[],\"output_tokens\":4}\n", none, "data.jsonl:1", "'logits' is empty");
  EXPECT_ERROR(good + "\n" + good, none, "data.jsonl:2", "blank line");
  EXPECT_ERROR("{\"input_ids\":[1],\"output_tokens\":4}\n", none, "data.jsonl:1", "'task_id'");
  EXPECT_ERROR("{\"task_id\":\"a\",\"input_ids\":[1],\"output_tokens\":4}\n", none, "'task_id' must be an integer");
  EXPECT_ERROR("{\"task_id\":0,\"input_ids\":[1],\"output_tokens\":0}\n", none, "'output_tokens' must be >= 1");
  EXPECT_ERROR("{\"task_id\":0,\"input_ids\":[1],\"output_tokens\":2.5}\n", none, "'output_tokens' must be an integer");
  EXPECT_ERROR("{\"task_id\":0,\"output_tokens\":2}\n", none, "data.jsonl:1", "missing 'input_ids'", "'logits'",
               "'prompt'");
  EXPECT_ERROR("{\"task_id\":0,\"input_ids\":[1,-2],\"output_tokens\":2}\n", none, "'input_ids'[1] = -2");
  EXPECT_ERROR("{\"task_id\":0,\"input_ids\":[1,\"x\"],\"output_tokens\":2}\n", none, "'input_ids'[1]", "integer");
  EXPECT_ERROR("{\"task_id\":0,\"input_ids\":\"1 2\",\"output_tokens\":2}\n", none, "'input_ids' must be a list");
  EXPECT_ERROR("[1,2]\n", none, "data.jsonl:1", "expected a JSON object");
  EXPECT_ERROR("", none, "no requests");
  EXPECT_ERROR("{\"task_id\":0,\"prompt\":\"x\",\"media_paths\":[\"a.png\"],\"output_tokens\":2}\n", none,
               "'media_paths'", "multimodal");

  // Over-long requests against max_seq_len, and ids outside the vocabulary.
  DatasetReadOptions opts;
  opts.max_seq_len = 10;
  EXPECT_ERROR(good + "{\"task_id\":1,\"input_ids\":[1,2,3,4,5,6,7,8],\"output_tokens\":5}\n", opts, "data.jsonl:2",
               "request too long", "'input_ids' has 8 tokens + 'output_tokens' 5 = 13 > max_seq_len 10");
  EXPECT_NO_THROW(parse("{\"task_id\":1,\"input_ids\":[1,2,3,4,5],\"output_tokens\":5}\n", opts));  // exactly 10
  DatasetReadOptions vocab;
  vocab.vocab_size = 100;
  EXPECT_ERROR(good + "{\"task_id\":1,\"input_ids\":[1,100],\"output_tokens\":5}\n", vocab, "data.jsonl:2",
               "'input_ids'[1] = 100 is outside the vocabulary (vocab_size 100)");
}

TEST(BenchDataset, WarmupIndices) {
  const std::vector<size_t> a = warmup_indices(5, 1000, 3), b = warmup_indices(5, 1000, 3);
  EXPECT_EQ(a, b);  // deterministic
  ASSERT_EQ(a.size(), 1000u);
  std::vector<int> seen(5, 0);
  for (size_t i : a) {
    ASSERT_LT(i, 5u);
    ++seen[i];
  }
  for (int c : seen) EXPECT_GT(c, 100);  // with replacement, every row drawn (expected 200 each)
  EXPECT_TRUE(warmup_indices(5, 0).empty());
}

}  // namespace
}  // namespace dsv3
