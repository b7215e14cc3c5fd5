// engine.cpp: the engine thread — admission, one model step, sampling, streaming, finishing, and the overlap
// scheduler's launch-ahead (engine).
#include "dsv3/engine/engine.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "dsv3/base/log.h"
#include "dsv3/engine/memory_plan.h"
#include "dsv3/base/thread_pool.h"
#include "dsv3/base/timer.h"

namespace dsv3 {

struct Engine::Live {
  std::shared_ptr<RequestHandle> handle;
  SamplingParams params;
  uint64_t seed = 0;
  bool streaming = true;
  std::unique_ptr<IncrementalDetokenizer> detok;
  StopChecker stop;
  RequestOutput out;      // cumulative
  size_t sent_tokens = 0; // token_ids already delivered in a delta
  size_t sent_text = 0;   // bytes of text already delivered
  Live(const SamplingParams& p) : params(p), stop(p) {}
};

Engine::Engine(const EngineConfig& config) : Engine(config, make_backend(config.backend, config.op_numerics)) {}

Engine::Engine(const EngineConfig& config, std::unique_ptr<Backend> backend)
    : config_(config), backend_(std::move(backend)) {
  CHECK(backend_ != nullptr, "Engine: no backend");
  weights_ = WeightSource::open(config_.model_dir, config_.load_format, config_.dummy_seed);
  const ModelConfig& mc = weights_->config();
  max_seq_len_ = config_.max_seq_len > 0 ? config_.max_seq_len
                                         : static_cast<int>(std::min<int64_t>(mc.max_position_embeddings, 1 << 30));
  EXPECT(config_.max_batch_size > 0 && config_.max_num_tokens > 0, "max_batch_size and max_num_tokens must be > 0");
  EXPECT(config_.tokens_per_block > 0, "tokens_per_block must be > 0");
  const int64_t bs = config_.tokens_per_block;

  // GPU memory plan (memory_plan.h): checked before loading, so a model that cannot fit fails in a second with the
  // numbers, not after minutes of loading or in the middle of a step; then redone with the free memory measured
  // after loading, which sizes the KV pool.
  const MemoryPlanOptions plan_opt{.numerics = config_.numerics,
                                   .fp8_checkpoint = mc.quant.fp8,
                                   .mtp = false,  // loaded without its MTP layer (below)
                                   .max_num_tokens = config_.max_num_tokens,
                                   .max_batch_size = config_.max_batch_size,
                                   .max_seq_len = max_seq_len_,
                                   .tokens_per_block = bs,
                                   .kv_max_tokens = config_.kv_max_tokens,
                                   .kv_free_gpu_mem_fraction = config_.kv_free_gpu_mem_fraction,
                                   .enable_chunked_prefill = config_.enable_chunked_prefill};
  DeviceMemory dev{.total = backend_->total_device_memory(), .free = backend_->free_device_memory()};
  const bool gpu = dev.free >= 0;
  if (gpu) expect_fits(plan_memory(mc, plan_opt, dev));

  const double t0 = now_seconds();
  model_ = std::make_unique<DeepseekV3>(mc, load_model_weights(*weights_, *backend_, config_.numerics, false), *backend_,
                                        config_.numerics);
  log_weight_load(now_seconds() - t0);
  const std::string tok_dir = config_.tokenizer_dir.empty() ? config_.model_dir : config_.tokenizer_dir;
  if (std::filesystem::exists(tok_dir + "/tokenizer.json")) tokenizer_ = Tokenizer::load(tok_dir);
  else if (!config_.tokenizer_dir.empty()) FAIL("--tokenizer {}: no tokenizer.json there", tok_dir);

  const int64_t block_bytes = model_->n_cache_layers() * bs * mc.kv_entry_dim() * 2;
  const int64_t max_tokens_blocks = config_.kv_max_tokens > 0 ? (config_.kv_max_tokens + bs - 1) / bs : -1;
  if (gpu) {
    // KV pool (TensorRT-LLM's rule): free_gpu_memory_fraction of the memory free after the weights, the workspace
    // and the CUDA-graph reserve, capped by kv_cache_config.max_tokens when that is set too.
    backend_->synchronize();
    dev.free_after_weights = backend_->free_device_memory();
    const MemoryPlan plan = plan_memory(mc, plan_opt, dev);
    log_info("memory plan (GPU {}):", backend_->name());
    std::string table = format_memory_plan(plan);
    for (size_t b = 0, e; b < table.size(); b = e + 1) {
      e = table.find('\n', b);
      log_info("{}", table.substr(b, e - b));
    }
    if (static_cast<int64_t>(model_->weight_bytes()) != plan.weight_bytes)
      log_warn("the loaded weights hold {} bytes, the plan computed {} from config.json (tensor dtypes differ from "
               "the config's quantization?)", model_->weight_bytes(), plan.weight_bytes);
    expect_fits(plan);
    CHECK(plan.kv_block_bytes == block_bytes, "memory plan: KV block of {} bytes, the cache needs {}",
          plan.kv_block_bytes, block_bytes);
    kv_blocks_ = plan.kv_blocks;
  } else {
    // CPU: kv_cache_config.max_tokens, or the byte budget.
    kv_blocks_ = max_tokens_blocks > 0 ? max_tokens_blocks : config_.kv_cpu_bytes / block_bytes;
    // Never more than every request could use at once.
    kv_blocks_ = std::min<int64_t>(kv_blocks_, int64_t(config_.max_batch_size) * ((max_seq_len_ + bs - 1) / bs) + 1);
  }
  EXPECT(kv_blocks_ >= 1, "the KV cache budget holds no block of {} tokens ({} bytes each)", bs, block_bytes);
  {
    AllocationPurpose why(fmt::format("the KV cache pool ({} blocks of {} tokens)", kv_blocks_, bs));
    cache_ = std::make_unique<KvCache>(model_->n_cache_layers(), kv_blocks_, bs, mc.kv_entry_dim(),
                                       backend_->allocator());
  }
  log_info("KV cache: {} blocks of {} tokens ({:.1f} MB)", kv_blocks_, bs, cache_->nbytes() / 1e6);
  // CUDA graphs: padding rows of a captured step write their KV entry into a block no sequence owns (the last).
  const bool graphs = !config_.cuda_graph_batch_sizes.empty() && !backend_->host_visible() && kv_blocks_ >= 2;
  if (graphs) {
    CudaGraphOptions go;
    for (int s : config_.cuda_graph_batch_sizes)
      if (s <= config_.max_batch_size) go.batch_sizes.push_back(s);
    std::sort(go.batch_sizes.begin(), go.batch_sizes.end());
    go.padding = config_.cuda_graph_padding;
    go.max_blocks_per_seq = static_cast<int>((max_seq_len_ + bs - 1) / bs);
    go.pad_block = static_cast<int32_t>(kv_blocks_ - 1);
    model_->set_cuda_graphs(go);
    if (!go.batch_sizes.empty())
      log_info("CUDA graphs for decode steps of {} batch sizes up to {}{}", go.batch_sizes.size(), go.batch_sizes.back(),
               go.padding ? " (padded)" : "");
  }
  sched::SchedulerConfig sc;
  sc.max_batch_size = config_.max_batch_size;
  sc.max_num_tokens = config_.max_num_tokens;
  sc.max_seq_len = max_seq_len_;
  sc.enable_chunked_prefill = config_.enable_chunked_prefill;
  sc.policy = config_.policy;
  sc.tokens_per_block = static_cast<int>(bs);
  sc.n_blocks = static_cast<int>(graphs ? kv_blocks_ - 1 : kv_blocks_);
  sc.enable_block_reuse = config_.enable_block_reuse;
  sched_ = std::make_unique<sched::Scheduler>(sc);
  sampler_ = std::make_unique<Sampler>(SamplerConfig{.vocab_size = static_cast<int>(mc.vocab_size)});
  const char* gpu_sampling_env = std::getenv("DSV3_GPU_SAMPLING");
  backend_sampling_ = config_.backend_sampling == BackendSampling::kAlways ||
                      (config_.backend_sampling == BackendSampling::kAuto && !backend_->host_visible() &&
                       !(gpu_sampling_env && std::strcmp(gpu_sampling_env, "0") == 0));
  if (backend_sampling_) log_info("sampling on the {} backend (DSV3_GPU_SAMPLING=0: on the host)", backend_->name());
  if (backend_sampling_) {
    // Sized once for the largest step (one logit row per request): a buffer that a step in flight reads is never
    // reallocated.
    const int64_t cap = config_.max_batch_size;
    AllocationPurpose why(fmt::format("the sampled ids of two steps ({} rows each)", cap));
    for (SampleSlot& s : slots_) {
      s.tokens = Tensor(DType::kI32, {cap}, backend_->allocator());
      s.logprobs = Tensor(DType::kF32, {cap}, backend_->allocator());
      s.host_tokens = Tensor(DType::kI32, {cap}, backend_->pinned_host_allocator());
      s.host_logprobs = Tensor(DType::kF32, {cap}, backend_->pinned_host_allocator());
      s.fence = backend_->make_fence();
    }
  }
  overlap_ = config_.overlap_scheduler && backend_sampling_ && !backend_->host_visible();
  if (overlap_) {
    log_info("overlap scheduler: on (each step is launched before the previous step's tokens are read back)");
  } else {
    log_info("overlap scheduler: off ({})", !config_.overlap_scheduler ? "disable_overlap_scheduler"
                                            : backend_->host_visible() ? "a host backend"
                                                                       : "sampling on the host");
  }
  thread_ = std::thread([this] { loop(); });
}

void Engine::log_weight_load(double seconds) const {
  log_info("{} ({} backend, {} numerics)", weight_load_summary(model_->weights(), seconds), backend_->name(),
           config_.numerics == Numerics::kFp8 ? "fp8" : "bf16");
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<RequestHandle> Engine::submit(GenerateRequest req) {
  const ModelConfig& mc = model_->config();
  EXPECT(!req.prompt_ids.empty(), "request: the prompt is empty");
  for (int32_t id : req.prompt_ids)
    EXPECT(id >= 0 && id < mc.vocab_size, "request: prompt token id {} outside the vocabulary [0, {})", id,
           mc.vocab_size);
  if (!req.params.end_id && !req.params.ignore_eos) req.params.end_id = static_cast<int32_t>(mc.eos_token_id);
  req.params.validate(static_cast<int>(mc.vocab_size));
  EXPECT(req.params.n == 1, "request: n = {} is not supported (n must be 1)", req.params.n);
  EXPECT(req.params.stop.empty() || tokenizer_, "request: stop strings need a tokenizer, and {} has none",
         config_.model_dir);
  const int64_t total = static_cast<int64_t>(req.prompt_ids.size()) + req.params.max_tokens;
  EXPECT(total <= max_seq_len_, "request: prompt ({} tokens) + max_tokens ({}) = {} exceeds max_seq_len {}",
         req.prompt_ids.size(), req.params.max_tokens, total, max_seq_len_);
  std::shared_ptr<RequestHandle> h;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t id = next_id_++;
    h = std::make_shared<RequestHandle>(id);
    incoming_.emplace_back(id, std::move(req));
    incoming_handles_.push_back(h);
  }
  cv_.notify_all();
  return h;
}

void Engine::abort(int64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborts_.push_back(id);
  }
  cv_.notify_all();
}

