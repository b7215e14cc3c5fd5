// bench_report.cpp: trtllm-bench's statistics, statistics dict and console report (tools/common); see
// bench_report.h. Formulas: interfaces.md §2.4 "Metric definitions"; every value is computed in ns (or tokens/ns)
// first and converted per key at the end, in the same order as trtllm-bench, so the printed digits agree.
#include "common/bench_report.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

using ojson = nlohmann::ordered_json;

constexpr double kNsToMs = 1.0e-6;
constexpr double kPerNsToPerS = 1.0e9;
const char* const kRule = "===========================================================\n";  // 59 '='

ojson percentiles_json(const PercentileStats& s) {
  ojson j;
  j["p50"] = s.p50;
  j["p90"] = s.p90;
  j["p95"] = s.p95;
  j["p99"] = s.p99;
  j["minimum"] = s.minimum;
  j["maximum"] = s.maximum;
  j["average"] = s.average;
  return j;
}

template <typename T>
ojson opt(const std::optional<T>& v) {
  return v ? ojson(*v) : ojson(nullptr);
}

// Python's str() of a JSON scalar as the f-strings of the report show it.
std::string py_str(const ojson& v) {
  if (v.is_null()) return "None";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  return v.dump();
}

double num(const ojson& v) { return v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN(); }

std::string section(const std::string& title) { return fmt::format("{}= {}\n{}", kRule, title, kRule); }

// "[TAG] KEY    : value" lines (f"{key.upper():<7}").
std::string breakdown(const char* tag, const ojson& p, const std::vector<const char*>& keys, int digits) {
  std::string out;
  for (const char* k : keys) {
    std::string key = k;
    std::transform(key.begin(), key.end(), key.begin(), ::toupper);
    out += fmt::format("[{}] {:<7}: {:.{}f}\n", tag, key, num(p.at(k)), digits);
  }
  return out;
}

// DatasetMetadata._format_number: 9 characters, scientific from 1e5 on.
std::string dataset_number(double v) {
  return v >= 100000 ? fmt::format("{:9.2e}", v) : fmt::format("{:9.4f}", v);
}

}  // namespace

RequestMetrics request_metrics(const RequestRecord& r) {
  RequestMetrics m;
  m.e2e_ns = r.end_ns - r.start_ns;
  m.ttft_ns = r.first_token_ns > 0 ? r.first_token_ns - r.start_ns : 0;
  m.generation_ns = m.e2e_ns - m.ttft_ns;
  const int64_t generated = r.num_output_tokens - 1;  // tokens after the first
  const int64_t first = r.first_token_ns > 0 ? r.first_token_ns : r.start_ns;
  m.tpot_ns = generated > 0 ? static_cast<double>(r.end_ns - first) / static_cast<double>(generated) : 0.0;
  m.gen_tps_per_ns = generated > 0 && m.generation_ns > 0
                         ? static_cast<double>(generated) / static_cast<double>(m.generation_ns)
                         : 0.0;
  m.output_tps_per_ns =
      m.e2e_ns > 0 ? static_cast<double>(r.num_output_tokens) / static_cast<double>(m.e2e_ns) : 0.0;
  return m;
}

double BenchStatistics::request_throughput_per_s() const {
  return static_cast<double>(num_requests) / static_cast<double>(total_latency_ns) * kPerNsToPerS;
}
double BenchStatistics::output_throughput_tok_per_s() const {
  return static_cast<double>(total_output_tokens) / static_cast<double>(total_latency_ns) * kPerNsToPerS;
}
double BenchStatistics::total_token_throughput_tok_per_s() const {
  return static_cast<double>(total_input_tokens + total_output_tokens) / static_cast<double>(total_latency_ns) *
         kPerNsToPerS;
}

