// test_prepare_dataset.cpp: `dsv3 prepare-dataset` against an independent Python reference of TensorRT-LLM's
// generator (tests/unit/prepare_dataset_ref.py on CPython's random and numpy 1.24), byte for byte, for several seeds,
// both length distributions, both output formats and the real-data path; plus the generator's invariants and the
// errors for bad input (tests, label cpu). Tokenizer: the tests/data/tokenizer-tiny fixture (vocab_size 300, EOS 1);
// the cases on the real DeepSeek-V3 tokenizer skip when models/tokenizers/deepseek-v3 is absent (scripts/setup.sh).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "common/dataset_gen.h"
#include "dsv3/base/error.h"
#include "unit/subprocess_util.h"

namespace dsv3::tools {
namespace {

namespace fs = std::filesystem;
using test::run_command;
using test::shell_quote;

const std::string kRef = DSV3_SOURCE_DIR "/tests/unit/prepare_dataset_ref.py";
const std::string kTinyTok = DSV3_TEST_DATA "/tokenizer-tiny";
const std::string kDeepSeekTok = DSV3_SOURCE_DIR "/models/tokenizers/deepseek-v3";

std::string dsv3_bin() {
  const char* b = std::getenv("DSV3_BIN");
  return b && *b ? b : DSV3_BINARY_DIR "/tools/dsv3";
}

// Byte equality, reporting the first differing line instead of two multi-megabyte strings.
::testing::AssertionResult same_bytes(const std::string& want, const std::string& got) {
  if (want == got) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  const size_t line = std::count(want.begin(), want.begin() + i, '\n') + 1;
  return ::testing::AssertionFailure() << "outputs differ (reference " << want.size() << " bytes, dsv3 " << got.size()
                                       << ") at byte " << i << ", line " << line << ":\n  reference: ..."
                                       << want.substr(i > 40 ? i - 40 : 0, 100) << "\n  dsv3:      ..."
                                       << got.substr(i > 40 ? i - 40 : 0, 100);
}

struct RefCase {
  std::string tok, root, sub;  // --tokenizer, root options, subcommand with its options
  bool file_too = false;       // also compare the gptManagerBenchmark file (no --stdout)
};

// Runs every case through the reference (one python process for all) and through dsv3, with --stdout and, where
// asked, writing the file, and requires identical bytes.
void expect_same_as_reference(const std::vector<RefCase>& cases) {
  test::TempDir tmp;
  std::string batch;
  auto common = [](const RefCase& c) { return "--tokenizer " + shell_quote(c.tok) + " " + c.root + " "; };
  for (size_t i = 0; i < cases.size(); ++i) {
    const RefCase& c = cases[i];
    batch += fmt::format("{}\t{}--stdout {}\n", (tmp / fmt::format("{}.ref.txt", i)).string(), common(c), c.sub);
    if (c.file_too) {
      batch += fmt::format("{}\t{}--output {} {}\n", (tmp / fmt::format("{}.ref.log", i)).string(), common(c),
                           shell_quote((tmp / fmt::format("{}.ref.json", i)).string()), c.sub);
    }
  }
  test::write_file(tmp / "batch.txt", batch);
  const auto ref = run_command("/usr/bin/python3 " + shell_quote(kRef) + " --batch " + (tmp / "batch.txt").string());
  ASSERT_EQ(ref.rc, 0) << ref.err;
  for (size_t i = 0; i < cases.size(); ++i) {
    const RefCase& c = cases[i];
    SCOPED_TRACE(c.root + " " + c.sub);
    const std::string want = test::read_file(tmp / fmt::format("{}.ref.txt", i));
    ASSERT_FALSE(want.empty());
    const auto got = run_command(shell_quote(dsv3_bin()) + " prepare-dataset " + common(c) + "--stdout " + c.sub);
    ASSERT_EQ(got.rc, 0) << got.err;
    EXPECT_TRUE(same_bytes(want, got.out));
    if (!c.file_too) continue;
    // A parent folder that does not exist yet is created.
    const std::string got_file = (tmp / fmt::format("sub{}/dsv3.json", i)).string();
    const auto g2 = run_command(shell_quote(dsv3_bin()) + " prepare-dataset " + common(c) + "--output " +
                                shell_quote(got_file) + " " + c.sub);
    ASSERT_EQ(g2.rc, 0) << g2.err;
    EXPECT_TRUE(same_bytes(test::read_file(tmp / fmt::format("{}.ref.json", i)), test::read_file(got_file)));
  }
}

// ---- the tokenizer facts the generator needs ----

TEST(DatasetTokenizer, FixtureVocabSizeExcludesAddedTokensAndEosIsOne) {
  const DatasetTokenizer t = load_dataset_tokenizer(kTinyTok);
  EXPECT_EQ(t.vocab_size, 300);  // model.vocab; the added tokens 300 and 301 are not counted
  EXPECT_EQ(t.eos_ids, std::vector<int32_t>{1});
  EXPECT_EQ(t.eos_token, "<｜end▁of▁sentence｜>");
  EXPECT_EQ(t.class_name, "LlamaTokenizerFast");
}

TEST(DatasetTokenizer, DeepSeekV3) {
  if (!fs::exists(kDeepSeekTok + "/tokenizer.json")) GTEST_SKIP() << "no " << kDeepSeekTok << " (scripts/setup.sh)";
  const DatasetTokenizer t = load_dataset_tokenizer(kDeepSeekTok);
  EXPECT_EQ(t.vocab_size, 128000);  // added tokens reach id 128814 but HF's vocab_size is the BPE vocabulary
  EXPECT_EQ(t.eos_ids, std::vector<int32_t>{1});
}

TEST(DatasetTokenizer, HubNameThatIsNotCachedIsAClearError) {
  test::TempDir tmp;
  setenv("HF_HUB_CACHE", tmp.path().c_str(), 1);
  try {
    resolve_tokenizer_dir("deepseek-ai/DeepSeek-V3");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("downloads nothing"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("models--deepseek-ai--DeepSeek-V3"), std::string::npos) << e.what();
  }
  // A cached snapshot is found as AutoTokenizer would find it offline.
  const fs::path snap = tmp / "models--org--tok/snapshots/abc123";
  fs::create_directories(snap);
  fs::create_directories(tmp / "models--org--tok/refs");
  fs::copy_file(kTinyTok + "/tokenizer.json", snap / "tokenizer.json");
  test::write_file(tmp / "models--org--tok/refs/main", "abc123\n");
  EXPECT_EQ(resolve_tokenizer_dir("org/tok"), snap.string());
  unsetenv("HF_HUB_CACHE");
}

// ---- byte equality with the Python reference ----

TEST(PrepareDataset, NormDistMatchesReference) {
  std::vector<RefCase> cases;
  // Vocab 300: k <= 5 and 6..85 take random.sample's set branch, 86..299 its pool branch, >= 300 random.choices.
  cases.push_back({kTinyTok, "", "token-norm-dist --num-requests 40 --input-mean 100 --input-stdev 0 "
                                 "--output-mean 100 --output-stdev 0", true});
  for (const char* seed : {"420", "0", "1", "777", "4294967295"}) {
    cases.push_back({kTinyTok, std::string("--random-seed ") + seed,
                     "token-norm-dist --num-requests 60 --input-mean 150 --input-stdev 120 --output-mean 64 "
                     "--output-stdev 30"});
  }
  cases.push_back({kTinyTok, "--random-seed 9", "token-norm-dist --num-requests 1 --input-mean 4 --input-stdev 2 "
                                                "--output-mean 1 --output-stdev 0", true});
  // Every length >= vocab_size: the random.choices branch, where ids repeat and the EOS fold bites most.
  cases.push_back({kTinyTok, "--random-seed 5", "token-norm-dist --num-requests 12 --input-mean 700 --input-stdev 200 "
                                                "--output-mean 10 --output-stdev 3"});
  // Negative means and wide stdevs clamp to length 1.
  cases.push_back({kTinyTok, "", "token-norm-dist --num-requests 9 --input-mean -20 --input-stdev 25 "
                                 "--output-mean -1 --output-stdev 0"});
  // LoRA task ids are drawn after the tokens (file format only); dashed and underscore spellings both work.
  cases.push_back({kTinyTok, "--random_seed 31 --rand-task-id 2 11",
                   "token-norm-dist --num_requests 8 --input-mean 20 --input-stdev 5 --output-mean 9 --output-stdev 2",
                   true});
  cases.push_back({kTinyTok, "--task-id 7", "token-norm-dist --num-requests 3 --input-mean 20 --input-stdev 5 "
                                            "--output-mean 9 --output-stdev 2", true});
  expect_same_as_reference(cases);
}

TEST(PrepareDataset, UnifDistMatchesReference) {
  std::vector<RefCase> cases;
  for (const char* seed : {"420", "0", "123", "99999999999"}) {
    cases.push_back({kTinyTok, std::string("--random-seed ") + seed,
                     "token-unif-dist --num-requests 50 --input-min 1 --input-max 400 --output-min 1 "
                     "--output-max 2000"});
  }
  cases.push_back({kTinyTok, "", "token-unif-dist --num-requests 1 --input-min 300 --input-max 300 --output-min 7 "
                                 "--output-max 7", true});
  cases.push_back({kTinyTok, "--random-seed 3 --rand-task-id 0 1",
                   "token-unif-dist --num-requests 20 --input-min 0 --input-max 3 --output-min 1 --output-max 5",
                   true});
  expect_same_as_reference(cases);
}

TEST(PrepareDataset, DeepSeekV3RecipeCommandMatchesReference) {
  if (!fs::exists(kDeepSeekTok + "/tokenizer.json")) GTEST_SKIP() << "no " << kDeepSeekTok << " (scripts/setup.sh)";
  // The recipe's command with fewer requests; then long inputs for the pool branch (k > ~21,800 at vocab 128000).
  expect_same_as_reference({{kDeepSeekTok, "", "token-norm-dist --num-requests=64 --input-mean=1000 "
                                               "--output-mean=1000 --input-stdev=0 --output-stdev=0"},
                            {kDeepSeekTok, "--random-seed 11", "token-unif-dist --num-requests 6 --input-min 20000 "
                                                               "--input-max 40000 --output-min 1 --output-max 9"}});
}

// ---- invariants of the generated requests (independent of the reference) ----

TEST(PrepareDataset, RequestsObeyTheGeneratorRules) {
  const DatasetTokenizer tok = load_dataset_tokenizer(kTinyTok);
  const Workload w = token_norm_dist(tok, {}, {.num_requests = 200, .input_mean = 250, .input_stdev = 200,
                                               .output_mean = 50, .output_stdev = 20});
  ASSERT_EQ(w.input_ids.size(), 200u);
  // Reseeding before each length list: input and output lengths are the same z-scores.
  const auto lens_in = norm_dist_lengths(250, 200, 200, 420), lens_out = norm_dist_lengths(50, 20, 200, 420);
  int n_sample = 0, n_choices = 0;
  std::vector<int64_t> choice_counts(300, 0);
  int64_t n_choice_ids = 0;
  for (size_t i = 0; i < w.input_ids.size(); ++i) {
    const auto& ids = w.input_ids[i];
    EXPECT_EQ(static_cast<int64_t>(ids.size()), lens_in[i]);
    EXPECT_EQ(w.output_lens[i], lens_out[i]);
    EXPECT_GE(w.output_lens[i], 1);
    EXPECT_TRUE(std::all_of(ids.begin(), ids.end(), [](int32_t t) { return t >= 0 && t < 300; }));
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 0) << "EOS id 1 must have been replaced (request " << i << ")";
    if (ids.size() < 300) {
      ++n_sample;
      // random.sample never repeats an id; only the EOS fold (1 -> 2) can duplicate id 2.
      const size_t n_unique = std::set<int32_t>(ids.begin(), ids.end()).size();
      const bool folded_dup = n_unique + 1 == ids.size() && std::count(ids.begin(), ids.end(), 2) == 2;
      EXPECT_TRUE(n_unique == ids.size() || folded_dup) << "request " << i;
    } else {
      ++n_choices;
      for (const int32_t t : ids) ++choice_counts[t];
      n_choice_ids += static_cast<int64_t>(ids.size());
    }
  }
  // random.choices draws ids uniformly, and the EOS fold sends id 1's share to id 2: about twice the mean count.
  const double mean_count = static_cast<double>(n_choice_ids) / 299.0;
  EXPECT_GT(choice_counts[2], 1.5 * mean_count);
  EXPECT_LT(choice_counts[3], 1.5 * mean_count);
  EXPECT_GT(n_sample, 20);
  EXPECT_GT(n_choices, 20);
  // stdev 0: every length is the mean.
  const auto flat = norm_dist_lengths(1000, 0, 5, 1);
  EXPECT_EQ(flat, std::vector<int64_t>(5, 1000));
}

// ---- the `dataset` subcommand over local files, with a stand-in encoder shared with the reference ----

// prepare_dataset_ref.py's standin_encode: BOS 0 (with special tokens), then each UTF-8 byte + 3.
std::vector<int32_t> standin_encode(std::string_view text, bool add_special_tokens) {
  std::vector<int32_t> ids;
  if (add_special_tokens) ids.push_back(0);
  for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c) + 3);
  return ids;
}