void Engine::wait_idle() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return incoming_.empty() && !busy_; });
}

std::vector<EngineStepStats> Engine::take_iteration_stats() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<EngineStepStats> out;
  out.swap(stats_);
  return out;
}

void Engine::admit_incoming() {
  std::deque<std::pair<int64_t, GenerateRequest>> in;
  std::vector<std::shared_ptr<RequestHandle>> handles;
  std::vector<int64_t> aborts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    in.swap(incoming_);
    handles.swap(incoming_handles_);
    aborts.swap(aborts_);
  }
  for (size_t i = 0; i < in.size(); ++i) {
    auto& [id, req] = in[i];
    auto live = std::make_unique<Live>(req.params);
    live->handle = handles[i];
    live->seed = seeds_.seed_for(req.params);
    live->streaming = req.streaming;
    if (tokenizer_) live->detok = std::make_unique<IncrementalDetokenizer>(*tokenizer_, true);
    live->out.request_id = id;
    live->out.prompt_token_ids = req.prompt_ids;
    live->out.timings.arrival = now_seconds();
    Live& ref = *live;
    live_.emplace(id, std::move(live));
    try {
      sched_->add(id, std::move(req.prompt_ids), req.params.max_tokens);
    } catch (const Error& e) {
      ref.out.error = e.what();
      finish(id, FinishReason::kCancelled, e.what());
    }
  }
  for (int64_t id : aborts) {
    if (!live_.count(id)) continue;  // unknown or already finished
    sched_->abort(id);
    finish(id, FinishReason::kCancelled);
  }
}