BenchStatistics compute_bench_statistics(const std::vector<RequestRecord>& records, int64_t max_draft_len) {
  BenchStatistics st;
  int64_t first_start = std::numeric_limits<int64_t>::max(), last_start = 0, last_end = -1;
  int64_t sum_latency = 0, total_iterations = 0;
  std::vector<int64_t> latency, ttft, out_tokens, draft, accepted;
  std::vector<double> tpot, gen_tps, per_user, acc_rate, acc_len;
  for (const RequestRecord& r : records) {
    if (r.warmup) continue;
    EXPECT(r.start_ns >= 0 && r.end_ns >= r.start_ns, "request {}: bad timestamps (start {} ns, end {} ns)", r.id,
           r.start_ns, r.end_ns);
    const RequestMetrics m = request_metrics(r);
    first_start = std::min(first_start, r.start_ns);
    last_start = std::max(last_start, r.start_ns);
    last_end = std::max(last_end, r.end_ns);
    latency.push_back(m.e2e_ns);
    sum_latency += m.e2e_ns;
    ttft.push_back(m.ttft_ns);
    tpot.push_back(m.tpot_ns);
    gen_tps.push_back(m.gen_tps_per_ns);
    per_user.push_back(m.output_tps_per_ns);
    out_tokens.push_back(r.num_output_tokens);
    st.total_input_tokens += r.num_input_tokens;
    st.total_output_tokens += r.num_output_tokens;
    const int64_t iterations = r.decode_iteration + 1;
    total_iterations += iterations;
    if (max_draft_len > 0) {
      // §2.4 speculative decoding: every iteration drafts max_draft_len tokens; each iteration also yields one
      // token of its own, so the rest of the output are accepted drafts.
      draft.push_back(max_draft_len * iterations);
      accepted.push_back(r.num_output_tokens - iterations);
      acc_rate.push_back(static_cast<double>(accepted.back()) / static_cast<double>(draft.back()));
      acc_len.push_back(static_cast<double>(r.num_output_tokens) / static_cast<double>(iterations));
    }
  }
  EXPECT(!latency.empty(), "no timed requests to report (only warm-up requests were recorded)");
  st.num_requests = static_cast<int64_t>(latency.size());
  st.total_latency_ns = last_end - first_start;
  EXPECT(st.total_latency_ns > 0, "the run took no measurable time (total latency {} ns)", st.total_latency_ns);
  // NOTE: trtllm-bench's "issue rate" is the mean gap between submissions in ns (and the report multiplies it by
  // 1e9 like a rate); kept as is for drop-in parity, see interfaces.md §2.4.
  st.issue_rate_ns = static_cast<double>(last_start - first_start) / static_cast<double>(st.num_requests);
  st.avg_concurrent_requests = static_cast<double>(sum_latency) / static_cast<double>(st.total_latency_ns);
  st.request_latency_ns = percentile_stats(latency);
  st.ttft_ns = percentile_stats(ttft);
  st.tpot_ns = percentile_stats(tpot);
  st.gen_tps_per_ns = percentile_stats(gen_tps);
  st.output_tps_per_user_per_ns = percentile_stats(per_user);
  st.output_tokens = percentile_stats(out_tokens);
  st.global_acceptance_length = static_cast<double>(st.total_output_tokens) / static_cast<double>(total_iterations);
  if (max_draft_len > 0) {
    st.num_draft_tokens = percentile_stats(draft);
    st.num_accepted_draft_tokens = percentile_stats(accepted);
    st.draft_acceptance_rate = percentile_stats(acc_rate);
    st.acceptance_length = percentile_stats(acc_len);
  }
  return st;
}

void fill_run_info(BenchRunInfo& info, const LlmArgs& a) {
  info.tp_size = a.tensor_parallel_size;
  info.pp_size = a.pipeline_parallel_size;
  info.ep_size = a.moe_expert_parallel_size;
  info.max_batch_size = a.max_batch_size;
  info.max_num_tokens = a.max_num_tokens;
  info.scheduling_policy = capacity_scheduler_policy_name(a.scheduler_config.capacity_scheduler_policy);
  info.kv_cache_percentage = a.kv_cache_config.free_gpu_memory_fraction;
  if (a.speculative_config) {
    info.decoding_mode = a.speculative_config->decoding_type;
    info.max_draft_len = a.speculative_config->draft_len();
  } else {
    info.decoding_mode.reset();
    info.max_draft_len = 0;
  }
}

