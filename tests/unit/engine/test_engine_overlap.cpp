// test_engine_overlap.cpp: the engine's overlap scheduler on a device-like backend that queues its ops as a GPU
// stream does (tests/unit/device_like_backend.h, deferred: nothing runs until the host waits), so step n+1 really is
// built and launched before step n's ids exist on the host. Every workload must give exactly what the synchronous
// engine on the CPU backend gives — tokens, texts, finish reasons, logprobs — for greedy and seeded sampling, EOS,
// stop tokens and stop strings, max_tokens 1, host-sampled rows (penalties, min_tokens) that force synchronous steps,
// chunked prefill, preemption, CUDA-graph decode steps, staggered arrivals and aborts; EngineConfig::check_integrity
// runs the scheduler's and the engine's checkers after every step (tests/unit/engine, label cpu).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "dsv3/engine/engine.h"
#include "dsv3/io/tiny_model.h"
#include "unit/device_like_backend.h"
#include "unit/engine/micro_model.h"

namespace dsv3 {
namespace {
namespace fs = std::filesystem;

const std::string& micro_dir() {
  static const std::string dir = write_micro_model("dsv3_engine_overlap_micro", 7);
  return dir;
}

// The tiny preset with the DeepSeek-V3 tokenizer ("" without it).
const std::string& tiny_with_tokenizer() {
  static const std::string dir = write_tiny_with_tokenizer("dsv3_engine_overlap_tiny");
  return dir;
}

EngineConfig base_config(const std::string& dir) { return engine_test_config(dir); }

enum class Mode {
  kCpu,           // the CPU backend: host-visible, every step synchronous (the reference)
  kDeviceSync,    // the device-like backend with the overlap scheduler off
  kDeviceOverlap  // the device-like backend with the overlap scheduler on
};

struct RunResult {
  std::vector<RequestOutput> outputs;
  std::vector<EngineStepStats> stats;
  int64_t fill_rows = 0;
  int captures = 0;
  int64_t overlapped_steps() const {
    return std::count_if(stats.begin(), stats.end(), [](const EngineStepStats& s) { return s.overlapped; });
  }
};

struct Workload {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SamplingParams> params;
  std::vector<int> delay_ms;  // submit time after the first (staggered arrivals); empty: all at once
};

std::unique_ptr<Engine> make_engine(Mode mode, EngineConfig cfg, DeviceLikeBackend** dev, bool graphs = false) {
  *dev = nullptr;
  if (mode == Mode::kCpu) {
    cfg.backend = "cpu";
    return std::make_unique<Engine>(cfg);
  }
  cfg.overlap_scheduler = mode == Mode::kDeviceOverlap;
  auto b = std::make_unique<DeviceLikeBackend>(DeviceLikeBackend::Options{.deferred = true, .graphs = graphs});
  *dev = b.get();
  return std::make_unique<Engine>(cfg, std::move(b));
}

RunResult run(Mode mode, const EngineConfig& cfg, const Workload& w, bool graphs = false) {
  DeviceLikeBackend* dev = nullptr;
  std::unique_ptr<Engine> e = make_engine(mode, cfg, &dev, graphs);
  EXPECT_EQ(e->overlap(), mode == Mode::kDeviceOverlap);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    if (!w.delay_ms.empty()) std::this_thread::sleep_until(t0 + std::chrono::milliseconds(w.delay_ms[i]));
    hs.push_back(e->submit({w.prompts[i], w.params[i], true}));
  }
  RunResult r;
  for (auto& h : hs) {
    // Streamed deltas concatenate to the final output, one time stamp per token, in order.
    std::vector<int32_t> ids;
    std::string text;
    RequestOutput d;
    while (h->next(d)) {
      ids.insert(ids.end(), d.token_ids_delta.begin(), d.token_ids_delta.end());
      text += d.text_delta;
    }
    RequestOutput o = h->wait();
    EXPECT_TRUE(o.error.empty()) << o.error;
    EXPECT_EQ(ids, o.token_ids) << "request " << o.request_id;
    EXPECT_EQ(text, o.text) << "request " << o.request_id;
    EXPECT_EQ(o.timings.token_times.size(), o.token_ids.size());
    EXPECT_TRUE(std::is_sorted(o.timings.token_times.begin(), o.timings.token_times.end()));
    r.outputs.push_back(std::move(o));
  }
  e->wait_idle();
  r.stats = e->take_iteration_stats();
  for (const EngineStepStats& s : r.stats) {
    // [start, end]: the loop iteration that launched the step; an overlapped step is applied later.
    EXPECT_LE(s.start, s.end);
    if (s.overlapped) EXPECT_LE(s.end, s.applied);
    else EXPECT_EQ(s.end, s.applied);
  }
  if (dev) {
    r.fill_rows = dev->fill_rows;
    r.captures = dev->captures;
  }
  return r;
}

void expect_same(const RunResult& want, const RunResult& got, const std::string& what) {
  ASSERT_EQ(want.outputs.size(), got.outputs.size());
  for (size_t i = 0; i < want.outputs.size(); ++i) {
    const RequestOutput &a = want.outputs[i], &b = got.outputs[i];
    EXPECT_EQ(a.token_ids, b.token_ids) << what << ": request " << i;
    EXPECT_EQ(a.text, b.text) << what << ": request " << i;
    EXPECT_EQ(a.finish_reason, b.finish_reason) << what << ": request " << i;
    EXPECT_EQ(a.logprobs, b.logprobs) << what << ": request " << i;  // the same CPU code: bitwise
    EXPECT_EQ(a.top_logprobs.size(), b.top_logprobs.size()) << what << ": request " << i;
  }
}

std::vector<int32_t> random_prompt(std::mt19937& rng, int len, int vocab = 1000) {
  std::uniform_int_distribution<int> d(2, vocab - 1);
  std::vector<int32_t> p;
  for (int i = 0; i < len; ++i) p.push_back(d(rng));
  return p;
}

SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

// Greedy and seeded requests, EOS and stop tokens taken from the unconstrained outputs (so that they do stop, while
// the next step is already in flight), max_tokens 1, the chosen token's logprob, and rows the host must sample
// (repetition penalty; min_tokens with an EOS) that turn their steps synchronous.
Workload mixed_workload(uint64_t seed, int n) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  Workload w;
  for (int i = 0; i < n; ++i) {
    w.prompts.push_back(random_prompt(rng, 3 + (i * 11) % 40));
    SamplingParams p = greedy(10 + (i * 5) % 14);
    if (i % 2) {
      p.temperature = 0.9f;
      p.top_p = 0.95f;
      p.seed = 100 + i;
    }
    if (i % 5 == 3) p.logprobs = 0;
    if (i % 7 == 2) p.max_tokens = 1;
    w.params.push_back(p);
  }
  // EOS / stop tokens taken from a reference run's outputs (the request stops at the token's first occurrence).
  const RunResult ref = run(Mode::kCpu, base_config(micro_dir()), w);
  for (int i = 0; i < n; ++i) {
    const auto& out = ref.outputs[i].token_ids;
    if (out.size() < 9 || i % 3 == 2) continue;
    if (i % 3 == 0) {
      w.params[i].ignore_eos = false;
      w.params[i].end_id = out[i % 8];
    } else {
      w.params[i].stop_token_ids = {out[i % 8], 999};
    }
  }
  SamplingParams pen = greedy(4);
  pen.repetition_penalty = 1.2f;
  w.prompts.push_back(random_prompt(rng, 17));
  w.params.push_back(pen);
  SamplingParams min_tok = greedy(8);
  min_tok.ignore_eos = false;
  min_tok.end_id = 5;
  min_tok.min_tokens = 2;  // masked on the host for 2 steps, then the backend samples it
  w.prompts.push_back(random_prompt(rng, 9));
  w.params.push_back(min_tok);
  return w;
}