struct RealCase {
  std::string file, root, sub;  // file name under the temp dir; CLI options for the reference
  GenOptions gen;
  RealDatasetOptions opts;
};

// The reference runs all cases in one process (both formats); dsv3's library runs them in-process with the same
// stand-in encoder, as `dsv3 prepare-dataset dataset` will once the real tokenizer is plugged in.
void expect_real_dataset_matches(const test::TempDir& tmp, const std::vector<RealCase>& cases) {
  std::string batch;
  auto common = [&](const RealCase& c) { return "--tokenizer " + shell_quote(kTinyTok) + " " + c.root + " "; };
  auto sub = [&](const RealCase& c) {
    return " dataset --dataset-name " + shell_quote((tmp / c.file).string()) + " --dataset-split train " + c.sub;
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    batch += fmt::format("{}\t{}--stdout{}\n", (tmp / fmt::format("{}.ref.txt", i)).string(), common(cases[i]),
                         sub(cases[i]));
    batch += fmt::format("{}\t{}--output {}{}\n", (tmp / fmt::format("{}.ref.log", i)).string(), common(cases[i]),
                         shell_quote((tmp / fmt::format("{}.ref.json", i)).string()), sub(cases[i]));
  }
  test::write_file(tmp / "batch.txt", batch);
  const auto ref = run_command("/usr/bin/python3 " + shell_quote(kRef) + " --batch " + (tmp / "batch.txt").string());
  ASSERT_EQ(ref.rc, 0) << ref.err;
  const DatasetTokenizer tok = load_dataset_tokenizer(kTinyTok, standin_encode);
  for (size_t i = 0; i < cases.size(); ++i) {
    const RealCase& c = cases[i];
    SCOPED_TRACE(c.file + " " + c.root + " " + c.sub);
    RealDatasetOptions o = c.opts;
    o.name = (tmp / c.file).string();
    const LocalDataset data = read_local_dataset(o.name, "train");
    const Workload w = real_dataset(tok, c.gen, o, data.rows);
    EXPECT_TRUE(same_bytes(test::read_file(tmp / fmt::format("{}.ref.txt", i)), write_dataset_lines(w)));
    EXPECT_TRUE(same_bytes(test::read_file(tmp / fmt::format("{}.ref.json", i)), workload_file_json(w)));
  }
}