void Engine::emit(Live& live, bool final) {
  RequestOutput& o = live.out;
  o.finished = final;
  if (!live.streaming && !final) return;
  o.token_ids_delta.assign(o.token_ids.begin() + live.sent_tokens, o.token_ids.end());
  o.text_delta = o.text.substr(live.sent_text);
  if (!final && o.token_ids_delta.empty() && o.text_delta.empty()) return;
  live.sent_tokens = o.token_ids.size();
  live.sent_text = o.text.size();
  live.handle->push(o);
}

void Engine::finish(int64_t id, FinishReason reason, const std::string& error) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  Live& live = *it->second;
  if (!live.stop.finished()) live.out.text += live.stop.finish(reason);
  live.out.finish_reason = live.stop.finish_reason();
  live.out.stop_match = live.stop.stop_match();
  if (!error.empty()) live.out.error = error;
  live.out.timings.end = now_seconds();
  emit(live, true);
  live_.erase(it);
}

// One ragged batch from a SchedulerOutput: generated positions (absorbed form) first, then prompt positions (naive
// form). A placeholder input (sched::kPendingToken) becomes a row that the model fills on the device from the ids of
// the step in flight. row_ids: the request of each logit row, in order.
ForwardBatch Engine::build_batch(const sched::SchedulerOutput& so, std::vector<int64_t>* row_ids) {
  ForwardBatch batch;
  struct Part {
    size_t entry;
    int begin, end;  // token indices within the request
  };
  std::vector<Part> absorbed, naive;
  for (size_t e = 0; e < so.entries.size(); ++e) {
    const auto& ch = so.entries[e];
    const sched::Request* r = sched_->find(ch.request_id);
    CHECK(r != nullptr, "scheduled request {} unknown", ch.request_id);
    live_.at(ch.request_id)->out.n_cached_tokens = std::max(0, r->n_cached_tokens);
    const int begin = ch.start, end = ch.start + ch.n_tokens, split = std::clamp(r->n_prompt, begin, end);
    if (split > begin) naive.push_back({e, begin, split});
    if (end > split) absorbed.push_back({e, split, end});
  }
  // The ids of the step in flight (at most one: the host runs one step ahead), by request.
  CHECK(inflight_.size() <= 1, "{} steps in flight while building a step", inflight_.size());
  std::unordered_map<int64_t, int32_t> prev_row;
  if (!inflight_.empty()) {
    const InFlight& f = inflight_.back();
    for (size_t i = 0; i < f.row_ids.size(); ++i) prev_row[f.row_ids[i]] = static_cast<int32_t>(i);
    batch.device_tokens = slots_[f.slot].tokens.view().rows(0, static_cast<int64_t>(f.row_ids.size()));
  }
  std::vector<int32_t> last_row(so.entries.size(), -1);
  int32_t row = 0;
  auto add_part = [&](const Part& p, bool abs) {
    const auto& ch = so.entries[p.entry];
    for (int t = p.begin; t < p.end; ++t) {
      const int32_t id = ch.token_ids[t - ch.start];
      if (id == sched::kPendingToken) {
        auto it = prev_row.find(ch.request_id);
        CHECK(it != prev_row.end(), "request {}: a placeholder input without a step in flight that samples it",
              ch.request_id);
        batch.device_rows.push_back({.row = static_cast<int32_t>(batch.token_ids.size()), .index = it->second});
        batch.token_ids.push_back(kPendingTokenId);
      } else {
        batch.token_ids.push_back(id);
      }
    }
    batch.seqs.push_back({p.end - p.begin, p.begin, abs, ch.block_table});
    row += p.end - p.begin;
    if (p.end == ch.start + ch.n_tokens) last_row[p.entry] = row - 1;
  };
  for (const auto& p : absorbed) add_part(p, true);
  for (const auto& p : naive) add_part(p, false);
  if (batch.device_rows.empty()) batch.device_tokens = {};
  for (size_t e = 0; e < so.entries.size(); ++e)
    if (so.entries[e].needs_logits) {
      batch.logit_rows.push_back(last_row[e]);
      row_ids->push_back(so.entries[e].request_id);
    }
  return batch;
}