TEST(EngineOverlap, MixedRequestsMatchTheSynchronousEngine) {
  const Workload w = mixed_workload(1, 14);
  const EngineConfig cfg = base_config(micro_dir());
  const RunResult want = run(Mode::kCpu, cfg, w);
  const RunResult sync = run(Mode::kDeviceSync, cfg, w);
  const RunResult over = run(Mode::kDeviceOverlap, cfg, w);
  expect_same(want, sync, "device, overlap off");
  expect_same(want, over, "device, overlap on");
  int stopped = 0, length = 0;
  for (const auto& o : want.outputs) (o.finish_reason == FinishReason::kStop ? stopped : length)++;
  EXPECT_GE(stopped, 6) << "the workload was meant to stop requests on EOS / stop tokens";
  EXPECT_GE(length, 4);
  EXPECT_EQ(want.overlapped_steps(), 0);
  EXPECT_EQ(sync.overlapped_steps(), 0);
  EXPECT_EQ(sync.fill_rows, 0);
  // Most steps overlap; the ones with a host-sampled row (penalty, min_tokens) do not.
  EXPECT_GT(over.overlapped_steps(), static_cast<int64_t>(over.stats.size()) / 3);
  EXPECT_LT(over.overlapped_steps(), static_cast<int64_t>(over.stats.size()));
  EXPECT_GT(over.fill_rows, 30) << "decode inputs were meant to come from the device";
}