TEST(PrepareDataset, RealDatasetFromLocalFilesMatchesReference) {
  test::TempDir tmp;
  test::write_file(tmp / "rows.json",
                   "[\n  {\"question\": \"What is 2+2?\", \"answer\": \"4\", \"sys\": \"Answer:\"},\n"
                   "  {\"question\": \"Name a colour \\\"quoted\\\" [x]\", \"answer\": \"blue, or red\", \"sys\": \"Q\"},\n"
                   "  {\"question\": \"Ünïcödé ✓ 漢字\", \"answer\": \"a much longer golden answer here\", "
                   "\"sys\": \"\"},\n"
                   "  {\"question\": \"x\", \"answer\": \"y\", \"sys\": \"z\"}\n]\n");
  test::write_file(tmp / "rows.jsonl",
                   "{\"q\": \"first prompt\", \"a\": \"one\"}\n\n{\"q\": \"second, longer prompt text\", \"a\": \"two\"}\n"
                   "{\"q\": \"third\", \"a\": \"three three three\"}\n");
  test::write_file(tmp / "rows.csv",
                   "q,a,extra\n\"hello, world\",\"multi\nline answer\",1\nplain,\"say \"\"hi\"\"\",2\r\nlast,z,3\n");
  RealCase json_case{"rows.json", "", "--dataset-input-key question --dataset-prompt-key sys --dataset-output-key answer",
                     {}, {}};
  json_case.opts.input_key = "question";
  json_case.opts.prompt_key = "sys";
  json_case.opts.output_key = "answer";
  RealCase capped = json_case;  // --max-input-len drops long prompts; --num-requests caps what is kept
  capped.sub += " --max-input-len 20 --num-requests 2";
  capped.opts.max_input_len = 20;
  capped.opts.num_requests = 2;

  RealCase jsonl_case{"rows.jsonl", "--random-seed 17 --rand-task-id 4 6",
                      "--dataset-input-key q --dataset-prompt 'Summarize:' --output-len-dist 100,20", {}, {}};
  jsonl_case.gen.random_seed = 17;
  jsonl_case.gen.rand_task_id = std::make_pair(int64_t{4}, int64_t{6});
  jsonl_case.opts.input_key = "q";
  jsonl_case.opts.prompt = "Summarize:";
  jsonl_case.opts.output_len_dist = parse_output_len_dist("100,20");

  RealCase csv_case{"rows.csv", "--task-id 3", "--dataset-input-key q --dataset-prompt P --dataset-output-key a",
                    {}, {}};
  csv_case.gen.task_id = 3;
  csv_case.opts.input_key = "q";
  csv_case.opts.prompt = "P";
  csv_case.opts.output_key = "a";
  expect_real_dataset_matches(tmp, {json_case, capped, jsonl_case, csv_case});
}

