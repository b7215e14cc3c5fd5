// scheduler.h: the token-accounting scheduler: admission, chunked prefill, preemption, per-step output (sched).
// Each step: schedule() -> the engine runs the model on SchedulerOutput -> update() with the sampled tokens. The overlap
// scheduler adds advance() after the launch: schedule() of step n+1 then runs before update() of step n, with step
// n's tokens counted as placeholders (request.h kPendingToken).
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
  bool needs_logits = false;          // the chunk ends at the last token: sample from its last row
  uint64_t admission = 0;             // the request's Request::admission when scheduled
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
  bool advanced = false;           // Scheduler::advance() has applied it (its sampled ids arrive later)
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
  // Overlap scheduling: applies a launched step before its tokens are known, so that the next schedule() can plan
  // the step after it. Advances num_computed past each entry and appends a kPendingToken to each entry with
  // needs_logits: the next schedule() sees those requests as decodes whose input is the placeholder (the engine has
  // the model read its id on the device), and skips a request whose placeholder is its last output (max_tokens).
  // Call it at most once per output, right after schedule(); update() of the same output comes later.
  void advance(SchedulerOutput& output);
  // Applies a step after the model ran and its tokens are known: one SampledToken per entry with needs_logits of a
  // request still live (CHECKed). A step not advanced advances num_computed by each entry's n_tokens and appends
  // the tokens; an advanced one replaces each request's oldest placeholder. Then newly full computed blocks enter
  // the prefix cache, and requests that stop or reach max_tokens finish (their later placeholders dropped) and free
  // their blocks. Steps are updated in the order they were scheduled. Entries of requests aborted or finished since
  // schedule() are skipped (their tokens may be passed or not). Returns the finished requests.
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
  // waiting ones hold none, computed < tokens, known outputs < max_tokens <= outputs, running <= max_batch_size;
  // placeholders only at the end of the tokens (every other token a real id), at most two, one only when waiting
  // (preempted right after an advance), and a running request with one is exactly one token from computed.
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
  uint64_t next_admission_ = 1;
  SchedulerTotals totals_;
};

}  // namespace dsv3::sched