ojson bench_statistics_json(const BenchRunInfo& info, const BenchStatistics& st, const DatasetStats& ds) {
  ojson d;
  ojson& engine = d["engine"];
  engine["model"] = info.model;
  engine["model_path"] = info.model_path;
  engine["engine_dir"] = info.engine_dir.value_or("None");
  engine["version"] = info.version;
  engine["backend"] = info.backend;
  engine["dtype"] = opt(info.dtype);
  engine["kv_cache_dtype"] = opt(info.kv_cache_dtype);
  engine["quantization"] = opt(info.quantization);
  if (info.machine) {
    ojson& m = d["machine"];
    m["name"] = info.machine->name;
    m["memory.total"] = opt(info.machine->memory_total_gb);
    m["clocks.mem"] = opt(info.machine->clocks_mem_ghz);
  }

  ojson& w = d["world_info"];
  w["tp_size"] = info.tp_size;
  w["pp_size"] = info.pp_size;
  w["ep_size"] = opt(info.ep_size);
  w["world_size"] = info.world_size();
  w["max_batch_size"] = opt(info.max_batch_size);
  w["max_num_tokens"] = opt(info.max_num_tokens);
  w["scheduling_policy"] = info.scheduling_policy;
  w["kv_cache_percentage"] = opt(info.kv_cache_percentage);
  w["issue_rate"] = st.issue_rate_ns * kPerNsToPerS;

  ojson& r = d["request_info"];
  r["num_requests"] = st.num_requests;
  r["avg_num_concurrent_requests"] = st.avg_concurrent_requests;
  r["avg_input_length"] = static_cast<double>(st.total_input_tokens) / static_cast<double>(st.num_requests);
  r["avg_output_length"] = static_cast<double>(st.total_output_tokens) / static_cast<double>(st.num_requests);

  ojson& p = d["performance"];
  const double output_tok_s = st.output_throughput_tok_per_s();
  p["total_latency_ms"] = static_cast<double>(st.total_latency_ns) * kNsToMs;
  p["avg_request_latency_ms"] = st.request_latency_ns.average * kNsToMs;
  p["request_throughput_req_s"] = st.request_throughput_per_s();
  p["system_output_throughput_tok_s"] = output_tok_s;
  p["system_total_throughput_tok_s"] = st.total_token_throughput_tok_per_s();
  p["output_throughput_per_user_tok_s"] = st.output_tps_per_user_per_ns.average * kPerNsToPerS;
  p["output_throughput_per_gpu_tok_s"] = output_tok_s / static_cast<double>(info.world_size());
  p["request_latency_percentiles_ms"] = percentiles_json(scaled(st.request_latency_ns, kNsToMs));

  if (info.streaming) {
    ojson& s = d["streaming_metrics"];
    s["token_output_speed_tok_s"] = st.gen_tps_per_ns.average * kPerNsToPerS;
    s["avg_ttft_ms"] = st.ttft_ns.average * kNsToMs;
    s["avg_tpot_ms"] = st.tpot_ns.average * kNsToMs;
    s["tpot_percentiles"] = percentiles_json(scaled(st.tpot_ns, kNsToMs));
    s["ttft_percentiles"] = percentiles_json(scaled(st.ttft_ns, kNsToMs));
    s["gen_tps_percentiles"] = percentiles_json(scaled(st.gen_tps_per_ns, kPerNsToPerS));
  }

  if (info.decoding_mode) {
    ojson& s = d["decoding_stats"];
    auto pj = [](const std::optional<PercentileStats>& v) { return v ? percentiles_json(*v) : ojson(nullptr); };
    s["mode"] = *info.decoding_mode;
    s["num_draft_tokens_percentiles"] = pj(st.num_draft_tokens);
    s["num_accepted_draft_tokens_percentiles"] = pj(st.num_accepted_draft_tokens);
    s["draft_acceptance_rate_percentiles"] = pj(st.draft_acceptance_rate);
    s["acceptance_length_percentiles"] = pj(st.acceptance_length);
  }

  ojson& ds_j = d["dataset"];
  ds_j["isl_stats"] = percentiles_json(ds.isl);
  ds_j["osl_stats"] = percentiles_json(ds.osl);
  ds_j["seq_len_stats"] = percentiles_json(ds.seq_len);
  ds_j["num_requests"] = ds.num_requests;
  ds_j["dataset_path"] = ds.dataset_path.empty() ? ojson(nullptr) : ojson(ds.dataset_path);
  ds_j["max_isl"] = ds.max_isl();
  ds_j["max_osl"] = ds.max_osl();
  ds_j["max_sequence_length"] = ds.max_sequence_length();
  ds_j["avg_isl"] = ds.avg_isl();
  ds_j["avg_osl"] = ds.avg_osl();
  ds_j["avg_sequence_length"] = ds.avg_sequence_length();
  return d;
}

