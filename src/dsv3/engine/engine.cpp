// engine.cpp: the engine thread — admission, one model step, sampling, streaming, finishing (engine).
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

Engine::Engine(const EngineConfig& config) : config_(config) {
  backend_ = make_backend(config_.backend);
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

bool Engine::step() {
  sched::SchedulerOutput so = sched_->schedule();
  if (so.empty()) return false;
  EngineStepStats st;
  st.step = n_steps_++;
  st.start = now_seconds();
  // Build the ragged batch: generated positions (absorbed form) first, then prompt positions (naive form).
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
  std::vector<int32_t> last_row(so.entries.size(), -1);
  int32_t row = 0;
  auto add_part = [&](const Part& p, bool abs) {
    const auto& ch = so.entries[p.entry];
    for (int t = p.begin; t < p.end; ++t) batch.token_ids.push_back(ch.token_ids[t - ch.start]);
    batch.seqs.push_back({p.end - p.begin, p.begin, abs, ch.block_table});
    row += p.end - p.begin;
    if (p.end == ch.start + ch.n_tokens) last_row[p.entry] = row - 1;
  };
  for (const auto& p : absorbed) add_part(p, true);
  for (const auto& p : naive) add_part(p, false);
  std::vector<size_t> logit_entries;
  for (size_t e = 0; e < so.entries.size(); ++e)
    if (so.entries[e].needs_logits) {
      batch.logit_rows.push_back(last_row[e]);
      logit_entries.push_back(e);
    }
  std::vector<Live*> lives;
  std::vector<const sched::Request*> reqs;
  for (size_t e : logit_entries) {
    const int64_t id = so.entries[e].request_id;
    lives.push_back(live_.at(id).get());
    reqs.push_back(sched_->find(id));
  }
  // Logits stay in backend memory when at least one row can be sampled there; the other rows' logits come back.
  for (size_t i = 0; i < lives.size() && backend_sampling_ && !batch.logits_on_device; ++i)
    batch.logits_on_device = backend_can_sample(*lives[i], *reqs[i]);
  ForwardOutput fo = model_->forward(batch, *cache_);
  // Sample.
  std::vector<SampleResult> res;
  if (batch.logits_on_device) {
    res = sample_on_backend(fo.device_logits, lives, reqs, &st.n_backend_sampled);
  } else {
    const int64_t vocab = model_->config().vocab_size;
    std::vector<SamplerRow> rows;
    for (size_t i = 0; i < lives.size(); ++i)
      rows.push_back({.logits = fo.logits.data() + i * vocab, .params = &lives[i]->params,
                      .token_ids = reqs[i]->tokens, .n_generated = reqs[i]->n_output(), .seed = lives[i]->seed});
    res = sampler_->sample(rows, &ThreadPool::global());
  }
  std::vector<sched::SampledToken> sampled;
  std::vector<std::pair<int64_t, std::string>> failed;
  const double now = now_seconds();
  for (size_t i = 0; i < res.size(); ++i) {
    const int64_t id = so.entries[logit_entries[i]].request_id;
    Live& live = *live_.at(id);
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
  if (config_.check_integrity) sched_->check_integrity();
  st.end = now_seconds();
  st.n_logit_rows = static_cast<int>(batch.logit_rows.size());
  st.sched = so.stats;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.push_back(st);
  }
  return true;
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

// One Backend::sample over every row, then only the ids (and logprobs) come back; rows the backend cannot sample
// run as greedy there (the cheapest pass), their results are discarded, and their logits rows are copied to the
// host for the Sampler.
std::vector<SampleResult> Engine::sample_on_backend(const TensorView& logits, const std::vector<Live*>& lives,
                                                    const std::vector<const sched::Request*>& reqs,
                                                    int* n_backend_sampled) {
  const int64_t r = static_cast<int64_t>(lives.size()), vocab = logits.dim(1);
  if (sample_tokens_.empty() || sample_tokens_.numel() < r) {
    sample_tokens_ = Tensor(DType::kI32, {r}, backend_->allocator());
    sample_logprobs_ = Tensor(DType::kF32, {r}, backend_->allocator());
  }
  std::vector<SampleRowParams> rp(r);
  std::vector<char> on_backend(r);
  bool want_logprobs = false;
  for (int64_t i = 0; i < r; ++i) {
    const SamplingParams& p = lives[i]->params;
    on_backend[i] = backend_can_sample(*lives[i], *reqs[i]);
    if (!on_backend[i]) {
      rp[i] = SampleRowParams{.temperature = 0.0f};
      continue;
    }
    rp[i] = {.temperature = p.temperature, .top_k = p.top_k, .top_p = p.top_p, .min_p = p.min_p,
             .seed = lives[i]->seed, .seq_index = 0, .step = static_cast<uint32_t>(reqs[i]->n_output())};
    want_logprobs |= p.logprobs.has_value();
  }
  const TensorView tokens = sample_tokens_.view().rows(0, r);
  const TensorView logprobs = want_logprobs ? sample_logprobs_.view().rows(0, r) : TensorView{};
  backend_->sample({.logits = logits, .rows = rp.data(), .tokens = tokens, .logprobs = logprobs});
  std::vector<int32_t> ids(r);
  std::vector<float> lps(want_logprobs ? r : 0);
  backend_->copy(TensorView{ids.data(), DType::kI32, {r}, Device::kCpu}, tokens);
  if (want_logprobs) backend_->copy(TensorView{lps.data(), DType::kF32, {r}, Device::kCpu}, logprobs);
  // The host rows' logits, one row each.
  std::vector<int64_t> host_rows;
  for (int64_t i = 0; i < r; ++i)
    if (!on_backend[i]) host_rows.push_back(i);
  std::vector<float> host_logits(host_rows.size() * vocab);
  for (size_t j = 0; j < host_rows.size(); ++j)
    backend_->copy(TensorView{host_logits.data() + j * vocab, DType::kF32, {1, vocab}, Device::kCpu},
                   logits.rows(host_rows[j], host_rows[j] + 1));
  backend_->synchronize();

  std::vector<SampleResult> res(r);
  for (int64_t i = 0; i < r; ++i) {
    if (!on_backend[i]) continue;
    ++*n_backend_sampled;
    if (ids[i] == kSampleInvalidLogits) {
      res[i].error = "sampler: a logit is NaN or +inf";
    } else if (ids[i] == kSampleAllMasked) {
      res[i].error = "sampler: every token is masked (-inf logits)";
    } else {
      CHECK(ids[i] >= 0 && ids[i] < vocab, "Backend::sample returned token {} for vocabulary {}", ids[i], vocab);
      res[i].token = ids[i];
      if (lives[i]->params.logprobs) res[i].logprob = lps[i];
    }
  }
  if (!host_rows.empty()) {
    std::vector<SamplerRow> rows;
    for (size_t j = 0; j < host_rows.size(); ++j) {
      const int64_t i = host_rows[j];
      rows.push_back({.logits = host_logits.data() + j * vocab, .params = &lives[i]->params,
                      .token_ids = reqs[i]->tokens, .n_generated = reqs[i]->n_output(), .seed = lives[i]->seed});
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
      busy_ = sched_->has_unfinished() || !incoming_.empty();
      if (!busy_) idle_cv_.notify_all();
      cv_.wait(lock, [&] { return stop_ || !incoming_.empty() || !aborts_.empty() || sched_->has_unfinished(); });
      if (stop_) {
        lock.unlock();
        // Nobody waits forever on a handle: whatever is still queued or running ends as cancelled.
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
      // step, not the engine. Each request carries the message to its caller, which reports it once; the log line is
      // for debugging only, so a tool prints one error, not two.
      log_debug("step failed: {}", e.what());
      std::vector<int64_t> ids;
      for (auto& [id, live] : live_) ids.push_back(id);
      for (int64_t id : ids) {
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
