// scheduler.cpp: Scheduler: FCFS token accounting over running and waiting requests, block allocation through
// KvCacheManager, preemption by recompute, and the step-result update (sched).
#include "dsv3/sched/scheduler.h"

#include <algorithm>
#include <string>

#include "dsv3/base/error.h"

namespace dsv3::sched {

std::string_view to_string(RequestStatus s) {
  switch (s) {
    case RequestStatus::kWaiting: return "waiting";
    case RequestStatus::kRunning: return "running";
    case RequestStatus::kPreempted: return "preempted";
    case RequestStatus::kFinished: return "finished";
  }
  return "?";
}

std::string_view to_string(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "?";
}

namespace {
kv::KvCacheConfig kv_config(const SchedulerConfig& c) {
  EXPECT(c.max_batch_size >= 1, "scheduler: max_batch_size must be >= 1, got {}", c.max_batch_size);
  EXPECT(c.max_num_tokens >= 1, "scheduler: max_num_tokens must be >= 1, got {}", c.max_num_tokens);
  EXPECT(c.max_seq_len >= 1, "scheduler: max_seq_len must be >= 1, got {}", c.max_seq_len);
  EXPECT(c.tokens_per_block >= 1, "scheduler: tokens_per_block must be >= 1, got {}", c.tokens_per_block);
  EXPECT(c.n_blocks >= 1, "scheduler: the KV pool needs at least one block, got n_blocks = {}", c.n_blocks);
  return kv::KvCacheConfig{
      .n_blocks = c.n_blocks, .tokens_per_block = c.tokens_per_block, .enable_block_reuse = c.enable_block_reuse};
}
}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config) : config_(config), kv_(kv_config(config)) {}

void Scheduler::add(int64_t id, std::vector<int32_t> prompt, int max_tokens) {
  auto reject = [&](const std::string& msg) {
    ++totals_.n_rejected;
    throw Error(fmt::format("request {} rejected: {}", id, msg));
  };
  const int n_prompt = static_cast<int>(prompt.size());
  if (n_prompt == 0) reject("empty prompt");
  if (max_tokens < 1) reject(fmt::format("max_tokens must be >= 1, got {}", max_tokens));
  if (requests_.count(id)) reject("a request with this id is already queued or running");
  if (static_cast<int64_t>(n_prompt) + max_tokens > config_.max_seq_len) {
    reject(fmt::format("prompt ({} tokens) + max_tokens ({}) = {} exceeds max_seq_len {}", n_prompt, max_tokens,
                       static_cast<int64_t>(n_prompt) + max_tokens, config_.max_seq_len));
  }
  const int n_blocks = kv_.n_blocks_for(n_prompt + max_tokens - 1);
  if (n_blocks > config_.n_blocks) {
    reject(fmt::format("prompt ({} tokens) + max_tokens ({}) needs {} KV blocks of {} tokens, the pool has only {}",
                       n_prompt, max_tokens, n_blocks, config_.tokens_per_block, config_.n_blocks));
  }
  if (!config_.enable_chunked_prefill && n_prompt > config_.max_num_tokens) {
    reject(fmt::format("prompt of {} tokens exceeds max_num_tokens {} with chunked prefill off "
                       "(raise max_num_tokens or enable chunked prefill)", n_prompt, config_.max_num_tokens));
  }
  Request r;
  r.id = id;
  r.n_prompt = n_prompt;
  r.tokens = std::move(prompt);
  r.max_tokens = max_tokens;
  r.arrival = next_arrival_++;
  requests_.emplace(id, std::move(r));
  waiting_.push_back(id);
}

std::optional<Request> Scheduler::abort(int64_t id) {
  if (!requests_.count(id)) return std::nullopt;
  return finish(id, FinishReason::kCancelled);
}

const Request* Scheduler::find(int64_t id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : &it->second;
}

int Scheduler::pick_victim() const {
  for (int i = static_cast<int>(running_.size()) - 1; i >= 0; --i) {
    if (!scheduled_.count(running_[i])) return i;
  }
  return -1;
}

void Scheduler::preempt(int running_index, SchedulerOutput& out) {
  const int64_t id = running_[running_index];
  Request& r = requests_.at(id);
  // NOTE: recompute, not swap: the KV is dropped and rebuilt later from prompt + output so far; with block reuse
  // on, the request's full computed blocks stay cached and most of it comes back as a prefix hit.
  kv_.free(id);
  r.num_computed = 0;
  r.status = RequestStatus::kPreempted;
  ++r.n_preemptions;
  running_.erase(running_.begin() + running_index);
  waiting_.push_front(id);
  out.preempted.push_back(id);
  ++totals_.n_preemptions;
}

