// engine.h: the step loop and the C++ LLM API (engine).
// One engine thread owns the scheduler, the KV pool and the model: each step it schedules (decode tokens first, then
// prompt chunks), builds one ragged batch, runs the model, samples the rows that need logits, streams deltas to the
// request handles, and frees finished requests. Callers on other threads only submit, abort and read handles.
// The overlap scheduler (EngineConfig::overlap_scheduler): when a step's rows are all sampled on the device, the host
// launches it, then schedules and launches the next step with the sampled ids still on the device (the scheduler
// counts them as placeholders, the model reads them there), and only then waits for the first step's ids and
// processes them — the GPU never waits for the host's post-processing, scheduling and batch building.
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
  // now_seconds(): the engine-loop iteration that launched the step. With the overlap scheduler that iteration ends
  // after the previous step was applied, so end - start is the step period (TensorRT-LLM's iterLatencyMS).
  double start = 0, end = 0;
  double applied = 0;         // when its sampled tokens were applied (== end for a synchronous step)
  int n_logit_rows = 0;
  int n_backend_sampled = 0;  // rows whose token Backend::sample drew (the others: the host Sampler)
  bool overlapped = false;    // launched without waiting for its ids: read after the next step's launch (or when
                              // there was none)
  sched::StepStats sched;
};

class Engine {
 public:
  explicit Engine(const EngineConfig& config);
  // With a backend of the caller's (tests: a device-like backend); config.backend is then only a name.
  Engine(const EngineConfig& config, std::unique_ptr<Backend> backend);
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
  bool overlap() const { return overlap_; }  // the overlap scheduler is in effect (EngineConfig::overlap_scheduler)
  // Per-step statistics since the last call (for --iteration_log and /metrics).
  std::vector<EngineStepStats> take_iteration_stats();

 private:
  struct Live;
  // A step launched with every logit row sampled on the backend (the overlap scheduler): its ids are read and
  // applied after the next step was launched.
  struct InFlight {
    sched::SchedulerOutput so;     // advanced (Scheduler::advance): its placeholders await these ids
    std::vector<int64_t> row_ids;  // request of each logit row, in row order (= index into the slot's ids)
    int slot = 0;                  // slots_[slot] holds its ids
    bool want_logprobs = false;    // the slot's logprobs were copied too
    EngineStepStats st;
  };
  // Backend::sample's output of one step: step k uses slots_[k % 2], so step k+1 reads step k's ids on the device
  // while it writes its own.
  struct SampleSlot {
    Tensor tokens, logprobs;              // [max_batch_size] i32 / f32 in backend memory
    Tensor host_tokens, host_logprobs;    // [max_batch_size] in pinned host memory: their asynchronous copies
    std::unique_ptr<BackendFence> fence;  // recorded after those copies
  };
  void loop();
  bool step();
  ForwardBatch build_batch(const sched::SchedulerOutput& so, std::vector<int64_t>* row_ids);
  bool launch_sampling(const TensorView& logits, const std::vector<int64_t>& row_ids, int slot);
  void complete_inflight();
  void drop_inflight();
  void apply(const sched::SchedulerOutput& so, const std::vector<int64_t>& row_ids, std::vector<SampleResult>& res,
             EngineStepStats st);
  void check_integrity() const;
  void admit_incoming();
  void finish(int64_t id, FinishReason reason, const std::string& error = {});
  void emit(Live& live, bool final);
  bool backend_can_sample(const Live& live, const sched::Request& r) const;
  std::vector<SampleResult> sample_now(const ForwardOutput& fo, bool logits_on_device,
                                       const std::vector<int64_t>& row_ids, int slot, int* n_backend_sampled);
  std::vector<SampleResult> sample_on_backend(const TensorView& logits, const std::vector<Live*>& lives,
                                              const std::vector<const sched::Request*>& reqs, int slot,
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
  bool overlap_ = false;           // EngineConfig::overlap_scheduler resolved at start-up
  SampleSlot slots_[2];            // allocated when backend_sampling_
  std::deque<InFlight> inflight_;  // steps launched whose ids the host has not processed (at most 1 between steps)
  std::vector<int64_t> step_ids_;  // requests of the step being built and launched: they fail with it
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