// The step contract with the overlap scheduler on (a device backend that samples on the backend):
//   schedule(n+1) -> build -> forward(n+1) -> if every logit row of n+1 samples on the backend: Backend::sample into
//   slots_[(n+1) % 2], an asynchronous copy of the ids to pinned memory, a fence, Scheduler::advance(n+1) -> wait for
//   step n's fence and apply step n (emit, stop, update, finish) while step n+1 runs.
// Otherwise step n+1 is synchronous: step n is applied first (host sampling needs each request's full history, and
// the scheduler takes steps in order), then n+1 is sampled and applied. A request that finishes at step n may sit
// in step n+1 already: its row there is dropped (never emitted), and its KV blocks are freed when step n is applied
// — after step n+1 was enqueued. NOTE: the backend runs one stream, so a later step that reuses those blocks runs
// after step n+1 has finished with them; the same holds for aborts and preemptions while a step is in flight.
bool Engine::step() {
  sched::SchedulerOutput so = sched_->schedule();
  if (so.empty()) {
    if (inflight_.empty()) return false;
    // Nothing new to launch (e.g. every running request's last output is in flight): take the step in flight.
    complete_inflight();
    return true;
  }
  EngineStepStats st;
  st.step = n_steps_++;
  st.start = now_seconds();
  st.sched = so.stats;
  step_ids_.clear();
  for (const auto& c : so.entries) step_ids_.push_back(c.request_id);
  std::vector<int64_t> row_ids;
  ForwardBatch batch = build_batch(so, &row_ids);
  st.n_logit_rows = static_cast<int>(row_ids.size());
  // Logits stay in backend memory when at least one row can be sampled there; the other rows' logits come back.
  bool all_backend = backend_sampling_;
  for (int64_t id : row_ids) {
    const bool b = backend_sampling_ && backend_can_sample(*live_.at(id), *sched_->find(id));
    batch.logits_on_device |= b;
    all_backend &= b;
  }
  ForwardOutput fo = model_->forward(batch, *cache_);
  const int slot = static_cast<int>(st.step % 2);
  if (overlap_ && all_backend) {
    InFlight f{.so = std::move(so), .row_ids = std::move(row_ids), .slot = slot, .st = st};
    f.want_logprobs = launch_sampling(fo.device_logits, f.row_ids, slot);
    f.st.overlapped = true;
    f.st.n_backend_sampled = f.st.n_logit_rows;
    sched_->advance(f.so);
    inflight_.push_back(std::move(f));
    step_ids_.clear();
    while (inflight_.size() > 1) complete_inflight();  // the previous step, while this one runs
    inflight_.back().st.end = now_seconds();
    return true;
  }
  while (!inflight_.empty()) complete_inflight();
  std::vector<SampleResult> res = sample_now(fo, batch.logits_on_device, row_ids, slot, &st.n_backend_sampled);
  apply(so, row_ids, res, st);
  step_ids_.clear();
  return true;
}