int Scheduler::chunk_size(int remaining, int budget) const {
  if (remaining <= budget) return remaining;
  if (config_.enable_chunked_prefill) return budget;
  // A preempted request recomputes prompt + output, which may exceed max_num_tokens even though its prompt did
  // not; chunking it changes no result, and refusing would leave it stuck forever.
  if (remaining > config_.max_num_tokens) return budget;
  return 0;
}

void Scheduler::emit(const Request& r, int n_tokens, bool decode, SchedulerOutput& out) {
  ScheduledChunk c;
  c.request_id = r.id;
  c.start = r.num_computed;
  c.n_tokens = n_tokens;
  c.token_ids.assign(r.tokens.begin() + c.start, r.tokens.begin() + c.start + n_tokens);
  c.positions.resize(n_tokens);
  for (int i = 0; i < n_tokens; ++i) c.positions[i] = c.start + i;
  std::span<const int32_t> table = kv_.block_table(r.id);
  const int n_blocks = kv_.n_blocks_for(c.n_context());
  CHECK(n_blocks <= static_cast<int>(table.size()), "request {}: {} tokens need {} blocks, table has {}", r.id,
        c.n_context(), n_blocks, table.size());
  c.block_table.assign(table.begin(), table.begin() + n_blocks);
  c.needs_logits = c.n_context() == r.n_tokens();
  c.admission = r.admission;
  out.n_tokens += n_tokens;
  (decode ? out.stats.n_decode_tokens : out.stats.n_prefill_tokens) += n_tokens;
  out.entries.push_back(std::move(c));
  scheduled_.insert(r.id);
}