// ---- bad input ----

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_CONTAINS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

TEST(PrepareDataset, DatasetRowErrorsNameTheLineAndKey) {
  test::TempDir tmp;
  const DatasetTokenizer tok = load_dataset_tokenizer(kTinyTok, standin_encode);
  RealDatasetOptions o;
  o.input_key = "q";
  o.prompt = "P";
  o.output_key = "a";
  auto run = [&](const std::string& name, const std::string& text) {
    test::write_file(tmp / name, text);
    o.name = (tmp / name).string();
    const LocalDataset d = read_local_dataset(o.name, "train");
    real_dataset(tok, {}, o, d.rows);
  };
  std::string e = error_of([&] { run("a.jsonl", "{\"q\": \"x\", \"a\": \"y\"}\n\n{\"q\": \"x\"}\n"); });
  EXPECT_CONTAINS(e, "a.jsonl:3:");
  EXPECT_CONTAINS(e, "no key 'a'");
  EXPECT_CONTAINS(e, "--dataset-output-key");
  e = error_of([&] { run("b.json", "[{\"q\": \"x\", \"a\": \"y\"},\n\n  {\"a\": \"y\",\n \"z\": 1}]"); });
  EXPECT_CONTAINS(e, "b.json:3:");
  EXPECT_CONTAINS(e, "no key 'q'");
  EXPECT_CONTAINS(e, "its keys are: a, z");
  e = error_of([&] { run("c.csv", "q,a\nx,y\nonly-one-field\n"); });
  EXPECT_CONTAINS(e, "c.csv:3:");
  EXPECT_CONTAINS(e, "1 CSV fields, but the header has 2");
  e = error_of([&] { run("d.jsonl", "{\"q\": \"x\", \"a\": \"y\"}\n{\"q\": \"x\", \"a\": }\n"); });
  EXPECT_CONTAINS(e, "d.jsonl:2: invalid JSON");
  e = error_of([&] { run("e.jsonl", "{\"q\": 5, \"a\": \"y\"}\n"); });
  EXPECT_CONTAINS(e, "e.jsonl:1: key 'q'");
  EXPECT_CONTAINS(e, "not a string");
  e = error_of([&] { run("f.jsonl", "[1, 2]\n"); });
  EXPECT_CONTAINS(e, "f.jsonl:1: a row must be a JSON object");
  e = error_of([&] { run("g.json", "[{\"q\": \"x\", \"a\": \"y\"}\n"); });
  EXPECT_CONTAINS(e, "unexpected end of file");
  e = error_of([&] { run("h.csv", "q,a\n\"open,y\n"); });
  EXPECT_CONTAINS(e, "h.csv:2: unterminated quoted CSV field");
  o.output_key.reset();
  e = error_of([&] { run("i.jsonl", "{\"q\": \"x\", \"a\": \"y\"}\n"); });
  EXPECT_CONTAINS(e, "--dataset-output-key is not set");
  o.output_key = "a";
  o.prompt_key = "q";
  e = error_of([&] { run("j.jsonl", "{\"q\": \"x\", \"a\": \"y\"}\n"); });
  EXPECT_CONTAINS(e, "cannot be set at the same time");
  o.prompt_key.reset();
  e = error_of([&] { read_local_dataset((tmp / "a.jsonl").string(), "test"); });
  EXPECT_CONTAINS(e, "single split 'train'");
  e = error_of([] { parse_output_len_dist("100"); });
  EXPECT_CONTAINS(e, "Incorrect specification for --output-len-dist");
  EXPECT_EQ(parse_output_len_dist("100,10tail"), (std::pair<int64_t, int64_t>{100, 10}));  // re.match semantics
  const DatasetTokenizer no_encoder = load_dataset_tokenizer(kTinyTok);
  e = error_of([&] { real_dataset(no_encoder, {}, o, {}); });
  EXPECT_CONTAINS(e, "needs the tokenizer's encoder");
}