namespace {
// A Backend::sample id (or failure code) as the Sampler's result.
void decode_sampled(int32_t id, float logprob, bool want_logprob, int64_t vocab, SampleResult& res) {
  if (id == kSampleInvalidLogits) {
    res.error = "sampler: a logit is NaN or +inf";
  } else if (id == kSampleAllMasked) {
    res.error = "sampler: every token is masked (-inf logits)";
  } else {
    CHECK(id >= 0 && id < vocab, "Backend::sample returned token {} for vocabulary {}", id, vocab);
    res.token = id;
    if (want_logprob) res.logprob = logprob;
  }
}

// Backend::sample's parameters of one row. NOTE: n_output() counts the placeholder of a step in flight: the Philox
// counter the synchronous engine would use at this step.
SampleRowParams backend_row(const SamplingParams& p, uint64_t seed, const sched::Request& r) {
  return {.temperature = p.temperature, .top_k = p.top_k, .top_p = p.top_p, .min_p = p.min_p, .seed = seed,
          .seq_index = 0, .step = static_cast<uint32_t>(r.n_output())};
}

// The host Sampler's view of one row.
SamplerRow host_row(const float* logits, const SamplingParams& p, uint64_t seed, const sched::Request& r) {
  return {.logits = logits, .params = &p, .token_ids = r.tokens, .n_generated = r.n_output(), .seed = seed};
}
}  // namespace

// Enqueues Backend::sample of every logit row into slots_[slot], the copies of the ids (and logprobs, when a row
// wants its token's logprob) into pinned memory, and the slot's fence; returns whether logprobs were copied.
bool Engine::launch_sampling(const TensorView& logits, const std::vector<int64_t>& row_ids, int slot) {
  SampleSlot& s = slots_[slot];
  const int64_t r = static_cast<int64_t>(row_ids.size());
  bool want_logprobs = false;
  if (r > 0) {
    std::vector<SampleRowParams> rp(r);
    for (int64_t i = 0; i < r; ++i) {
      const Live& live = *live_.at(row_ids[i]);
      rp[i] = backend_row(live.params, live.seed, *sched_->find(row_ids[i]));
      want_logprobs |= live.params.logprobs.has_value();
    }
    const TensorView tokens = s.tokens.view().rows(0, r);
    const TensorView logprobs = want_logprobs ? s.logprobs.view().rows(0, r) : TensorView{};
    backend_->sample({.logits = logits, .rows = rp.data(), .tokens = tokens, .logprobs = logprobs});
    backend_->copy(s.host_tokens.view().rows(0, r), tokens);
    if (want_logprobs) backend_->copy(s.host_logprobs.view().rows(0, r), logprobs);
  }
  s.fence->record();
  return want_logprobs;
}