// The scheduler contract (one step):
//   1. Running requests with exactly one token left (a decode: the last sampled token, or the placeholder of one a
//      step in flight samples) go first, in admission order; one whose placeholder is its last output (max_tokens)
//      waits for update(), which finishes it.
//      Under max_utilization a decode that needs a new block and finds none preempts the most recently admitted
//      running request not yet scheduled in this step (possibly itself).
//   2. Then prompt chunks, FCFS: running requests part-way through their prompt (or a recompute), then the waiting
//      queue (preempted requests at its head). A chunk is the request's remaining tokens, cut to the token budget
//      when chunked prefill is on; with it off a prompt runs whole or waits (FCFS: nothing behind it is admitted).
//      Admission never preempts, and a step that preempted admits nobody (the pool is under pressure).
//   3. Every step stays within max_batch_size requests and max_num_tokens tokens; each entry's block table covers
//      its positions. Admission under guaranteed_no_evict reserves the whole max length, so it never preempts.
// The engine relies on one invariant: however a request is chunked, preempted or prefix-hit, the tokens fed at
// each position are the request's own tokens, so results never depend on scheduling.
SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  scheduled_.clear();
  const bool guaranteed = config_.policy == CapacityPolicy::kGuaranteedNoEvict;
  const int max_batch = config_.max_batch_size;
  int budget = config_.max_num_tokens;

  // 1. Decodes.
  for (size_t i = 0; i < running_.size(); ++i) {
    Request& r = requests_.at(running_[i]);
    if (r.n_tokens() - r.num_computed != 1 || r.n_output() >= r.max_tokens) continue;
    if (static_cast<int>(out.entries.size()) >= max_batch || budget < 1) break;
    bool self_preempted = false;
    while (!kv_.allocate(r.id, r.num_computed + 1)) {
      CHECK(!guaranteed, "request {}: guaranteed_no_evict ran out of blocks for a reserved decode", r.id);
      const int v = pick_victim();
      CHECK(v >= static_cast<int>(i), "preemption victim {} precedes the request {} being scheduled", v, i);
      preempt(v, out);
      if (v == static_cast<int>(i)) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;  // it was the last unscheduled running request
    emit(r, 1, /*decode=*/true, out);
    budget -= 1;
  }
  out.n_decode = static_cast<int>(out.entries.size());

  // 2a. Running requests part-way through their prompt (or recompute).
  bool blocked = false;
  for (size_t i = 0; i < running_.size() && !blocked; ++i) {
    Request& r = requests_.at(running_[i]);
    if (scheduled_.count(r.id) || r.n_output() >= r.max_tokens) continue;
    const int n = static_cast<int>(out.entries.size()) < max_batch ? chunk_size(r.n_tokens() - r.num_computed, budget)
                                                                   : 0;
    if (n == 0) break;
    while (!kv_.allocate(r.id, r.num_computed + n)) {
      CHECK(!guaranteed, "request {}: guaranteed_no_evict ran out of blocks for a reserved prompt", r.id);
      const int v = pick_victim();
      if (v < 0 || running_[v] == r.id) {
        blocked = true;  // nobody left to preempt but itself: it keeps its blocks and waits
        break;
      }
      CHECK(v > static_cast<int>(i), "preemption victim {} precedes the request {} being scheduled", v, i);
      preempt(v, out);
    }
    if (blocked) break;
    emit(r, n, /*decode=*/false, out);
    budget -= n;
  }

  // 2b. Admissions from the waiting queue.
  while (!blocked && out.preempted.empty() && !waiting_.empty()) {
    // NOTE: running_, not just this step's entries: a request whose last output is in flight holds a batch slot
    // without being scheduled.
    if (static_cast<int>(std::max(out.entries.size(), running_.size())) >= max_batch || budget < 1) break;
    Request& r = requests_.at(waiting_.front());
    // Preempted right after an advance: its last token is still in flight (update() fills it in first).
    if (r.n_pending > 0) break;
    kv::PrefixHit hit = kv_.find_cached_prefix(r.tokens);
    const int n = chunk_size(r.n_tokens() - hit.n_tokens, budget);
    if (n == 0) break;
    const int n_kv = guaranteed ? r.max_kv_tokens() : hit.n_tokens + n;
    if (!kv_.allocate(r.id, n_kv, hit)) break;  // FCFS: nobody overtakes the head of the queue
    waiting_.pop_front();
    r.num_computed = hit.n_tokens;
    r.status = RequestStatus::kRunning;
    r.admission = next_admission_++;
    if (r.n_cached_tokens < 0) r.n_cached_tokens = hit.n_tokens;
    running_.push_back(r.id);
    out.stats.n_prefix_hit_tokens += hit.n_tokens;
    emit(r, n, /*decode=*/false, out);
    budget -= n;
  }

  StepStats& st = out.stats;
  st.batch_size = static_cast<int>(out.entries.size());
  st.n_blocks_used = kv_.n_used_blocks();
  st.n_blocks_free = kv_.n_free_blocks();
  st.n_blocks_cached_free = kv_.pool().n_cached_free();
  st.n_preempted = static_cast<int>(out.preempted.size());
  st.n_running = n_running();
  st.n_waiting = n_waiting();
  ++totals_.n_steps;
  totals_.n_decode_tokens += st.n_decode_tokens;
  totals_.n_prefill_tokens += st.n_prefill_tokens;
  totals_.n_prefix_hit_tokens += st.n_prefix_hit_tokens;
#ifndef NDEBUG
  check_integrity();
#endif
  return out;
}

Request Scheduler::finish(int64_t id, FinishReason reason) {
  auto it = requests_.find(id);
  CHECK(it != requests_.end(), "finish of unknown request {}", id);
  Request r = std::move(it->second);
  requests_.erase(it);
  if (r.status == RequestStatus::kRunning) {
    running_.erase(std::find(running_.begin(), running_.end(), id));
    kv_.free(id);
  } else {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), id));
  }
  // Tokens of steps in flight after the one that finished it (or all of them, on abort) are dropped.
  r.tokens.resize(static_cast<size_t>(r.n_tokens() - r.n_pending));
  r.n_pending = 0;
  r.status = RequestStatus::kFinished;
  r.finish_reason = reason;
  ++totals_.n_finished;
  return r;
}

void Scheduler::advance(SchedulerOutput& output) {
  CHECK(!output.advanced, "advance() of a step already advanced");
  for (const ScheduledChunk& c : output.entries) {
    auto it = requests_.find(c.request_id);
    if (it == requests_.end()) continue;  // aborted since schedule()
    Request& r = it->second;
    CHECK(r.status == RequestStatus::kRunning && r.num_computed == c.start && r.admission == c.admission,
          "advance(): request {} changed since schedule() (status {}, computed {}, chunk start {})", r.id,
          to_string(r.status), r.num_computed, c.start);
    r.num_computed = c.n_context();
    if (c.needs_logits) {
      CHECK(r.n_pending < 2, "request {}: a third step in flight", r.id);
      r.tokens.push_back(kPendingToken);
      ++r.n_pending;
    }
  }
  output.advanced = true;
}