std::string format_dataset_details(const DatasetStats& ds) {
  std::string out = "\n";
  out += section("DATASET DETAILS");
  out += fmt::format("Dataset Path:         {}\n", ds.dataset_path.empty() ? "None" : ds.dataset_path);
  out += fmt::format("Number of Sequences:  {}\n", ds.num_requests);
  out += "\n-- Percentiles statistics ---------------------------------\n\n";
  out += "        Input              Output           Seq. Length\n";
  out += "-----------------------------------------------------------\n";
  auto row = [&](const char* label, double PercentileStats::*f) {
    out += fmt::format("{}:  {}          {}          {}\n", label, dataset_number(ds.isl.*f),
                       dataset_number(ds.osl.*f), dataset_number(ds.seq_len.*f));
  };
  row("MIN", &PercentileStats::minimum);
  row("MAX", &PercentileStats::maximum);
  row("AVG", &PercentileStats::average);
  row("P50", &PercentileStats::p50);
  row("P90", &PercentileStats::p90);
  row("P95", &PercentileStats::p95);
  row("P99", &PercentileStats::p99);
  out += kRule;
  return out;
}

std::string format_bench_report(const ojson& d) {
  const ojson& e = d.at("engine");
  const ojson& w = d.at("world_info");
  const ojson& r = d.at("request_info");
  const ojson& p = d.at("performance");
  std::string out;

  // 1. backend block
  out += "\n\n";
  out += section("PYTORCH BACKEND");
  out += fmt::format("Model:\t\t\t{}\n", py_str(e.at("model")));
  out += fmt::format("Model Path:\t\t{}\n", py_str(e.at("model_path")));
  out += fmt::format("TensorRT-LLM Version:\t{}\n", py_str(e.at("version")));
  out += fmt::format("Dtype:\t\t\t{}\n", py_str(e.at("dtype")));
  out += fmt::format("KV Cache Dtype:\t\t{}\n", py_str(e.at("kv_cache_dtype")));
  out += fmt::format("Quantization:\t\t{}\n\n", py_str(e.at("quantization")));

  // 2. REQUEST DETAILS
  out += section("REQUEST DETAILS");
  out += fmt::format("Number of requests:             {}\n", py_str(r.at("num_requests")));
  out += fmt::format("Number of concurrent requests:  {:.4f}\n", num(r.at("avg_num_concurrent_requests")));
  out += fmt::format("Average Input Length (tokens):  {:.4f}\n", num(r.at("avg_input_length")));
  out += fmt::format("Average Output Length (tokens): {:.4f}\n", num(r.at("avg_output_length")));

  // 3. WORLD + RUNTIME INFORMATION
  const ojson& kv = w.at("kv_cache_percentage");
  out += section("WORLD + RUNTIME INFORMATION");
  out += fmt::format("TP Size:                {}\n", py_str(w.at("tp_size")));
  out += fmt::format("PP Size:                {}\n", py_str(w.at("pp_size")));
  out += fmt::format("EP Size:                {}\n", py_str(w.at("ep_size")));
  out += fmt::format("Max Runtime Batch Size: {}\n", py_str(w.at("max_batch_size")));
  out += fmt::format("Max Runtime Tokens:     {}\n", py_str(w.at("max_num_tokens")));
  out += fmt::format("Scheduling Policy:      {}\n", py_str(w.at("scheduling_policy")));
  out += fmt::format("KV Memory Percentage:   {}\n",
                     kv.is_null() ? std::string("None") : fmt::format("{:.2f}%", num(kv) * 100.0));
  out += fmt::format("Issue Rate (req/sec):   {:.4E}\n\n", num(w.at("issue_rate")));

  // 4. PERFORMANCE OVERVIEW (E2 labels and order)
  auto line = [&](const char* label, const ojson& v) { out += fmt::format("{:<50}{:.4f}\n", label, num(v)); };
  out += section("PERFORMANCE OVERVIEW");
  line("Request Throughput (req/sec):", p.at("request_throughput_req_s"));
  line("Total Output Throughput (tokens/sec):", p.at("system_output_throughput_tok_s"));
  line("Per User Output Throughput (tokens/sec/user):", p.at("output_throughput_per_user_tok_s"));
  line("Per GPU Output Throughput (tokens/sec/gpu):", p.at("output_throughput_per_gpu_tok_s"));
  line("Total Token Throughput (tokens/sec):", p.at("system_total_throughput_tok_s"));
  line("Total Latency (ms):", p.at("total_latency_ms"));
  line("Average request latency (ms):", p.at("avg_request_latency_ms"));
  const std::vector<const char*> kStatOrder = {"minimum", "maximum", "average", "p50", "p90", "p95", "p99"};
  if (d.contains("streaming_metrics")) {
    const ojson& s = d.at("streaming_metrics");
    line("Per User Output Speed [1/TPOT] (tokens/sec/user):", s.at("token_output_speed_tok_s"));
    line("Average time-to-first-token [TTFT] (ms):", s.at("avg_ttft_ms"));
    line("Average time-per-output-token [TPOT] (ms):", s.at("avg_tpot_ms"));
    out += "\n-- Per-Request Time-per-Output-Token [TPOT] Breakdown (ms)\n\n";
    out += breakdown("TPOT", s.at("tpot_percentiles"), kStatOrder, 4);
    out += "\n-- Per-Request Time-to-First-Token [TTFT] Breakdown (ms)\n\n";
    out += breakdown("TTFT", s.at("ttft_percentiles"), kStatOrder, 4);
  }
  out += "\n-- Request Latency Breakdown (ms) -----------------------\n\n";
  const ojson& lat = p.at("request_latency_percentiles_ms");
  std::vector<const char*> lat_keys;  // the dict's own order: p50 p90 p95 p99 minimum maximum average
  for (auto it = lat.begin(); it != lat.end(); ++it) lat_keys.push_back(it.key().c_str());
  out += breakdown("Latency", lat, lat_keys, 4);

  // 5. DECODING STATISTICS (speculative decoding only)
  if (d.contains("decoding_stats")) {
    const ojson& s = d.at("decoding_stats");
    out += "\n";
    out += section(fmt::format("DECODING STATISTICS ({})", py_str(s.at("mode"))));
    auto block = [&](const char* title, const char* tag, const char* key) {
      if (s.at(key).is_null()) return;
      out += fmt::format("\n-- {} {}\n\n", title, std::string(56 - std::string(title).size(), '-'));
      out += breakdown(tag, s.at(key), kStatOrder, 2);
    };
    block("Number of Draft Tokens Details", "DT", "num_draft_tokens_percentiles");
    block("Number of Accepted Draft Tokens Details", "ADT", "num_accepted_draft_tokens_percentiles");
    block("Draft Acceptance Rate Details", "DAR", "draft_acceptance_rate_percentiles");
    block("Acceptance Length Details", "AL", "acceptance_length_percentiles");
  }

  // 6. DATASET DETAILS
  const ojson& ds = d.at("dataset");
  DatasetStats stats;
  auto from_json = [](const ojson& j) {
    return PercentileStats{num(j.at("p50")),     num(j.at("p90")),     num(j.at("p95")),    num(j.at("p99")),
                           num(j.at("minimum")), num(j.at("maximum")), num(j.at("average"))};
  };
  stats.isl = from_json(ds.at("isl_stats"));
  stats.osl = from_json(ds.at("osl_stats"));
  stats.seq_len = from_json(ds.at("seq_len_stats"));
  stats.num_requests = ds.at("num_requests").get<int64_t>();
  stats.dataset_path = ds.at("dataset_path").is_null() ? "" : ds.at("dataset_path").get<std::string>();
  out += format_dataset_details(stats);
  return out;
}

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0.0) return std::signbit(v) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's layout: fixed for -4 < decpt <= 16, else d.ddde+XX.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, std::fabs(v), std::chars_format::scientific);
  const std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int decpt = std::stoi(sci.substr(e + 1)) + 1;  // value = 0.<digits> * 10^decpt
  const int n = static_cast<int>(digits.size());
  std::string out = v < 0 ? "-" : "";
  if (decpt <= -4 || decpt > 16) {
    out += digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    out += fmt::format("e{}{:02d}", decpt - 1 < 0 ? '-' : '+', std::abs(decpt - 1));
  } else if (decpt <= 0) {
    out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
  } else if (decpt >= n) {
    out += digits + std::string(static_cast<size_t>(decpt - n), '0') + ".0";
  } else {
    out += digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
  }
  return out;
}