// Waits for the oldest step in flight (its ids only: the step launched after it keeps running) and applies it.
void Engine::complete_inflight() {
  InFlight& f = inflight_.front();
  const SampleSlot& s = slots_[f.slot];
  s.fence->wait();
  const int64_t r = static_cast<int64_t>(f.row_ids.size()), vocab = model_->config().vocab_size;
  std::vector<SampleResult> res(r);
  for (int64_t i = 0; i < r; ++i) {
    auto it = live_.find(f.row_ids[i]);
    const bool lp = it != live_.end() && it->second->params.logprobs.has_value();
    decode_sampled(s.host_tokens.as<int32_t>()[i], f.want_logprobs ? s.host_logprobs.as<float>()[i] : 0.0f, lp,
                   vocab, res[i]);
  }
  apply(f.so, f.row_ids, res, f.st);
  inflight_.pop_front();
}

// Forgets the steps in flight (shutdown, a failed step): the backend finishes what was launched before any buffer
// it uses is reused or freed; nothing of it is read.
void Engine::drop_inflight() {
  if (inflight_.empty()) return;
  try {
    backend_->synchronize();
  } catch (const Error& e) {
    log_debug("a step in flight failed: {}", e.what());
  }
  inflight_.clear();
}

// Applies one step's sampled tokens (row i: request row_ids[i]): outputs and timings (when the host learned the
// token), stop checks, the scheduler's update, finished requests, streamed deltas, statistics. A row whose request
// finished or was aborted since the step was scheduled is dropped: its token is never emitted.
void Engine::apply(const sched::SchedulerOutput& so, const std::vector<int64_t>& row_ids,
                   std::vector<SampleResult>& res, EngineStepStats st) {
  CHECK(res.size() == row_ids.size(), "{} results for {} rows", res.size(), row_ids.size());
  std::vector<sched::SampledToken> sampled;
  std::vector<std::pair<int64_t, std::string>> failed;
  const double now = now_seconds();
  for (size_t i = 0; i < res.size(); ++i) {
    const int64_t id = row_ids[i];
    auto it = live_.find(id);
    if (it == live_.end()) continue;
    Live& live = *it->second;
    CHECK(!live.stop.finished(), "request {}: a token after its stop", id);
    if (!res[i].error.empty()) {
      failed.emplace_back(id, "sampling: " + res[i].error);
      continue;
    }
    const int32_t tok = res[i].token;
    RequestOutput& o = live.out;
    o.token_ids.push_back(tok);
    if (live.params.logprobs) {
      o.logprobs.push_back(res[i].logprob);
      o.top_logprobs.push_back(res[i].top_logprobs);
    }
    if (o.timings.first_token == 0) o.timings.first_token = now;
    o.timings.token_times.push_back(now);
    const std::string delta = live.detok ? live.detok->push(tok) : std::string();
    o.text += live.stop.update(tok, delta);
    sampled.push_back({id, tok, live.stop.finished()});
  }
  // A row that failed to sample fails its request alone: abort it before update(), which expects a token for every
  // other row that needed logits.
  for (const auto& [id, msg] : failed) {
    sched_->abort(id);
    finish(id, FinishReason::kCancelled, msg);
  }
  std::vector<sched::Request> done = sched_->update(so, sampled);
  for (const auto& r : done) {
    auto it = live_.find(r.id);
    if (it == live_.end()) continue;
    FinishReason reason = r.finish_reason == sched::FinishReason::kLength ? FinishReason::kLength : FinishReason::kStop;
    finish(r.id, it->second->stop.finished() ? it->second->stop.finish_reason() : reason);
  }
  for (auto& [id, live] : live_) emit(*live, false);
  if (config_.check_integrity) check_integrity();
  st.applied = now_seconds();
  if (!st.overlapped) st.end = st.applied;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.push_back(st);
  }
}

// The engine's invariants on top of the scheduler's (EngineConfig::check_integrity, after every applied step): the
// engine and the scheduler know the same live requests, and each one's output so far is exactly the scheduler's
// known outputs — no token of a step in flight and none after a stop reaches a caller — and only the steps in
// flight account for the placeholders.
void Engine::check_integrity() const {
  sched_->check_integrity();
  CHECK(static_cast<int>(live_.size()) == sched_->n_running() + sched_->n_waiting(),
        "engine: {} live requests, the scheduler has {} running + {} waiting", live_.size(), sched_->n_running(),
        sched_->n_waiting());
  int64_t n_pending = 0, n_rows = 0;
  for (const auto& [id, live] : live_) {
    const sched::Request* r = sched_->find(id);
    CHECK(r != nullptr, "engine: live request {} unknown to the scheduler", id);
    const std::vector<int32_t>& got = live->out.token_ids;
    const auto known = r->output().first(static_cast<size_t>(r->n_known_output()));
    CHECK(got.size() == known.size() && std::equal(got.begin(), got.end(), known.begin()),
          "engine: request {} has {} output tokens, the scheduler knows {} (+{} in flight)", id, got.size(),
          known.size(), r->n_pending);
    CHECK(!live->stop.finished(), "engine: request {} is live after its stop", id);
    n_pending += r->n_pending;
  }
  for (const InFlight& f : inflight_) n_rows += static_cast<int64_t>(f.row_ids.size());
  CHECK(n_pending <= n_rows, "engine: {} placeholders, {} rows in flight", n_pending, n_rows);
}

