// cmd_bench.cpp: `dsv3 bench throughput|latency` — trtllm-bench's options, semantics and report (tools).
// Runs the dataset through the engine: EOS ignored and exactly output_tokens per request, warm-up requests first
// (excluded from every figure), at most --concurrency requests in flight, timestamps taken on the engine thread
// (arrival at submit, first token, end), a progress bar on stderr, then the report on stdout (interfaces.md §2).
#include <atomic>
#include <chrono>
#include <ctime>
#include <thread>

#include "commands.h"
#include "common/bench_options.h"
#include "common/bench_report.h"
#include "common/bench_writers.h"
#include "common/progress.h"
#include "dsv3/base/log.h"
#include "dsv3/base/timer.h"
#include "dsv3/engine/engine.h"
#include "engine_args.h"

namespace dsv3::tools {
namespace {

int64_t to_ns(double seconds) { return static_cast<int64_t>(seconds * 1e9); }

struct Runner {
  Engine& engine;
  const BenchConfig& cfg;
  const BenchDataset& ds;
  bool streaming;

  RequestRecord run_one(size_t index, int64_t id, bool warmup) {
    const BenchRequest& r = ds.requests[index];
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = static_cast<int>(r.output_tokens);
    if (cfg.options.eos_id >= 0 && !warmup) p.end_id = static_cast<int32_t>(cfg.options.eos_id);
    else p.ignore_eos = true;
    RequestRecord rec;
    rec.id = id;
    rec.warmup = warmup;
    rec.num_input_tokens = static_cast<int64_t>(r.input_ids.size());
    auto h = engine.submit({r.input_ids, p, streaming && !warmup});
    RequestOutput o = h->wait();
    EXPECT(o.error.empty(), "{}:{}: request failed: {}", ds.path, r.line, o.error);
    rec.start_ns = to_ns(o.timings.arrival);
    rec.first_token_ns = streaming && !warmup ? to_ns(o.timings.first_token) : -1;
    rec.end_ns = to_ns(o.timings.end);
    rec.num_output_tokens = static_cast<int64_t>(o.token_ids.size());
    rec.decode_iteration = rec.num_output_tokens - 1;
    rec.tokens = o.token_ids;
    return rec;
  }

  // Runs `indices` with at most `concurrency` in flight (<= 0: all at once); progress per completed request.
  std::vector<RequestRecord> run(const std::vector<size_t>& indices, int64_t concurrency, bool warmup,
                                 ProgressBar* bar) {
    const size_t n = indices.size();
    std::vector<RequestRecord> out(n);
    const size_t workers = concurrency > 0 ? std::min<size_t>(n, concurrency) : std::min<size_t>(n, 256);
    std::atomic<size_t> next{0};
    std::vector<std::thread> ts;
    std::exception_ptr err;
    std::mutex err_mu;
    for (size_t w = 0; w < workers; ++w)
      ts.emplace_back([&] {
        for (size_t i; (i = next.fetch_add(1)) < n;) {
          try {
            out[i] = run_one(indices[i], static_cast<int64_t>(i), warmup);
          } catch (...) {
            std::lock_guard<std::mutex> lock(err_mu);
            if (!err) err = std::current_exception();
          }
          if (bar) bar->advance();
        }
      });
    for (auto& t : ts) t.join();
    if (err) std::rethrow_exception(err);
    return out;
  }
};

}  // namespace

int cmd_bench(int argc, char** argv) {
  BenchConfig cfg;
  if (auto rc = parse_bench_command_line(argc, argv, cfg)) return *rc;
  for (const auto& w : cfg.warnings) log_warn("{}", w);
  reject_unsupported(cfg.llm_args, cfg.origins, EngineCapabilities{});
  const BenchOptions& o = cfg.options;
  BenchDataset ds = read_bench_dataset(o.dataset, dataset_read_options(cfg));
  apply_dataset_defaults(cfg, ds);
  const DatasetStats dstats = dataset_stats(ds);
  std::fputs(format_dataset_details(dstats).c_str(), stderr);

  EngineConfig ec = engine_config_from_llm_args(cfg.llm_args, o.checkpoint_dir());
  Engine engine(ec);
  const bool latency = o.mode == BenchMode::kLatency;
  const bool streaming = latency || o.streaming;
  const int64_t concurrency = latency ? 1 : o.concurrency;
  Runner runner{engine, cfg, ds, streaming};
  if (o.warmup > 0) {
    log_info("warming up with {} requests", o.warmup);
    runner.run(warmup_indices(ds.requests.size(), o.warmup), concurrency, true, nullptr);
  }
  engine.take_iteration_stats();  // warm-up iterations are not logged
  std::vector<size_t> all(ds.requests.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  std::vector<RequestRecord> records;
  {
    ProgressBar bar(static_cast<int64_t>(all.size()), "Benchmarking");
    records = runner.run(all, concurrency, false, &bar);
    bar.finish();
  }
  if (!o.iteration_log.empty()) {
    IterationLogWriter w(o.iteration_log);
    for (const auto& s : engine.take_iteration_stats()) {
      IterationStats r;
      // The step's wall-clock time: steady-clock start shifted by the current steady-to-system offset.
      const auto wall = std::chrono::system_clock::now() -
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(
                            std::chrono::duration<double>(now_seconds() - s.start));
      const std::time_t tt = std::chrono::system_clock::to_time_t(wall);
      char buf[32];
      std::strftime(buf, sizeof buf, "%m-%d-%Y %H:%M:%S", std::localtime(&tt));
      r.timestamp = buf;
      r.iter = s.step;
      r.iter_latency_ms = (s.end - s.start) * 1e3;
      r.num_active_requests = s.sched.n_running;
      r.num_queued_requests = s.sched.n_waiting;
      r.max_num_active_requests = ec.max_batch_size;
      r.kv_cache_stats.max_num_blocks = engine.kv_blocks();
      r.kv_cache_stats.free_num_blocks = s.sched.n_blocks_free;
      r.kv_cache_stats.used_num_blocks = s.sched.n_blocks_used;
      r.kv_cache_stats.tokens_per_block = ec.tokens_per_block;
      r.inflight_batching_stats.num_scheduled_requests = s.sched.batch_size;
      r.inflight_batching_stats.num_context_requests = s.sched.batch_size - s.sched.n_decode_tokens;
      r.inflight_batching_stats.num_gen_requests = s.sched.n_decode_tokens;
      r.inflight_batching_stats.num_ctx_tokens = s.sched.n_prefill_tokens;
      w.write(r);
    }
  }
  BenchStatistics st = compute_bench_statistics(records);
  BenchRunInfo info;
  info.model = o.model.empty() ? o.checkpoint_dir() : o.model;
  info.model_path = o.checkpoint_dir();
  info.backend = ec.backend == "cuda" ? "Pytorch" : "Pytorch (dsv3 cpu)";
  info.streaming = streaming;
  fill_run_info(info, cfg.llm_args);
  info.max_batch_size = ec.max_batch_size;
  info.max_num_tokens = ec.max_num_tokens;
  auto dict = bench_statistics_json(info, st, dstats);
  std::fputs(format_bench_report(dict).c_str(), stdout);
  if (!o.report_json.empty()) write_json_file(o.report_json, dict);
  auto detok = [&](const std::vector<int32_t>& ids) {
    return engine.tokenizer() ? engine.tokenizer()->decode(ids, true) : std::string();
  };
  if (!o.output_json.empty()) write_json_file(o.output_json, output_json(records, detok));
  if (!o.request_json.empty()) write_json_file(o.request_json, request_json(records, detok));
  return 0;
}

}  // namespace dsv3::tools