std::vector<Request> Scheduler::update(const SchedulerOutput& output, std::span<const SampledToken> sampled) {
  std::unordered_map<int64_t, const SampledToken*> by_id;
  for (const SampledToken& s : sampled) {
    CHECK(by_id.emplace(s.request_id, &s).second, "two sampled tokens for request {}", s.request_id);
    CHECK(s.token >= 0, "request {}: sampled token {} is not a vocabulary id", s.request_id, s.token);
  }
  std::vector<int64_t> done;
  std::vector<FinishReason> reasons;
  size_t n_matched = 0;
  for (const ScheduledChunk& c : output.entries) {
    auto s = by_id.find(c.request_id);
    if (s != by_id.end()) ++n_matched;
    auto it = requests_.find(c.request_id);
    // Aborted or finished since schedule() (possibly re-added under the same id: another admission number): the
    // step's work for it is dropped.
    if (it == requests_.end() || it->second.admission != c.admission) continue;
    Request& r = it->second;
    // Whether r still holds the block table this step wrote into (not preempted since, nor preempted and
    // re-admitted: a re-admission changes the admission number).
    bool holds_table = r.status == RequestStatus::kRunning;
    if (!output.advanced) {
      if (!holds_table || r.num_computed != c.start) continue;
      CHECK(c.n_context() <= r.n_tokens(), "request {}: chunk ends at {} past its {} tokens", r.id, c.n_context(),
            r.n_tokens());
      CHECK(r.n_pending == 0, "request {}: update() of a step while an earlier step's token is pending", r.id);
      r.num_computed = c.n_context();
    } else if (holds_table) {
      CHECK(r.num_computed >= c.n_context(), "request {}: computed {} behind the advanced step's {}", r.id,
            r.num_computed, c.n_context());
    }
    if (holds_table) {
      CHECK(static_cast<int>(kv_.block_table(r.id).size()) >= kv_.n_blocks_for(c.n_context()),
            "request {}: its table lost the blocks of a step in flight", r.id);
    }
    if (!c.needs_logits) {
      CHECK(s == by_id.end(), "request {}: sampled token for a chunk that needs no logits", r.id);
      if (holds_table) kv_.cache_computed_blocks(r.id, r.tokens, c.n_context());
      continue;
    }
    CHECK(s != by_id.end(), "request {}: no sampled token for a chunk that needs logits", r.id);
    if (output.advanced) {
      // The oldest placeholder is this step's: steps are updated in the order they were scheduled.
      const int at = r.n_tokens() - r.n_pending;
      CHECK(r.n_pending > 0 && at == c.n_context() && r.tokens[at] == kPendingToken,
            "request {}: no placeholder at {} for an advanced step ({} pending of {} tokens)", r.id, c.n_context(),
            r.n_pending, r.n_tokens());
      r.tokens[at] = s->second->token;
      --r.n_pending;
    } else {
      r.tokens.push_back(s->second->token);
    }
    // Only tokens[0, c.n_context()) are hashed: all real ids (any later placeholder lies beyond).
    if (holds_table) kv_.cache_computed_blocks(r.id, r.tokens, c.n_context());
    if (s->second->stop) {
      done.push_back(r.id);
      reasons.push_back(FinishReason::kStop);
    } else if (r.n_known_output() >= r.max_tokens) {
      done.push_back(r.id);
      reasons.push_back(FinishReason::kLength);
    }
  }
  CHECK(n_matched == sampled.size(), "{} sampled tokens name requests that are not in the step",
        sampled.size() - n_matched);
  std::vector<Request> finished;
  for (size_t i = 0; i < done.size(); ++i) finished.push_back(finish(done[i], reasons[i]));
#ifndef NDEBUG
  check_integrity();
#endif
  return finished;
}

