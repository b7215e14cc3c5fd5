// request.h: the scheduler's view of one request: its tokens, output budget and progress (sched).
// Token accounting only: a request has n_tokens() known tokens (prompt + output so far) of which num_computed have
// their KV in the cache; the scheduler's job is to close that gap, a chunk per step. No sampling state here.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace dsv3::sched {

enum class RequestStatus {
  kWaiting,    // queued, holds no blocks
  kRunning,    // admitted, holds a block table
  kPreempted,  // lost its blocks to a more urgent request; queued at the head, recomputed from its tokens later
  kFinished,   // done; only seen in the Requests that update()/abort() hand back
};

enum class FinishReason {
  kNone,       // still running
  kStop,       // the engine saw a stop token or stop string
  kLength,     // output reached max_tokens
  kCancelled,  // abort()
};

std::string_view to_string(RequestStatus s);
std::string_view to_string(FinishReason r);

struct Request {
  int64_t id = 0;
  int n_prompt = 0;             // tokens[0, n_prompt) is the prompt
  std::vector<int32_t> tokens;  // [n_prompt + n_output] prompt then output token ids, append-only
  int max_tokens = 0;           // output budget
  int num_computed = 0;         // tokens[0, num_computed) have KV in the cache; always < n_tokens() while live
  RequestStatus status = RequestStatus::kWaiting;
  FinishReason finish_reason = FinishReason::kNone;
  uint64_t arrival = 0;         // order of add(): FCFS key
  uint64_t admission = 0;       // order of the latest admission: the preemption victim is the largest
  int n_cached_tokens = -1;     // prompt tokens reused from the prefix cache at first admission; -1 before it
  int n_preemptions = 0;

  int n_tokens() const { return static_cast<int>(tokens.size()); }
  int n_output() const { return n_tokens() - n_prompt; }
  std::span<const int32_t> prompt() const { return std::span<const int32_t>(tokens).first(n_prompt); }
  std::span<const int32_t> output() const { return std::span<const int32_t>(tokens).subspan(n_prompt); }
  // Most tokens whose KV this request can ever need: the last output token is sampled but never fed back.
  int max_kv_tokens() const { return n_prompt + max_tokens - 1; }
};

}  // namespace dsv3::sched
