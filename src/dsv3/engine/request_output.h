// request_output.h: what a request gives back — cumulative and delta outputs, timings — and the handle that streams
// them from the engine thread to any caller thread (engine).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dsv3/engine/sampler.h"
#include "dsv3/engine/stop_checker.h"

namespace dsv3 {

struct RequestTimings {
  double arrival = 0;               // submit time (now_seconds clock)
  double first_token = 0;           // 0 until the first output token
  double end = 0;                   // 0 until finished
  std::vector<double> token_times;  // one per output token
};

struct RequestOutput {
  int64_t request_id = 0;
  std::vector<int32_t> prompt_token_ids;
  // Cumulative over the request so far.
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<float> logprobs;                           // per output token, when asked
  std::vector<std::vector<TokenLogprob>> top_logprobs;   // per output token, when asked
  // New since the previous output of this request.
  std::vector<int32_t> token_ids_delta;
  std::string text_delta;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  StopMatch stop_match;
  std::string error;                // non-empty: the request failed (bad input); finished is true
  int n_cached_tokens = 0;          // prompt tokens taken from the prefix cache
  RequestTimings timings;
};

// One request's stream. The engine thread pushes; callers pop. Thread-safe.
class RequestHandle {
 public:
  explicit RequestHandle(int64_t id) : id_(id) {}
  int64_t id() const { return id_; }
  // Blocks until the next delta; false once the request has finished and every delta was taken.
  bool next(RequestOutput& out);
  // Blocks until the request finishes; the cumulative final output.
  RequestOutput wait();
  bool finished() const;

  // Engine side.
  void push(RequestOutput out);

 private:
  int64_t id_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestOutput> queue_;
  std::optional<RequestOutput> last_;
  bool done_ = false;
};

}  // namespace dsv3