TEST(EngineOverlap, ChunkedPrefillAndPreemptionMatch) {
  const Workload w = mixed_workload(2, 10);
  EngineConfig chunked = base_config(micro_dir());
  chunked.enable_chunked_prefill = true;
  chunked.max_num_tokens = 16;
  const RunResult want = run(Mode::kCpu, base_config(micro_dir()), w);
  expect_same(want, run(Mode::kDeviceOverlap, chunked, w), "chunked prefill");

  // Longer requests (up to 9 blocks of 16) in a pool of 12 blocks under max_utilization: preemption.
  std::mt19937 rng(2);
  Workload longer;
  for (int i = 0; i < 8; ++i) {
    longer.prompts.push_back(random_prompt(rng, 20 + 13 * i));
    SamplingParams p = greedy(20 + i);
    if (i % 3 == 0) {
      p.temperature = 1.0f;
      p.seed = 7 + i;
    }
    longer.params.push_back(p);
  }
  EngineConfig tight = base_config(micro_dir());
  tight.policy = sched::CapacityPolicy::kMaxUtilization;
  tight.tokens_per_block = 16;
  tight.kv_max_tokens = 16 * 12;
  tight.enable_chunked_prefill = true;
  tight.max_num_tokens = 48;
  const RunResult pre = run(Mode::kDeviceOverlap, tight, longer);
  expect_same(run(Mode::kCpu, base_config(micro_dir()), longer), pre, "preemption");
  int64_t preempted = 0;
  for (const auto& s : pre.stats) preempted += s.sched.n_preempted;
  EXPECT_GT(preempted, 0) << "the pool was meant to force preemption";
  EXPECT_GT(pre.overlapped_steps(), 0);
}

TEST(EngineOverlap, CudaGraphDecodeStepsTakeTheirIdsFromTheDevice) {
  const Workload w = mixed_workload(3, 8);
  EngineConfig cfg = base_config(micro_dir());
  const RunResult want = run(Mode::kCpu, cfg, w);
  cfg.cuda_graph_batch_sizes = {1, 2, 4, 8, 16};
  cfg.cuda_graph_padding = true;
  const RunResult over = run(Mode::kDeviceOverlap, cfg, w, /*graphs=*/true);
  expect_same(want, over, "captured decode steps, overlap on");
  EXPECT_GT(over.captures, 0);
  EXPECT_GT(over.fill_rows, 20);
  expect_same(want, run(Mode::kDeviceSync, cfg, w, /*graphs=*/true), "captured decode steps, overlap off");
}

TEST(EngineOverlap, StaggeredArrivalsMatch) {
  Workload w = mixed_workload(4, 16);
  for (size_t i = 0; i < w.prompts.size(); ++i) w.delay_ms.push_back(static_cast<int>(i) * 7);
  const RunResult want = run(Mode::kCpu, base_config(micro_dir()), w);
  expect_same(want, run(Mode::kDeviceOverlap, base_config(micro_dir()), w), "staggered arrivals");
}