// A row Backend::sample draws exactly as the Sampler would: steps 1-2 (sampler.h) leave its logits unchanged, and it
// wants no top-n logprobs (the chosen token's processed logprob comes from the op).
bool Engine::backend_can_sample(const Live& live, const sched::Request& r) const {
  const SamplingParams& p = live.params;
  const int n_generated = r.n_output();
  if (p.repetition_penalty != 1.0f) return false;
  if ((p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) && n_generated > 0) return false;
  if (n_generated < p.min_tokens && (!p.stop_token_ids.empty() || (p.end_id && !p.ignore_eos))) return false;
  return !p.logprobs || *p.logprobs == 0;  // NOTE: the engine's Sampler uses LogprobsMode::kProcessed, as the op
}

// Samples a synchronous step's rows now. A row whose request is gone (finished by the step applied just before)
// gets no result and is dropped by apply().
std::vector<SampleResult> Engine::sample_now(const ForwardOutput& fo, bool logits_on_device,
                                             const std::vector<int64_t>& row_ids, int slot, int* n_backend_sampled) {
  const size_t r = row_ids.size();
  std::vector<Live*> lives(r, nullptr);
  std::vector<const sched::Request*> reqs(r, nullptr);
  for (size_t i = 0; i < r; ++i) {
    auto it = live_.find(row_ids[i]);
    if (it == live_.end()) continue;
    lives[i] = it->second.get();
    reqs[i] = sched_->find(row_ids[i]);
    CHECK(reqs[i] != nullptr, "live request {} unknown to the scheduler", row_ids[i]);
  }
  if (logits_on_device) return sample_on_backend(fo.device_logits, lives, reqs, slot, n_backend_sampled);
  const int64_t vocab = model_->config().vocab_size;
  std::vector<SamplerRow> rows;
  std::vector<size_t> which;
  for (size_t i = 0; i < r; ++i) {
    if (!lives[i]) continue;
    rows.push_back(host_row(fo.logits.data() + i * vocab, lives[i]->params, lives[i]->seed, *reqs[i]));
    which.push_back(i);
  }
  std::vector<SampleResult> host = sampler_->sample(rows, &ThreadPool::global());
  std::vector<SampleResult> res(r);
  for (size_t j = 0; j < which.size(); ++j) res[which[j]] = std::move(host[j]);
  return res;
}

