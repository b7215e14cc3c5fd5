// test_bench_report.cpp: trtllm-bench report math (tools/common/bench_report): nearest-rank percentiles, run
// totals, TTFT/TPOT/per-user formulas on a worked example, the §2.5 key set and nesting, the E2 console labels in
// section order, the writers, and a randomized run checked against a Python reference written here from the spec.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "common/bench_report.h"
#include "common/bench_writers.h"
#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

using ojson = nlohmann::ordered_json;
constexpr int64_t kMs = 1000000;        // ns per ms
constexpr int64_t kBase = 5000000000000;  // an arbitrary clock origin: only differences may matter

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("dsv3_test_bench_report_" + name)).string();
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr) << cmd;
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << cmd << "\n" << out;
  return out;
}

std::vector<std::string> keys_of(const ojson& j) {
  std::vector<std::string> k;
  for (auto it = j.begin(); it != j.end(); ++it) k.push_back(it.key());
  return k;
}

const std::vector<std::string> kPctKeys = {"p50", "p90", "p95", "p99", "minimum", "maximum", "average"};

TEST(Percentiles, NearestRankOnKnownLists) {
  // 1..100 shuffled: sorted[int(100*q)] = 51, 91, 96, 100.
  std::vector<int64_t> v(100);
  for (int i = 0; i < 100; ++i) v[i] = i + 1;
  std::shuffle(v.begin(), v.end(), std::mt19937(7));
  PercentileStats s = percentile_stats(v);
  EXPECT_EQ(s.p50, 51);
  EXPECT_EQ(s.p90, 91);
  EXPECT_EQ(s.p95, 96);
  EXPECT_EQ(s.p99, 100);
  EXPECT_EQ(s.minimum, 1);
  EXPECT_EQ(s.maximum, 100);
  EXPECT_DOUBLE_EQ(s.average, 50.5);

  // Four values: int(4*0.5)=2, int(3.6)=3, int(3.8)=3, int(3.96)=3 -> no interpolation, upper neighbours.
  s = percentile_stats(std::vector<double>{2.5, 0.5, 10.0, 4.0});
  EXPECT_EQ(s.p50, 4.0);
  EXPECT_EQ(s.p90, 10.0);
  EXPECT_EQ(s.p95, 10.0);
  EXPECT_EQ(s.p99, 10.0);
  EXPECT_EQ(s.minimum, 0.5);
  EXPECT_DOUBLE_EQ(s.average, 17.0 / 4.0);

  // One value: every statistic is that value.
  s = percentile_stats(std::vector<int64_t>{42});
  EXPECT_EQ(s, (PercentileStats{42, 42, 42, 42, 42, 42, 42}));
  EXPECT_THROW(percentile_stats(std::vector<double>{}), Error);
}

TEST(Percentiles, RankIndexMatchesPythonInt) {
  // Python's int(n*q) for n = 1..1000, computed by python3 itself (double arithmetic, truncation).
  const std::string out = run_command(
      "python3 -c \"print(' '.join(str(int(n*q)) for n in range(1,1001) for q in (0.5,0.9,0.95,0.99)))\"");
  std::istringstream in(out);
  for (size_t n = 1; n <= 1000; ++n)
    for (double q : {0.5, 0.9, 0.95, 0.99}) {
      size_t expect = 0;
      ASSERT_TRUE(in >> expect);
      ASSERT_EQ(nearest_rank_index(n, q), expect) << "n=" << n << " q=" << q;
    }
}

