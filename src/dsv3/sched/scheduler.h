// scheduler.h: the token-accounting scheduler: admission, chunked prefill, preemption, per-step output (sched).
// Each step: schedule() -> the engine runs the model on SchedulerOutput -> update() with the sampled tokens.
// Host only: it owns Requests and the KvCacheManager, never tensors; one engine thread drives it.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "dsv3/kv/kv_cache_manager.h"
#include "dsv3/sched/request.h"

namespace dsv3::sched {

enum class CapacityPolicy {
  kGuaranteedNoEvict,  // admit only when blocks for the whole max length (prompt + max_tokens - 1) are reserved
  kMaxUtilization,     // allocate blocks as tokens arrive; on exhaustion preempt the most recently admitted request
};

struct SchedulerConfig {
  int max_batch_size = 256;     // requests per step (and running at once)
  int max_num_tokens = 8192;    // tokens per step
  int max_seq_len = 8192;       // prompt + max_tokens of one request
  bool enable_chunked_prefill = false;  // split prompts across steps; otherwise a prompt runs whole in one step
  CapacityPolicy policy = CapacityPolicy::kGuaranteedNoEvict;
  int tokens_per_block = 64;
  int n_blocks = 0;             // KV pool size (the engine derives it from memory)
  bool enable_block_reuse = false;
};

// One request's work in a step: tokens [start, start + n_tokens) of its token sequence.
struct ScheduledChunk {
  int64_t request_id = 0;
  int start = 0;                      // first token index computed this step (== num_computed before the step)
  int n_tokens = 0;
  std::vector<int32_t> token_ids;     // [n_tokens] tokens to feed
  std::vector<int32_t> positions;     // [n_tokens] start, start + 1, ...
  std::vector<int32_t> block_table;   // [ceil((start + n_tokens) / tokens_per_block)] block ids of positions 0..end
  bool needs_logits = false;          // the chunk ends at the last known token: sample from its last row
  int n_context() const { return start + n_tokens; }  // KV length after this step
};

struct StepStats {
  int batch_size = 0;            // requests in the step
  int n_decode_tokens = 0;
  int n_prefill_tokens = 0;
  int n_blocks_used = 0;         // after this step's allocations
  int n_blocks_free = 0;         // free + cached-free
  int n_blocks_cached_free = 0;  // free blocks that still hold reusable prefixes
  int n_prefix_hit_tokens = 0;   // tokens taken from the prefix cache by this step's admissions
  int n_preempted = 0;
  int n_running = 0;             // after scheduling
  int n_waiting = 0;
};

struct SchedulerOutput {
  // NOTE: decode entries first (n_decode of them, one token each), then prefill chunks, FCFS within each group.
  std::vector<ScheduledChunk> entries;
  int n_decode = 0;
  std::vector<int64_t> preempted;  // requests that lost their blocks this step (recomputed later)
  int n_tokens = 0;                // sum of entries' n_tokens, <= max_num_tokens
  StepStats stats;
  bool empty() const { return entries.empty(); }
};

// What the engine reports after the model ran: the token sampled for one entry with needs_logits, and whether the
// request stops there (stop token/string; the scheduler itself finishes a request at max_tokens).
struct SampledToken {
  int64_t request_id = 0;
  int32_t token = 0;
  bool stop = false;
};

// Cumulative counters since construction.
struct SchedulerTotals {
  int64_t n_steps = 0;
  int64_t n_decode_tokens = 0;
  int64_t n_prefill_tokens = 0;
  int64_t n_prefix_hit_tokens = 0;
  int64_t n_preemptions = 0;
  int64_t n_finished = 0;
  int64_t n_rejected = 0;
};

class Scheduler {
 public:
  // Throws dsv3::Error on a config that cannot work (non-positive sizes).
  explicit Scheduler(const SchedulerConfig& config);

  // Queues a request (FCFS). Throws dsv3::Error, leaving the scheduler unchanged, when it can never run: empty
  // prompt, max_tokens < 1, a duplicate id, prompt + max_tokens > max_seq_len, more blocks than the pool, or (with
  // chunked prefill off) a prompt longer than max_num_tokens.
  void add(int64_t id, std::vector<int32_t> prompt, int max_tokens);
  // Cancels a request in any state and frees its blocks at once (full computed blocks stay in the prefix cache).
  // Returns the request with status kFinished / kCancelled, or nullopt for an unknown id.
  std::optional<Request> abort(int64_t id);

  // Plans one step; see the contract at the top of its definition.
  SchedulerOutput schedule();
  // Applies a step after the model ran: advances num_computed by each entry's n_tokens, caches newly full blocks,
  // appends one SampledToken per entry with needs_logits (CHECKed), finishes requests on stop or max_tokens and
  // frees their blocks. Entries of requests aborted since schedule() are skipped. Returns the finished requests.
  std::vector<Request> update(const SchedulerOutput& output, std::span<const SampledToken> sampled);

  const SchedulerConfig& config() const { return config_; }
  // A live (waiting, preempted or running) request, or nullptr.
  const Request* find(int64_t id) const;
  int n_running() const { return static_cast<int>(running_.size()); }
  int n_waiting() const { return static_cast<int>(waiting_.size()); }
  bool has_unfinished() const { return !requests_.empty(); }
  const kv::KvCacheManager& kv() const { return kv_; }
  const SchedulerTotals& totals() const { return totals_; }

  // Aborts with a message on a broken invariant: the KV manager's checks, queues and statuses agree, running
  // requests hold tables covering their computed tokens (their whole max length under guaranteed_no_evict),
  // waiting ones hold none, computed < known tokens, output <= max_tokens, running <= max_batch_size.
  void check_integrity() const;

 private:
  // Most recently admitted running request not yet scheduled this step (index into running_), or -1 if none.
  int pick_victim() const;
  void preempt(int running_index, SchedulerOutput& out);
  // Tokens of `remaining` that fit this step's `budget`, or 0 when the request must wait for a roomier step.
  int chunk_size(int remaining, int budget) const;
  void emit(const Request& r, int n_tokens, bool decode, SchedulerOutput& out);
  Request finish(int64_t id, FinishReason reason);

  SchedulerConfig config_;
  kv::KvCacheManager kv_;
  std::unordered_map<int64_t, Request> requests_;
  std::vector<int64_t> running_;   // admission order; victims come from the back
  std::deque<int64_t> waiting_;    // FCFS; preempted requests re-enter at the front
  std::unordered_set<int64_t> scheduled_;  // ids scheduled in the step being planned
  uint64_t next_arrival_ = 0;
  uint64_t next_admission_ = 0;
  SchedulerTotals totals_;
};

}  // namespace dsv3::sched