TEST(PrepareDataset, BadCommandLinesGiveClearErrors) {
  const std::string bin = shell_quote(dsv3_bin()) + " prepare-dataset ";
  const std::string tok = "--tokenizer " + shell_quote(kTinyTok) + " --stdout ";
  struct Case {
    std::string args, message;
  };
  test::TempDir tmp;
  const std::vector<Case> cases = {
      {tok + "token-norm-dist --num-requests 3 --input-mean 5 --input-stdev 0 --output-mean 5", "--output-stdev"},
      {"--stdout token-norm-dist --num-requests 3 --input-mean 5 --input-stdev 0 --output-mean 5 --output-stdev 0",
       "--tokenizer"},
      {tok, "subcommand"},
      {tok + "token-unif-dist --num-requests 3 --input-min 9 --input-max 3 --output-min 1 --output-max 2",
       "--input-min 9 > --input-max 3"},
      {tok + "token-unif-dist --num-requests 3 --input-min 1 --input-max 3 --output-min 8 --output-max 2",
       "--output-min 8 > --output-max 2"},
      {tok + "token-norm-dist --num-requests=-2 --input-mean 5 --input-stdev 0 --output-mean 5 --output-stdev 0",
       "--num-requests must be >= 1, got -2"},
      {tok + "token-norm-dist --num-requests=0 --input-mean 5 --input-stdev 0 --output-mean 5 --output-stdev 0",
       "--num-requests must be >= 1, got 0"},
      {tok + "token-norm-dist --num-requests 2 --input-mean 5 --input-stdev=-1 --output-mean 5 --output-stdev 0",
       "--input-stdev must be >= 0"},
      {tok + "token-unif-dist --num-requests 2 --input-min=-1 --input-max 3 --output-min 1 --output-max 2",
       "--input-min must be >= 0"},
      {tok + "--random-seed=-4 token-norm-dist --num-requests 2 --input-mean 5 --input-stdev 1 --output-mean 5 "
             "--output-stdev 0",
       "0 <= seed < 2**32"},
      {tok + "--rand-task-id 5 1 token-norm-dist --num-requests 2 --input-mean 5 --input-stdev 1 --output-mean 5 "
             "--output-stdev 0",
       "--rand-task-id: min 5 > max 1"},
      {"--tokenizer /nonexistent/tok --stdout token-norm-dist --num-requests 1 --input-mean 5 --input-stdev 0 "
       "--output-mean 5 --output-stdev 0",
       "is not a local folder"},
      {tok + "dataset --dataset-name cnn_dailymail --dataset-split train --dataset-input-key article "
             "--dataset-prompt x --output-len-dist 5,1",
       "'cnn_dailymail' is not a local file; dsv3 downloads nothing"},
      {tok + "dataset --dataset-name " + shell_quote(tmp.path().string()) +
           " --dataset-split train --dataset-input-key q --dataset-prompt x --output-len-dist 5,1",
       "is not a regular file"},
      {tok + "dataset --dataset-name " + shell_quote(kTinyTok + "/tokenizer.json") +
           " --dataset-split validation --dataset-input-key q --dataset-prompt x --output-len-dist 5,1",
       "single split 'train'"},
      {tok + "dataset --dataset-name " + shell_quote(kTinyTok + "/tokenizer.json") +
           " --dataset-split train --dataset-input-key q --dataset-prompt x --output-len-dist 5",
       "Incorrect specification for --output-len-dist"},
  };
  for (const Case& c : cases) {
    const auto r = run_command(bin + c.args);
    EXPECT_NE(r.rc, 0) << c.args;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\nstderr: " << r.err;
    EXPECT_TRUE(r.out.empty()) << c.args;
  }
}

}  // namespace
}  // namespace dsv3::tools