// The worked example: four timed streaming requests (times in ms from the first start) and one warm-up.
//   id  start  first  end   isl  osl | e2e   ttft  tpot                 gen tok/s       per-user tok/s
//   0   0      100    1100  10   11  | 1100  100   1000/10 = 100        10/1.0 = 10     11/1.1 = 10
//   1   0      200    2200  20   21  | 2200  200   2000/20 = 100        20/2.0 = 10     21/2.2
//   2   1000   1500   3500  30   5   | 2500  500   2000/4  = 500        4/2.0  = 2      5/2.5  = 2
//   3   2000   2100   4000  40   1   | 2000  100   0 (one token)        0               1/2.0  = 0.5
std::vector<RequestRecord> worked_records() {
  auto rec = [](int64_t id, int64_t s, int64_t f, int64_t e, int64_t isl, int64_t osl) {
    RequestRecord r;
    r.id = id;
    r.start_ns = kBase + s * kMs;
    r.first_token_ns = kBase + f * kMs;
    r.end_ns = kBase + e * kMs;
    r.num_input_tokens = isl;
    r.num_output_tokens = osl;
    r.decode_iteration = osl - 1;
    for (int64_t i = 0; i < osl; ++i) r.tokens.push_back(static_cast<int32_t>(100 + i));
    return r;
  };
  std::vector<RequestRecord> v = {rec(2, 1000, 1500, 3500, 30, 5), rec(0, 0, 100, 1100, 10, 11),
                                  rec(1, 0, 200, 2200, 20, 21), rec(3, 2000, 2100, 4000, 40, 1)};
  RequestRecord warm = rec(99, -5000, -4000, 9000, 1000, 1000);  // would change every number if counted
  warm.warmup = true;
  v.push_back(warm);
  return v;
}

DatasetStats worked_dataset() {
  DatasetStats d;
  d.isl = percentile_stats(std::vector<int64_t>{10, 20, 30, 40});
  d.osl = percentile_stats(std::vector<int64_t>{11, 21, 5, 1});
  d.seq_len = percentile_stats(std::vector<int64_t>{21, 41, 35, 41});
  d.num_requests = 4;
  d.dataset_path = "/data/dataset.txt";
  return d;
}

BenchRunInfo worked_info(bool streaming) {
  BenchRunInfo info;
  info.model = "deepseek-ai/DeepSeek-V3";
  info.model_path = "/models/tiny";
  info.version = "dsv3 0.1";
  info.dtype = "bfloat16";
  info.quantization = "FP8_BLOCK_SCALES";
  info.tp_size = 2;
  info.max_batch_size = 161;
  info.max_num_tokens = 1160;
  info.kv_cache_percentage = 0.95;
  info.streaming = streaming;
  return info;
}

TEST(BenchStatistics, WorkedExample) {
  const BenchStatistics st = compute_bench_statistics(worked_records());
  EXPECT_EQ(st.num_requests, 4);
  EXPECT_EQ(st.total_input_tokens, 100);
  EXPECT_EQ(st.total_output_tokens, 38);
  EXPECT_EQ(st.total_latency_ns, 4000 * kMs);
  EXPECT_DOUBLE_EQ(st.request_throughput_per_s(), 1.0);              // 4 / 4 s
  EXPECT_DOUBLE_EQ(st.output_throughput_tok_per_s(), 9.5);           // 38 / 4 s
  EXPECT_DOUBLE_EQ(st.total_token_throughput_tok_per_s(), 34.5);     // 138 / 4 s
  EXPECT_DOUBLE_EQ(st.avg_concurrent_requests, 1.95);                // 7800 / 4000
  EXPECT_DOUBLE_EQ(st.issue_rate_ns, 500.0 * kMs);                   // (2000 - 0) ms / 4
  // Latencies sorted [1100, 2000, 2200, 2500] ms.
  EXPECT_EQ(st.request_latency_ns.p50, 2200.0 * kMs);
  EXPECT_EQ(st.request_latency_ns.p90, 2500.0 * kMs);
  EXPECT_EQ(st.request_latency_ns.minimum, 1100.0 * kMs);
  EXPECT_DOUBLE_EQ(st.request_latency_ns.average, 1950.0 * kMs);
  // TTFT sorted [100, 100, 200, 500]; TPOT sorted [0, 100, 100, 500].
  EXPECT_EQ(st.ttft_ns.p50, 200.0 * kMs);
  EXPECT_DOUBLE_EQ(st.ttft_ns.average, 225.0 * kMs);
  EXPECT_EQ(st.tpot_ns.minimum, 0.0);
  EXPECT_EQ(st.tpot_ns.p50, 100.0 * kMs);
  EXPECT_DOUBLE_EQ(st.tpot_ns.average, 175.0 * kMs);
  EXPECT_DOUBLE_EQ(st.gen_tps_per_ns.average * 1e9, 5.5);  // (10 + 10 + 2 + 0) / 4
  EXPECT_NEAR(st.output_tps_per_user_per_ns.average * 1e9, (10.0 + 21.0 / 2.2 + 2.0 + 0.5) / 4, 1e-12);
  EXPECT_FALSE(st.num_draft_tokens.has_value());

  // Only warm-up requests -> nothing to report.
  std::vector<RequestRecord> warm = worked_records();
  for (auto& r : warm) r.warmup = true;
  EXPECT_THROW(compute_bench_statistics(warm), Error);
}