void Scheduler::check_integrity() const {
  kv_.check_integrity();
  CHECK(static_cast<int>(running_.size()) <= config_.max_batch_size, "scheduler: {} running requests > max_batch_size {}",
        running_.size(), config_.max_batch_size);
  CHECK(running_.size() + waiting_.size() == requests_.size(),
        "scheduler: {} running + {} waiting != {} live requests", running_.size(), waiting_.size(), requests_.size());
  CHECK(kv_.n_tables() == static_cast<int>(running_.size()), "scheduler: {} block tables for {} running requests",
        kv_.n_tables(), running_.size());
  std::unordered_set<int64_t> seen;
  auto common = [&](const Request& r) {
    CHECK(seen.insert(r.id).second, "scheduler: request {} queued twice", r.id);
    CHECK(r.n_prompt >= 1 && r.n_tokens() >= r.n_prompt, "request {}: {} tokens, prompt {}", r.id, r.n_tokens(),
          r.n_prompt);
    CHECK(r.num_computed >= 0 && r.num_computed < r.n_tokens(), "request {}: num_computed {} of {} tokens", r.id,
          r.num_computed, r.n_tokens());
    CHECK(r.n_pending >= 0 && r.n_pending <= 2 && r.n_pending <= r.n_output(),
          "request {}: {} placeholders for {} outputs", r.id, r.n_pending, r.n_output());
    CHECK(r.n_known_output() < r.max_tokens && r.n_output() <= r.max_tokens,
          "request {}: live with {} outputs ({} known) of max_tokens {}", r.id, r.n_output(), r.n_known_output(),
          r.max_tokens);
    const int n_real = r.n_tokens() - r.n_pending;
    for (int i = 0; i < r.n_tokens(); ++i) {
      CHECK((r.tokens[i] == kPendingToken) == (i >= n_real) && (i >= n_real || r.tokens[i] >= 0),
            "request {}: token {} at {} ({} placeholders expected at the end of {} tokens)", r.id, r.tokens[i], i,
            r.n_pending, r.n_tokens());
    }
    CHECK(r.finish_reason == FinishReason::kNone, "request {}: live but finished ({})", r.id,
          to_string(r.finish_reason));
  };
  uint64_t last_admission = 0;
  for (size_t i = 0; i < running_.size(); ++i) {
    auto it = requests_.find(running_[i]);
    CHECK(it != requests_.end(), "scheduler: running id {} has no request", running_[i]);
    const Request& r = it->second;
    common(r);
    CHECK(r.status == RequestStatus::kRunning, "request {}: in the running list but {}", r.id, to_string(r.status));
    CHECK(kv_.has_table(r.id), "request {}: running without a block table", r.id);
    CHECK(r.admission >= 1 && (i == 0 || r.admission > last_admission),
          "scheduler: running list out of admission order at {}", r.id);
    CHECK(r.n_pending == 0 || r.num_computed == r.n_tokens() - 1,
          "request {}: running with {} placeholders but {} of {} tokens computed", r.id, r.n_pending,
          r.num_computed, r.n_tokens());
    last_admission = r.admission;
    const int n_blocks = static_cast<int>(kv_.block_table(r.id).size());
    CHECK(n_blocks >= kv_.n_blocks_for(r.num_computed), "request {}: {} blocks for {} computed tokens", r.id,
          n_blocks, r.num_computed);
    if (config_.policy == CapacityPolicy::kGuaranteedNoEvict) {
      CHECK(n_blocks == kv_.n_blocks_for(r.max_kv_tokens()),
            "request {}: guaranteed_no_evict holds {} blocks, its max length {} needs {}", r.id, n_blocks,
            r.max_kv_tokens(), kv_.n_blocks_for(r.max_kv_tokens()));
    }
  }
  for (int64_t id : waiting_) {
    auto it = requests_.find(id);
    CHECK(it != requests_.end(), "scheduler: waiting id {} has no request", id);
    const Request& r = it->second;
    common(r);
    CHECK(r.status == RequestStatus::kWaiting || r.status == RequestStatus::kPreempted,
          "request {}: in the waiting queue but {}", r.id, to_string(r.status));
    CHECK(!kv_.has_table(r.id), "request {}: waiting but holds a block table", r.id);
    CHECK(r.num_computed == 0, "request {}: waiting with {} computed tokens", r.id, r.num_computed);
    CHECK(r.n_pending == 0 || (r.n_pending == 1 && r.status == RequestStatus::kPreempted),
          "request {}: {} with {} placeholders", r.id, to_string(r.status), r.n_pending);
  }
}

}  // namespace dsv3::sched