namespace {

// json.dumps(v, indent=indent) (indent < 0: json.dumps(v), separators ", " and ": "), ensure_ascii on.
void dump_python(const ojson& v, int indent, int level, std::string& out) {
  const bool pretty = indent >= 0;
  auto newline = [&](int lvl) {
    if (pretty) out += "\n" + std::string(static_cast<size_t>(indent * lvl), ' ');
  };
  const char* item_sep = pretty ? "," : ", ";
  switch (v.type()) {
    case ojson::value_t::object: {
      if (v.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out += item_sep;
        first = false;
        newline(level + 1);
        out += ojson(it.key()).dump(-1, ' ', true, ojson::error_handler_t::replace);
        out += ": ";
        dump_python(it.value(), indent, level + 1, out);
      }
      newline(level);
      out += '}';
      return;
    }
    case ojson::value_t::array: {
      if (v.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < v.size(); ++i) {
        if (i) out += item_sep;
        newline(level + 1);
        dump_python(v[i], indent, level + 1, out);
      }
      newline(level);
      out += ']';
      return;
    }
    case ojson::value_t::number_float:
      out += python_float_repr(v.get<double>());
      return;
    default:  // null, bool, integers, strings: the same text in both
      out += v.dump(-1, ' ', true, ojson::error_handler_t::replace);
  }
}

}  // namespace

std::string python_json_dumps(const ojson& j, int indent) {
  std::string out;
  dump_python(j, indent, 0, out);
  return out;
}

void write_json_file(const std::string& path, const ojson& j, int indent) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  EXPECT(f, "cannot write '{}'", path);
  f << python_json_dumps(j, indent);
  f.flush();
  EXPECT(f.good(), "error while writing '{}'", path);
}

}  // namespace dsv3
