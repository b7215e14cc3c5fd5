// request.h: the scheduler's view of one request: its tokens, output budget and progress (sched).
// Token accounting only: a request has n_tokens() tokens (prompt + output so far) of which num_computed have their
// KV in the cache (or are being computed by a step in flight); the scheduler's job is to close that gap, a chunk per
// step. Under the overlap scheduler the last one or two outputs may be placeholders (kPendingToken): sampled on the
// device by a step whose ids the host has not read yet. No sampling state here.
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

// The id of an output token that a step in flight samples on the device (Scheduler::advance); update() replaces it
// with the sampled id. Never a vocabulary id, never hashed into the prefix cache, never fed to the model as such:
// the engine has the model read the real id from the device.
constexpr int32_t kPendingToken = -1;

std::string_view to_string(RequestStatus s);
std::string_view to_string(FinishReason r);

struct Request {
  int64_t id = 0;
  int n_prompt = 0;             // tokens[0, n_prompt) is the prompt
  std::vector<int32_t> tokens;  // [n_prompt + n_output] prompt then output token ids, append-only (a placeholder is
                                // replaced in place by its sampled id, never removed while the request lives)
  int n_pending = 0;            // trailing kPendingToken placeholders in tokens: outputs of steps in flight (0..2)
  int max_tokens = 0;           // output budget
  int num_computed = 0;         // tokens[0, num_computed) have KV in the cache; always < n_tokens() while live
  RequestStatus status = RequestStatus::kWaiting;
  FinishReason finish_reason = FinishReason::kNone;
  uint64_t arrival = 0;         // order of add(): FCFS key
  uint64_t admission = 0;       // order of the latest admission (from 1; 0: never admitted): the preemption victim
                                // is the largest; a step's entry names it to recognise the same tenure of blocks
  int n_cached_tokens = -1;     // prompt tokens reused from the prefix cache at first admission; -1 before it
  int n_preemptions = 0;

  int n_tokens() const { return static_cast<int>(tokens.size()); }
  int n_output() const { return n_tokens() - n_prompt; }
  int n_known_output() const { return n_output() - n_pending; }  // outputs whose id the host has
  std::span<const int32_t> prompt() const { return std::span<const int32_t>(tokens).first(n_prompt); }
  std::span<const int32_t> output() const { return std::span<const int32_t>(tokens).subspan(n_prompt); }
  // Most tokens whose KV this request can ever need: the last output token is sampled but never fed back.
  int max_kv_tokens() const { return n_prompt + max_tokens - 1; }
};

}  // namespace dsv3::sched