TEST(BenchStatistics, SpeculativeDecoding) {
  // MTP with 3 draft tokens: a request of 11 tokens in 5 iterations drafted 15, accepted 11 - 5 = 6.
  RequestRecord r;
  r.id = 0, r.start_ns = 0, r.first_token_ns = 10, r.end_ns = 110, r.num_input_tokens = 4, r.num_output_tokens = 11;
  r.decode_iteration = 4;
  RequestRecord r2 = r;
  r2.id = 1, r2.num_output_tokens = 5, r2.decode_iteration = 4;  // no draft accepted: 5 tokens in 5 iterations
  const BenchStatistics st = compute_bench_statistics({r, r2}, 3);
  ASSERT_TRUE(st.num_draft_tokens && st.num_accepted_draft_tokens && st.draft_acceptance_rate &&
              st.acceptance_length);
  EXPECT_EQ(st.num_draft_tokens->maximum, 15);
  EXPECT_EQ(st.num_accepted_draft_tokens->maximum, 6);
  EXPECT_EQ(st.num_accepted_draft_tokens->minimum, 0);
  EXPECT_DOUBLE_EQ(st.draft_acceptance_rate->average, (6.0 / 15.0 + 0.0) / 2);
  EXPECT_DOUBLE_EQ(st.acceptance_length->maximum, 11.0 / 5.0);
  EXPECT_DOUBLE_EQ(st.global_acceptance_length, 16.0 / 10.0);
}