// One Backend::sample over every row, then only the ids (and logprobs) come back; rows the backend cannot sample
// (and dropped rows, lives[i] == nullptr) run as greedy there (the cheapest pass), their results are discarded, and
// the host rows' logits rows are copied to the host for the Sampler.
std::vector<SampleResult> Engine::sample_on_backend(const TensorView& logits, const std::vector<Live*>& lives,
                                                    const std::vector<const sched::Request*>& reqs, int slot,
                                                    int* n_backend_sampled) {
  const int64_t r = static_cast<int64_t>(lives.size()), vocab = logits.dim(1);
  const SampleSlot& s = slots_[slot];
  CHECK(!s.tokens.empty() && s.tokens.numel() >= r, "{} logit rows for sampling buffers of {}", r, s.tokens.numel());
  std::vector<SampleRowParams> rp(r);
  std::vector<char> on_backend(r);
  bool want_logprobs = false;
  for (int64_t i = 0; i < r; ++i) {
    on_backend[i] = lives[i] && backend_can_sample(*lives[i], *reqs[i]);
    if (!on_backend[i]) {
      rp[i] = SampleRowParams{.temperature = 0.0f};
      continue;
    }
    rp[i] = backend_row(lives[i]->params, lives[i]->seed, *reqs[i]);
    want_logprobs |= lives[i]->params.logprobs.has_value();
  }
  const TensorView tokens = s.tokens.view().rows(0, r);
  const TensorView logprobs = want_logprobs ? s.logprobs.view().rows(0, r) : TensorView{};
  backend_->sample({.logits = logits, .rows = rp.data(), .tokens = tokens, .logprobs = logprobs});
  std::vector<int32_t> ids(r);
  std::vector<float> lps(want_logprobs ? r : 0);
  backend_->copy(TensorView{ids.data(), DType::kI32, {r}, Device::kCpu}, tokens);
  if (want_logprobs) backend_->copy(TensorView{lps.data(), DType::kF32, {r}, Device::kCpu}, logprobs);
  // The host rows' logits, one row each.
  std::vector<int64_t> host_rows;
  for (int64_t i = 0; i < r; ++i)
    if (lives[i] && !on_backend[i]) host_rows.push_back(i);
  std::vector<float> host_logits(host_rows.size() * vocab);
  for (size_t j = 0; j < host_rows.size(); ++j)
    backend_->copy(TensorView{host_logits.data() + j * vocab, DType::kF32, {1, vocab}, Device::kCpu},
                   logits.rows(host_rows[j], host_rows[j] + 1));
  backend_->synchronize();

  std::vector<SampleResult> res(r);
  for (int64_t i = 0; i < r; ++i) {
    if (!on_backend[i]) continue;
    ++*n_backend_sampled;
    decode_sampled(ids[i], want_logprobs ? lps[i] : 0.0f, lives[i]->params.logprobs.has_value(), vocab, res[i]);
  }
  if (!host_rows.empty()) {
    std::vector<SamplerRow> rows;
    for (size_t j = 0; j < host_rows.size(); ++j) {
      const int64_t i = host_rows[j];
      rows.push_back(host_row(host_logits.data() + j * vocab, lives[i]->params, lives[i]->seed, *reqs[i]));
    }
    std::vector<SampleResult> host_res = sampler_->sample(rows, &ThreadPool::global());
    for (size_t j = 0; j < host_rows.size(); ++j) res[host_rows[j]] = std::move(host_res[j]);
  }
  return res;
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      // NOTE: a step in flight keeps the engine busy (its statistics and finished requests are still to come).
      busy_ = sched_->has_unfinished() || !incoming_.empty() || !inflight_.empty();
      if (!busy_) idle_cv_.notify_all();
      cv_.wait(lock, [&] {
        return stop_ || !incoming_.empty() || !aborts_.empty() || sched_->has_unfinished() || !inflight_.empty();
      });
      if (stop_) {
        lock.unlock();
        // Nobody waits forever on a handle: whatever is still queued or running ends as cancelled, and a step in
        // flight is waited for (not applied) before the buffers it uses go.
        drop_inflight();
        admit_incoming();
        std::vector<int64_t> ids;
        for (auto& [id, live] : live_) ids.push_back(id);
        for (int64_t id : ids) finish(id, FinishReason::kCancelled, "the engine shut down");
        return;
      }
      busy_ = true;
    }
    admit_incoming();
    try {
      if (!step() && sched_->has_unfinished()) {
        // Nothing schedulable although requests wait: only possible if the pool cannot hold any of them.
        CHECK(sched_->n_running() > 0, "scheduler made no progress with {} waiting and none running",
              sched_->n_waiting());
      }
    } catch (const Error& e) {
      // An input error inside a step (or a device allocation that failed: out of memory) fails the requests of that
      // step — and of a step in flight, whose results go with it — not the engine; requests in neither carry on.
      // Each request carries the message to its caller, which reports it once; the log line is for debugging only,
      // so a tool prints one error, not two.
      log_debug("step failed: {}", e.what());
      std::vector<int64_t> ids = step_ids_;
      for (const InFlight& f : inflight_)
        for (const auto& c : f.so.entries) ids.push_back(c.request_id);
      step_ids_.clear();
      drop_inflight();
      for (int64_t id : ids) {
        if (!live_.count(id)) continue;
        sched_->abort(id);
        finish(id, FinishReason::kCancelled, e.what());
      }
    }
  }
}

std::vector<int32_t> LLM::encode(const Prompt& p) const {
  if (!p.token_ids.empty()) return p.token_ids;
  EXPECT(tokenizer(), "a text prompt needs a tokenizer: {} has no tokenizer.json", engine_.config().model_dir);
  return tokenizer()->encode(p.text, true);
}

std::vector<RequestOutput> LLM::generate(const std::vector<Prompt>& prompts, const SamplingParams& params) {
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (const auto& p : prompts) hs.push_back(engine_.submit({encode(p), params, false}));
  std::vector<RequestOutput> out;
  for (auto& h : hs) out.push_back(h->wait());
  return out;
}

std::shared_ptr<RequestHandle> LLM::generate_async(const Prompt& prompt, const SamplingParams& params,
                                                   bool streaming) {
  return engine_.submit({encode(prompt), params, streaming});
}

}  // namespace dsv3
