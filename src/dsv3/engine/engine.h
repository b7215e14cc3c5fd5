// engine.h: the step loop and the C++ LLM API (engine).
// One engine thread owns the scheduler, the KV pool and the model: each step it schedules (decode tokens first, then
// prompt chunks), builds one ragged batch, runs the model, samples the rows that need logits, streams deltas to the
// request handles, and frees finished requests. Callers on other threads only submit, abort and read handles.
// NOTE: prompt positions always run in the naive MLA form and generated positions in the absorbed form — also when a
// preempted request is recomputed — so a request's tokens do not depend on how it was scheduled.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dsv3/engine/engine_config.h"
#include "dsv3/engine/request_output.h"
#include "dsv3/model/deepseek_v3.h"
#include "dsv3/tokenizer/tokenizer.h"

namespace dsv3 {

struct GenerateRequest {
  std::vector<int32_t> prompt_ids;
  SamplingParams params;
  bool streaming = true;  // push a delta per step; otherwise only the final output
};

struct EngineStepStats {
  int64_t step = 0;
  double start = 0, end = 0;  // now_seconds()
  int n_logit_rows = 0;
  int n_backend_sampled = 0;  // rows whose token Backend::sample drew (the others: the host Sampler)
  sched::StepStats sched;
};

class Engine {
 public:
  explicit Engine(const EngineConfig& config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates the request (throws dsv3::Error: bad params, empty prompt, ids outside the vocabulary, longer than
  // max_seq_len) and queues it. Errors found later (e.g. a prompt that can never fit the KV pool) arrive on the handle.
  std::shared_ptr<RequestHandle> submit(GenerateRequest request);
  void abort(int64_t request_id);
  // Blocks until no request is queued or running.
  void wait_idle();

  const ModelConfig& model_config() const { return model_->config(); }
  const EngineConfig& config() const { return config_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  int64_t kv_blocks() const { return kv_blocks_; }
  // Per-step statistics since the last call (for --iteration_log and /metrics).
  std::vector<EngineStepStats> take_iteration_stats();

 private:
  struct Live;
  void loop();
  bool step();
  void admit_incoming();
  void finish(int64_t id, FinishReason reason, const std::string& error = {});
  void emit(Live& live, bool final);
  bool backend_can_sample(const Live& live, const sched::Request& r) const;
  std::vector<SampleResult> sample_on_backend(const TensorView& logits, const std::vector<Live*>& lives,
                                              const std::vector<const sched::Request*>& reqs,
                                              int* n_backend_sampled);
  void log_weight_load(double seconds) const;

  EngineConfig config_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<WeightSource> weights_;  // NOTE: outlives model_: host backends use its mmap views in place
  std::unique_ptr<DeepseekV3> model_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<sched::Scheduler> sched_;
  std::unique_ptr<Sampler> sampler_;
  SeedSource seeds_;
  bool backend_sampling_ = false;  // EngineConfig::backend_sampling resolved at start-up
  Tensor sample_tokens_;           // [capacity] i32 in backend memory: Backend::sample's ids
  Tensor sample_logprobs_;         // [capacity] f32 in backend memory: the drawn tokens' logprobs
  int64_t kv_blocks_ = 0;
  int max_seq_len_ = 0;

  std::unordered_map<int64_t, std::unique_ptr<Live>> live_;  // engine thread only

  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::pair<int64_t, GenerateRequest>> incoming_;
  std::vector<std::shared_ptr<RequestHandle>> incoming_handles_;
  std::vector<int64_t> aborts_;
  std::vector<EngineStepStats> stats_;
  int64_t next_id_ = 1;
  int64_t n_steps_ = 0;
  bool busy_ = false;
  bool stop_ = false;
  std::thread thread_;
};

// Text or token ids; text is encoded with the model's tokenizer (special tokens added, as LLM.generate does).
struct Prompt {
  std::string text;
  std::vector<int32_t> token_ids;
};

// The LLM API in the spirit of TensorRT-LLM's LLM class.
class LLM {
 public:
  explicit LLM(const EngineConfig& config) : engine_(config) {}
  // Blocking: one final output per prompt, in order.
  std::vector<RequestOutput> generate(const std::vector<Prompt>& prompts, const SamplingParams& params);
  // Streaming handle: next() yields deltas (text and ids); wait() the final output.
  std::shared_ptr<RequestHandle> generate_async(const Prompt& prompt, const SamplingParams& params,
                                                bool streaming = true);
  void abort(int64_t request_id) { engine_.abort(request_id); }
  Engine& engine() { return engine_; }
  const Tokenizer* tokenizer() const { return engine_.tokenizer(); }

 private:
  std::vector<int32_t> encode(const Prompt& p) const;
  Engine engine_;
};

}  // namespace dsv3
