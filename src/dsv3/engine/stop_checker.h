// stop_checker.h: per-request stop conditions over the streamed tokens and decoded text (engine).
// Stops on stop_token_ids, EOS (unless ignore_eos), max_tokens and stop strings found in the decoded stream, and
// holds back text that could still become a stop string, so streamed text never shows a stop string that completes
// later. Invariant: the strings update()/finish() return, concatenated, equal text(), the final output text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dsv3/engine/sampling_params.h"

namespace dsv3 {

enum class FinishReason { kNone, kStop, kLength, kCancelled };

// "stop", "length", "cancelled" (OpenAI's finish_reason); "" for kNone.
const char* finish_reason_name(FinishReason reason);

// What ended a request whose finish reason is kStop.
struct StopMatch {
  enum class Kind { kNone, kEos, kStopToken, kStopString };
  Kind kind = Kind::kNone;
  int32_t token = -1;  // kEos: end_id; kStopToken: the id from stop_token_ids
  std::string str;     // kStopString: the stop string that matched
};

// Rules, in the order they are checked for each token (as vLLM's StopChecker):
//  * Before min_tokens tokens have been generated nothing but max_tokens stops the request, and a stop string that
//    is complete before then is ignored (a match counts when it ends in the text of token min_tokens or later).
//  * token == end_id (and not ignore_eos), then token in stop_token_ids: finish "stop"; the token's own text is
//    dropped unless include_stop_str_in_output.
//  * Stop strings, matched byte-wise on the decoded text (so a match of valid UTF-8 always falls on character
//    boundaries): the match that ends first wins, ties to the longer one; this makes the result independent of how the
//    text is split into deltas. Output is cut before the match, or after it with include_stop_str_in_output; text after
//    it is dropped. Finish "stop".
//  * n_tokens == max_tokens: finish "length", everything held back is released.
// Held back while running: the longest suffix that is a prefix of a stop string (not needed with
// include_stop_str_in_output, where everything up to the match end is shown anyway), and a trailing incomplete UTF-8
// sequence, so each returned piece is whole characters when the stream is valid UTF-8.
class StopChecker {
 public:
  explicit StopChecker(const SamplingParams& params);

  // One generated token and the text that detokenising it added (may be empty). Returns the text that may be shown
  // now. The request may finish here: see finished().
  std::string update(int32_t token, std::string_view delta);

  // Ends the request for a reason decided by the engine (kCancelled, or kLength at max_seq_len); returns the text
  // still held back.
  std::string finish(FinishReason reason);

  bool finished() const { return reason_ != FinishReason::kNone; }
  FinishReason finish_reason() const { return reason_; }
  const StopMatch& stop_match() const { return match_; }
  std::string_view text() const { return std::string_view(text_).substr(0, emitted_); }
  int n_tokens() const { return n_tokens_; }

 private:
  std::string release(size_t end);  // returns text_[emitted_, end) and marks it shown
  size_t safe_end() const;          // end of the text that may be shown while running

  std::vector<int32_t> stop_token_ids_;
  std::vector<std::string> stop_;
  int32_t end_id_ = -1;  // -1: no EOS check (unset or ignore_eos)
  int min_tokens_, max_tokens_;
  bool include_stop_;
  size_t max_stop_len_ = 0;

  std::string text_;     // all decoded text kept so far; [0, emitted_) has been returned
  size_t emitted_ = 0;
  int n_tokens_ = 0;
  FinishReason reason_ = FinishReason::kNone;
  StopMatch match_;
};

}  // namespace dsv3