TEST(EngineOverlap, StopStringsAndTextMatch) {
  const std::string dir = tiny_with_tokenizer();
  if (dir.empty()) GTEST_SKIP() << "models/tokenizers/deepseek-v3 absent (run scripts/setup.sh)";
  EngineConfig cfg = base_config(dir);
  LLM llm(cfg);
  Workload w;
  const std::vector<std::string> texts = {"The capital of France is", "Hello, my name is", "1, 2, 3,",
                                          "The future of AI is"};
  for (const auto& t : texts) w.prompts.push_back(llm.tokenizer()->encode(t, true));
  for (size_t i = 0; i < texts.size(); ++i) w.params.push_back(greedy(20));
  RunResult free_run = run(Mode::kCpu, cfg, w);
  // Stop strings cut from the unconstrained texts: the request stops mid-stream, with a step in flight.
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string& t = free_run.outputs[i].text;
    ASSERT_GE(t.size(), 8u);
    w.params[i].stop = {t.substr(t.size() / 2, 3)};
    w.params[i].include_stop_str_in_output = i % 2 == 1;
  }
  w.params[1].temperature = 0.8f;
  w.params[1].seed = 7;
  const RunResult want = run(Mode::kCpu, cfg, w);
  const RunResult over = run(Mode::kDeviceOverlap, cfg, w);
  expect_same(want, over, "stop strings");
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(want.outputs[i].finish_reason, FinishReason::kStop) << i;
  EXPECT_GT(over.overlapped_steps(), 0);
}

TEST(EngineOverlap, AbortMidStreamAndShutdownWithAStepInFlight) {
  std::mt19937 rng(9);
  EngineConfig cfg = base_config(micro_dir());
  cfg.enable_block_reuse = false;
  cfg.kv_max_tokens = 64 * 8;
  const std::vector<int32_t> long_prompt = random_prompt(rng, 40), other = random_prompt(rng, 12);
  const RunResult ref = run(Mode::kCpu, cfg, {{long_prompt, other}, {greedy(200), greedy(30)}, {}});
  DeviceLikeBackend* dev = nullptr;
  {
    std::unique_ptr<Engine> e = make_engine(Mode::kDeviceOverlap, cfg, &dev);
    auto h = e->submit({long_prompt, greedy(200), true});
    auto h2 = e->submit({other, greedy(30), false});
    RequestOutput d;
    size_t seen = 0;
    while (seen < 5 && h->next(d)) seen += d.token_ids_delta.size();
    e->abort(h->id());
    RequestOutput fin = h->wait();
    EXPECT_EQ(fin.finish_reason, FinishReason::kCancelled);
    EXPECT_TRUE(fin.error.empty()) << fin.error;
    ASSERT_LT(fin.token_ids.size(), 200u);
    EXPECT_TRUE(std::equal(fin.token_ids.begin(), fin.token_ids.end(), ref.outputs[0].token_ids.begin()))
        << "an aborted request's tokens are a prefix of its unconstrained output";
    EXPECT_EQ(h2->wait().token_ids, ref.outputs[1].token_ids) << "the other request is unaffected";
    e->wait_idle();
    // Nothing leaked: a request needing every block fits.
    auto all = e->submit({random_prompt(rng, 64 * 8 - 1), greedy(1), false})->wait();
    EXPECT_TRUE(all.error.empty()) << all.error;
    // Destroyed while a request decodes (a step is in flight at almost every moment).
    auto h3 = e->submit({long_prompt, greedy(400), true});
    ASSERT_TRUE(h3->next(d));
    e.reset();
    RequestOutput f3 = h3->wait();
    EXPECT_EQ(f3.finish_reason, FinishReason::kCancelled);
    EXPECT_NE(f3.error.find("shut down"), std::string::npos);
  }
}