TEST(BenchReportJson, EveryKeyWithItsNesting) {
  const BenchStatistics st = compute_bench_statistics(worked_records());
  BenchRunInfo info = worked_info(true);
  info.decoding_mode = "MTP";
  const ojson d = bench_statistics_json(info, st, worked_dataset());
  EXPECT_EQ(keys_of(d), (std::vector<std::string>{"engine", "world_info", "request_info", "performance",
                                                  "streaming_metrics", "decoding_stats", "dataset"}));
  EXPECT_EQ(keys_of(d["engine"]), (std::vector<std::string>{"model", "model_path", "engine_dir", "version", "backend",
                                                            "dtype", "kv_cache_dtype", "quantization"}));
  EXPECT_EQ(keys_of(d["world_info"]),
            (std::vector<std::string>{"tp_size", "pp_size", "ep_size", "world_size", "max_batch_size",
                                      "max_num_tokens", "scheduling_policy", "kv_cache_percentage", "issue_rate"}));
  EXPECT_EQ(keys_of(d["request_info"]), (std::vector<std::string>{"num_requests", "avg_num_concurrent_requests",
                                                                  "avg_input_length", "avg_output_length"}));
  EXPECT_EQ(keys_of(d["performance"]),
            (std::vector<std::string>{"total_latency_ms", "avg_request_latency_ms", "request_throughput_req_s",
                                      "system_output_throughput_tok_s", "system_total_throughput_tok_s",
                                      "output_throughput_per_user_tok_s", "output_throughput_per_gpu_tok_s",
                                      "request_latency_percentiles_ms"}));
  EXPECT_EQ(keys_of(d["performance"]["request_latency_percentiles_ms"]), kPctKeys);
  EXPECT_EQ(keys_of(d["streaming_metrics"]),
            (std::vector<std::string>{"token_output_speed_tok_s", "avg_ttft_ms", "avg_tpot_ms", "tpot_percentiles",
                                      "ttft_percentiles", "gen_tps_percentiles"}));
  for (const char* k : {"tpot_percentiles", "ttft_percentiles", "gen_tps_percentiles"})
    EXPECT_EQ(keys_of(d["streaming_metrics"][k]), kPctKeys) << k;
  EXPECT_EQ(keys_of(d["decoding_stats"]),
            (std::vector<std::string>{"mode", "num_draft_tokens_percentiles", "num_accepted_draft_tokens_percentiles",
                                      "draft_acceptance_rate_percentiles", "acceptance_length_percentiles"}));
  EXPECT_EQ(keys_of(d["dataset"]),
            (std::vector<std::string>{"isl_stats", "osl_stats", "seq_len_stats", "num_requests", "dataset_path",
                                      "max_isl", "max_osl", "max_sequence_length", "avg_isl", "avg_osl",
                                      "avg_sequence_length"}));
  for (const char* k : {"isl_stats", "osl_stats", "seq_len_stats"}) EXPECT_EQ(keys_of(d["dataset"][k]), kPctKeys);

  // Values, converted per key: ns -> ms, tokens/ns -> tokens/s; per GPU = output / (tp * pp) = 9.5 / 2.
  EXPECT_EQ(d["engine"]["engine_dir"], "None");
  EXPECT_EQ(d["engine"]["backend"], "Pytorch");
  EXPECT_TRUE(d["engine"]["kv_cache_dtype"].is_null());
  EXPECT_TRUE(d["world_info"]["ep_size"].is_null());
  EXPECT_EQ(d["world_info"]["world_size"], 2);
  EXPECT_DOUBLE_EQ(d["world_info"]["kv_cache_percentage"].get<double>(), 0.95);
  EXPECT_DOUBLE_EQ(d["world_info"]["issue_rate"].get<double>(), 5e17);  // trtllm-bench's ns * 1e9, kept
  EXPECT_DOUBLE_EQ(d["request_info"]["avg_input_length"].get<double>(), 25.0);
  EXPECT_DOUBLE_EQ(d["request_info"]["avg_output_length"].get<double>(), 9.5);
  EXPECT_DOUBLE_EQ(d["performance"]["total_latency_ms"].get<double>(), 4000.0);
  EXPECT_DOUBLE_EQ(d["performance"]["avg_request_latency_ms"].get<double>(), 1950.0);
  EXPECT_DOUBLE_EQ(d["performance"]["request_throughput_req_s"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(d["performance"]["system_output_throughput_tok_s"].get<double>(), 9.5);
  EXPECT_DOUBLE_EQ(d["performance"]["system_total_throughput_tok_s"].get<double>(), 34.5);
  EXPECT_DOUBLE_EQ(d["performance"]["output_throughput_per_gpu_tok_s"].get<double>(), 4.75);
  EXPECT_DOUBLE_EQ(d["performance"]["request_latency_percentiles_ms"]["p50"].get<double>(), 2200.0);
  EXPECT_DOUBLE_EQ(d["streaming_metrics"]["avg_ttft_ms"].get<double>(), 225.0);
  EXPECT_DOUBLE_EQ(d["streaming_metrics"]["avg_tpot_ms"].get<double>(), 175.0);
  EXPECT_DOUBLE_EQ(d["streaming_metrics"]["token_output_speed_tok_s"].get<double>(), 5.5);
  EXPECT_DOUBLE_EQ(d["streaming_metrics"]["ttft_percentiles"]["p90"].get<double>(), 500.0);
  EXPECT_DOUBLE_EQ(d["streaming_metrics"]["gen_tps_percentiles"]["maximum"].get<double>(), 10.0);
  EXPECT_EQ(d["dataset"]["max_isl"], 40);
  EXPECT_EQ(d["dataset"]["max_sequence_length"], 41);
  EXPECT_EQ(d["dataset"]["avg_osl"], 9);  // int(9.5)
  EXPECT_EQ(d["dataset"]["avg_sequence_length"], 34);  // int(138 / 4)

  // Without --streaming there is no streaming block; without a speculative config no decoding block.
  const ojson plain = bench_statistics_json(worked_info(false), st, worked_dataset());
  EXPECT_FALSE(plain.contains("streaming_metrics"));
  EXPECT_FALSE(plain.contains("decoding_stats"));
}

TEST(BenchReportText, E2LabelsInSectionOrder) {
  const BenchStatistics st = compute_bench_statistics(worked_records());
  const std::string text = format_bench_report(bench_statistics_json(worked_info(true), st, worked_dataset()));
  const std::vector<std::string> in_order = {
      "= PYTORCH BACKEND\n", "Model:\t\t\tdeepseek-ai/DeepSeek-V3\n", "Model Path:\t\t/models/tiny\n",
      "TensorRT-LLM Version:\tdsv3 0.1\n", "Dtype:\t\t\tbfloat16\n", "KV Cache Dtype:\t\tNone\n",
      "Quantization:\t\tFP8_BLOCK_SCALES\n",
      "= REQUEST DETAILS\n", "Number of requests:             4\n",
      "Number of concurrent requests:  1.9500\n", "Average Input Length (tokens):  25.0000\n",
      "Average Output Length (tokens): 9.5000\n",
      "= WORLD + RUNTIME INFORMATION\n", "TP Size:                2\n", "PP Size:                1\n",
      "EP Size:                None\n", "Max Runtime Batch Size: 161\n", "Max Runtime Tokens:     1160\n",
      "Scheduling Policy:      GUARANTEED_NO_EVICT\n", "KV Memory Percentage:   95.00%\n",
      "Issue Rate (req/sec):   5.0000E+17\n",
      "= PERFORMANCE OVERVIEW\n",
      "Request Throughput (req/sec):                     1.0000\n",
      "Total Output Throughput (tokens/sec):             9.5000\n",
      "Per User Output Throughput (tokens/sec/user):     5.5114\n",
      "Per GPU Output Throughput (tokens/sec/gpu):       4.7500\n",
      "Total Token Throughput (tokens/sec):              34.5000\n",
      "Total Latency (ms):                               4000.0000\n",
      "Average request latency (ms):                     1950.0000\n",
      "Per User Output Speed [1/TPOT] (tokens/sec/user): 5.5000\n",
      "Average time-to-first-token [TTFT] (ms):          225.0000\n",
      "Average time-per-output-token [TPOT] (ms):        175.0000\n",
      "\n-- Per-Request Time-per-Output-Token [TPOT] Breakdown (ms)\n\n",
      "[TPOT] MINIMUM: 0.0000\n", "[TPOT] MAXIMUM: 500.0000\n", "[TPOT] AVERAGE: 175.0000\n",
      "[TPOT] P50    : 100.0000\n", "[TPOT] P90    : 500.0000\n", "[TPOT] P95    : 500.0000\n",
      "[TPOT] P99    : 500.0000\n",
      "\n-- Per-Request Time-to-First-Token [TTFT] Breakdown (ms)\n\n",
      "[TTFT] MINIMUM: 100.0000\n", "[TTFT] P50    : 200.0000\n",
      "\n-- Request Latency Breakdown (ms) -----------------------\n\n",
      "[Latency] P50    : 2200.0000\n", "[Latency] P90    : 2500.0000\n", "[Latency] P95    : 2500.0000\n",
      "[Latency] P99    : 2500.0000\n", "[Latency] MINIMUM: 1100.0000\n", "[Latency] MAXIMUM: 2500.0000\n",
      "[Latency] AVERAGE: 1950.0000\n",
      "= DATASET DETAILS\n", "Dataset Path:         /data/dataset.txt\n", "Number of Sequences:  4\n",
      "-- Percentiles statistics ---------------------------------\n",
      "        Input              Output           Seq. Length\n",
      // _format_number: 9 wide, 10 spaces between columns.
      "MIN:    10.0000             1.0000            21.0000\n",
      "MAX:    40.0000            21.0000            41.0000\n",
      "AVG:    25.0000             9.5000            34.5000\n",
      "P50:    30.0000            11.0000            41.0000\n"};
  size_t pos = 0;
  for (const std::string& s : in_order) {
    const size_t at = text.find(s, pos);
    ASSERT_NE(at, std::string::npos) << "missing or out of order: [" << s << "]\n--- report ---\n" << text;
    pos = at + s.size();
  }
  // Section headers are three lines: 59 '=', "= TITLE", 59 '='.
  const std::string rule(59, '=');
  EXPECT_NE(text.find(rule + "\n= PERFORMANCE OVERVIEW\n" + rule + "\n"), std::string::npos);
  EXPECT_EQ(text.find("DECODING STATISTICS"), std::string::npos);

  const std::string plain = format_bench_report(bench_statistics_json(worked_info(false), st, worked_dataset()));
  EXPECT_EQ(plain.find("[TTFT]"), std::string::npos);
  EXPECT_EQ(plain.find("Per User Output Speed"), std::string::npos);
  EXPECT_NE(plain.find("[Latency] AVERAGE: 1950.0000\n\n" + rule + "\n= DATASET DETAILS"), std::string::npos);
}

TEST(BenchReportText, DecodingStatisticsAndLargeDatasetNumbers) {
  BenchRunInfo info = worked_info(false);
  info.decoding_mode = "MTP";
  info.max_draft_len = 3;
  DatasetStats ds = worked_dataset();
  ds.isl.maximum = 131072;  // >= 1e5 switches to %9.2e
  const std::string text =
      format_bench_report(bench_statistics_json(info, compute_bench_statistics(worked_records(), 3), ds));
  const size_t dec = text.find("= DECODING STATISTICS (MTP)\n");
  ASSERT_NE(dec, std::string::npos);
  EXPECT_LT(text.find("[Latency] AVERAGE"), dec);
  EXPECT_LT(dec, text.find("= DATASET DETAILS"));
  // decode_iteration = osl - 1 here: one token per iteration, so nothing accepted and acceptance length 1.
  EXPECT_NE(text.find("[DT] MAXIMUM: 63.00\n"), std::string::npos) << text;  // request 1: 21 iterations * 3
  EXPECT_NE(text.find("[ADT] MAXIMUM: 0.00\n"), std::string::npos);
  EXPECT_NE(text.find("[AL] AVERAGE: 1.00\n"), std::string::npos);
  EXPECT_NE(text.find("MAX:   1.31e+05            21.0000"), std::string::npos) << text;
}

TEST(BenchWriters, OutputAndRequestJson) {
  const std::vector<RequestRecord> recs = worked_records();
  auto detok = [](const std::vector<int32_t>& ids) { return fmt::format("é{}", ids.size()); };
  const ojson out = output_json(recs, detok);
  EXPECT_EQ(keys_of(out), (std::vector<std::string>{"0", "1", "2", "3"}));  // sorted by id, warm-up left out
  EXPECT_EQ(out["1"], "é21");
  // json.dumps escapes non-ASCII.
  EXPECT_NE(python_json_dumps(out).find("\"0\": \"\\u00e911\""), std::string::npos) << python_json_dumps(out);

  const ojson req = request_json(recs, detok);
  ASSERT_EQ(req.size(), 4u);
  const ojson& r2 = req[2];
  EXPECT_EQ(keys_of(r2), (std::vector<std::string>{
                             "id", "num_input_tokens", "error_tokens", "start_timestamp", "first_token_timestamp",
                             "end_timestamp", "decode_iteration", "num_total_output_tokens", "num_generated_tokens",
                             "generation_time", "time_to_first_token", "intertoken_latency", "end_to_end_latency",
                             "output_token_throughput", "generation_token_throughput", "output", "output_tokens"}));
  EXPECT_EQ(r2["id"], 2);
  EXPECT_EQ(r2["time_to_first_token"], 500 * kMs);
  EXPECT_EQ(r2["end_to_end_latency"], 2500 * kMs);
  EXPECT_EQ(r2["generation_time"], 2000 * kMs);
  EXPECT_DOUBLE_EQ(r2["intertoken_latency"].get<double>(), 500.0 * kMs);
  EXPECT_DOUBLE_EQ(r2["generation_token_throughput"].get<double>(), 4.0 / (2000.0 * kMs));
  EXPECT_EQ(r2["num_generated_tokens"], 4);
  EXPECT_EQ(r2["output_tokens"], 5);
}

TEST(BenchWriters, IterationLogLines) {
  const std::string path = temp_path("iter.jsonl");
  {
    IterationLogWriter w(path);
    IterationStats s;
    s.iter = 0;
    s.iter_latency_ms = 12.5;
    s.num_active_requests = 3;
    s.kv_cache_stats.used_num_blocks = 7;
    w.write(s);
    s.iter = 1;
    s.spec_decoding_stats = IterationStats::SpecDecoding{.num_draft_tokens = 9, .num_accepted_tokens = 4,
                                                         .num_requests_with_draft_tokens = 3,
                                                         .acceptance_length = 2.25, .iter_latency_ms = 1,
                                                         .draft_overhead = 0.1};
    w.write(s);
  }
  std::istringstream in(read_file(path));
  std::string l0, l1, extra;
  ASSERT_TRUE(std::getline(in, l0) && std::getline(in, l1));
  EXPECT_FALSE(std::getline(in, extra));
  const ojson j0 = ojson::parse(l0), j1 = ojson::parse(l1);
  EXPECT_EQ(j0["iter"], 0);
  EXPECT_EQ(j0["iterLatencyMS"], 12.5);
  EXPECT_EQ(j0["numActiveRequests"], 3);
  EXPECT_EQ(j0["kvCacheStats"]["usedNumBlocks"], 7);
  EXPECT_TRUE(j0["inflightBatchingStats"].contains("numCtxTokens"));
  EXPECT_FALSE(j0.contains("specDecodingStats"));
  EXPECT_EQ(j1["specDecodingStats"]["numAcceptedTokens"], 4);
  std::filesystem::remove(path);
  EXPECT_THROW(IterationLogWriter("/nonexistent-dir/x.jsonl"), Error);
}

TEST(BenchWriters, FloatsAsPythonRepr) {
  // Python's repr switches to exponent form below 1e-4 and from 1e16 on; the values straddle both edges.
  const std::vector<double> v = {0.0,    -0.0,    1.0,     0.1,          1e-4,  9.99e-5,           1e-5,
                                 2.5e-7, 123.0,   1e15,    1e16,         5e17,  7716523321568628.0, 1.0 / 3,
                                 -2.75,  6.02e23, 1e-300,  4503599627370497.0};
  std::string py = "python3 -c \"print(' '.join(repr(x) for x in [";
  for (double x : v) py += fmt::format("float.fromhex('{}'),", fmt::format("{:a}", x));
  py += "]))\"";
  std::istringstream in(run_command(py));
  for (double x : v) {
    std::string expect;
    ASSERT_TRUE(in >> expect);
    EXPECT_EQ(python_float_repr(x), expect) << fmt::format("{:a}", x);
  }
  EXPECT_EQ(python_json_dumps(ojson::parse(R"({"a": [], "b": {}, "c": [1, 2.0, "x", null, true]})"), -1),
            R"({"a": [], "b": {}, "c": [1, 2.0, "x", null, true]})");
}

// A Python implementation of §2.4/§2.5, written from the spec text: it reads the records and prints the reference
// values, plus json.dumps(indent=4) of our dict, which must equal our own file byte for byte.
const char* kPythonReference = R"PY(
import json, sys
recs = [r for r in json.load(open(sys.argv[1])) if not r["warmup"]]
ours = json.load(open(sys.argv[2]))
world = int(sys.argv[3])
def pct(v):
    s = sorted(v); n = len(s)
    return {"p50": s[int(n * 0.5)], "p90": s[int(n * 0.9)], "p95": s[int(n * 0.95)], "p99": s[int(n * 0.99)],
            "minimum": min(v), "maximum": max(v), "average": float(sum(v)) / n}
def scale(d, f): return {k: x * f for k, x in d.items()}
e2e = [r["end"] - r["start"] for r in recs]
ttft = [r["first"] - r["start"] for r in recs]
tpot = [(r["end"] - r["first"]) / (r["out"] - 1) if r["out"] > 1 else 0.0 for r in recs]
gen = [(r["out"] - 1) / (e - t) if r["out"] > 1 else 0.0 for r, e, t in zip(recs, e2e, ttft)]
user = [r["out"] / e for r, e in zip(recs, e2e)]
total = max(r["end"] for r in recs) - min(r["start"] for r in recs)
n = len(recs); out = sum(r["out"] for r in recs); inp = sum(r["in"] for r in recs)
ref = {
  "issue_rate": (max(r["start"] for r in recs) - min(r["start"] for r in recs)) / n * 1e9,
  "avg_num_concurrent_requests": sum(e2e) / total,
  "avg_input_length": inp / n, "avg_output_length": out / n,
  "total_latency_ms": total * 1e-6, "avg_request_latency_ms": pct(e2e)["average"] * 1e-6,
  "request_throughput_req_s": n / total * 1e9, "system_output_throughput_tok_s": out / total * 1e9,
  "system_total_throughput_tok_s": (inp + out) / total * 1e9,
  "output_throughput_per_user_tok_s": pct(user)["average"] * 1e9,
  "output_throughput_per_gpu_tok_s": out / total * 1e9 / world,
  "request_latency_percentiles_ms": scale(pct(e2e), 1e-6),
  "token_output_speed_tok_s": pct(gen)["average"] * 1e9,
  "avg_ttft_ms": pct(ttft)["average"] * 1e-6, "avg_tpot_ms": pct(tpot)["average"] * 1e-6,
  "tpot_percentiles": scale(pct(tpot), 1e-6), "ttft_percentiles": scale(pct(ttft), 1e-6),
  "gen_tps_percentiles": scale(pct(gen), 1e9),
}
print(json.dumps({"ref": ref, "redump": json.dumps(ours, indent=4)}))
)PY";

TEST(BenchStatistics, RandomRunMatchesPythonReference) {
  std::mt19937_64 rng(20250501);
  std::vector<RequestRecord> recs;
  ojson raw = ojson::array();
  for (int i = 0; i < 257; ++i) {
    RequestRecord r;
    r.id = i;
    r.warmup = i < 2;
    r.num_input_tokens = 1 + static_cast<int64_t>(rng() % 3000);
    r.num_output_tokens = 1 + static_cast<int64_t>(rng() % 600);
    r.start_ns = kBase + static_cast<int64_t>(rng() % 2000000000);
    r.first_token_ns = r.start_ns + 1 + static_cast<int64_t>(rng() % 900000000);
    r.end_ns = r.first_token_ns + 1 + static_cast<int64_t>(rng() % 9000000000);
    recs.push_back(r);
    raw.push_back({{"warmup", r.warmup}, {"in", r.num_input_tokens}, {"out", r.num_output_tokens},
                   {"start", r.start_ns}, {"first", r.first_token_ns}, {"end", r.end_ns}});
  }
  BenchRunInfo info = worked_info(true);
  info.tp_size = 4, info.pp_size = 2;
  const ojson d = bench_statistics_json(info, compute_bench_statistics(recs), worked_dataset());

  const std::string recs_path = temp_path("recs.json"), ours_path = temp_path("ours.json"),
                    py_path = temp_path("ref.py");
  std::ofstream(recs_path) << raw.dump();
  write_json_file(ours_path, d);
  std::ofstream(py_path) << kPythonReference;
  const ojson py = ojson::parse(run_command(fmt::format("python3 {} {} {} 8", py_path, recs_path, ours_path)));
  const ojson& ref = py["ref"];

  auto ours_at = [&](const std::string& k) -> const ojson& {
    for (const char* sec : {"world_info", "request_info", "performance", "streaming_metrics"})
      if (d[sec].contains(k)) return d[sec][k];
    ADD_FAILURE() << "key " << k << " not in our dict";
    return d["engine"];
  };
  auto near = [](double a, double b) { return std::abs(a - b) <= 1e-12 * std::max(1.0, std::abs(b)); };
  int checked = 0;
  for (auto it = ref.begin(); it != ref.end(); ++it) {
    const ojson& mine = ours_at(it.key());
    if (it.value().is_object()) {
      for (const auto& k : kPctKeys) {
        EXPECT_TRUE(near(mine[k].get<double>(), it.value()[k].get<double>()))
            << it.key() << "." << k << ": ours " << mine[k] << " python " << it.value()[k];
        ++checked;
      }
    } else {
      EXPECT_TRUE(near(mine.get<double>(), it.value().get<double>()))
          << it.key() << ": ours " << mine << " python " << it.value();
      ++checked;
    }
  }
  EXPECT_EQ(checked, 14 + 4 * 7);  // 14 scalars and 4 percentile objects
  EXPECT_EQ(py["redump"].get<std::string>(), read_file(ours_path));
  for (const auto& p : {recs_path, ours_path, py_path}) std::filesystem::remove(p);
}

}  // namespace
}  // namespace dsv3