// The same on the GPU (skipped without one): the overlap scheduler on the CUDA backend, with CUDA graphs (their
// decode steps take their ids from the device into the captured id buffer) and without. Requests run one at a time,
// so that both engines run the same shapes: the kernels then give bit-identical results. A batched run with overlap
// must also finish every request without an error.
TEST(EngineOverlap, CudaBackendOverlapMatchesSynchronous) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const Workload w = mixed_workload(5, 10);
  for (bool graphs : {false, true}) {
    EngineConfig cfg = base_config(micro_dir());
    cfg.backend = "cuda";
    if (graphs) {
      cfg.cuda_graph_batch_sizes = {1, 2, 4, 8, 16};
      cfg.cuda_graph_padding = true;
    }
    RunResult by_mode[2];
    for (int overlap : {0, 1}) {
      cfg.overlap_scheduler = overlap == 1;
      Engine e(cfg);
      EXPECT_EQ(e.overlap(), overlap == 1);
      for (size_t i = 0; i < w.prompts.size(); ++i) {
        RequestOutput o = e.submit({w.prompts[i], w.params[i], false})->wait();
        EXPECT_TRUE(o.error.empty()) << o.error;
        by_mode[overlap].outputs.push_back(std::move(o));
      }
      e.wait_idle();
      by_mode[overlap].stats = e.take_iteration_stats();
    }
    expect_same(by_mode[0], by_mode[1], graphs ? "cuda, graphs" : "cuda, eager");
    EXPECT_EQ(by_mode[0].overlapped_steps(), 0);
    EXPECT_GT(by_mode[1].overlapped_steps(), static_cast<int64_t>(by_mode[1].stats.size()) / 2);
    cfg.overlap_scheduler = true;
    Engine e(cfg);
    std::vector<std::shared_ptr<RequestHandle>> hs;
    for (size_t i = 0; i < w.prompts.size(); ++i) hs.push_back(e.submit({w.prompts[i], w.params[i], false}));
    for (auto& h : hs) {
      RequestOutput o = h->wait();
      EXPECT_TRUE(o.error.empty()) << o.error;
      EXPECT_FALSE(o.token_ids.empty());
    }
  }
}

// The harness itself: a deferred backend runs nothing until the host waits, so reading pinned memory before the
// fence shows stale bytes — the bug the overlap path must not have — and a copy into pageable memory waits.
TEST(EngineOverlap, DeferredBackendRunsWorkOnlyWhenTheHostWaits) {
  DeviceLikeBackend b(DeviceLikeBackend::Options{.deferred = true});
  Tensor src(DType::kI32, {4}, b.allocator()), ids(DType::kI32, {4}, b.allocator());
  Tensor pinned(DType::kI32, {4}, b.pinned_host_allocator());
  const std::vector<int32_t> v = {7, -1, 9, 3}, start = {100, 101, 102, 103}, map = {2, 0, 0, 3, 3, 1};
  Tensor map_dev(DType::kI32, {3, 2}, b.allocator());
  b.copy(src.view(), TensorView{const_cast<int32_t*>(v.data()), DType::kI32, {4}, Device::kCpu});
  b.copy(ids.view(), TensorView{const_cast<int32_t*>(start.data()), DType::kI32, {4}, Device::kCpu});
  b.copy(map_dev.view(), TensorView{const_cast<int32_t*>(map.data()), DType::kI32, {3, 2}, Device::kCpu});
  b.fill_token_ids({.ids = ids, .map = map_dev, .src = src});
  b.copy(pinned.view(), ids.view());
  auto fence = b.make_fence();
  fence->record();
  EXPECT_EQ(pinned.as<int32_t>()[0], -1) << "ran before the host waited (pinned memory starts poisoned)";
  fence->wait();
  // ids[2] = src[0] = 7, ids[0] = src[3] = 3, ids[3] = src[1] = -1 -> 0 (a sampler failure code becomes id 0).
  EXPECT_EQ(std::vector<int32_t>(pinned.as<int32_t>(), pinned.as<int32_t>() + 4), (std::vector<int32_t>{3, 101, 7, 0}));
  // A pair outside ids is a bug in the caller: the op aborts (where the CUDA kernel flags kErrFillTokens).
  auto bad_fill = [&] {
    const std::vector<int32_t> bad = {4, 0};
    Tensor bad_dev(DType::kI32, {1, 2}, b.allocator());
    b.copy(bad_dev.view(), TensorView{const_cast<int32_t*>(bad.data()), DType::kI32, {1, 2}, Device::kCpu});
    b.fill_token_ids({.ids = ids, .map = bad_dev, .src = src});
    b.synchronize();
  };
  EXPECT_DEATH(bad_fill(), "fill_token_ids: pair 0 = \\(4, 0\\) outside ids \\[4\\]");
}

}  // namespace
}  // namespace dsv3
