// stop_checker.cpp: stop ids, EOS, max_tokens and stop strings with hold-back of partial matches (engine).
// The rules and their order are documented in stop_checker.h.
#include "dsv3/engine/stop_checker.h"

#include <algorithm>

#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

// Bytes of a UTF-8 sequence given its lead byte; 0 for a continuation or invalid byte.
int utf8_sequence_length(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 0;
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "";
}

StopChecker::StopChecker(const SamplingParams& params)
    : stop_token_ids_(params.stop_token_ids),
      stop_(params.stop),
      min_tokens_(params.min_tokens),
      max_tokens_(params.max_tokens),
      include_stop_(params.include_stop_str_in_output) {
  if (params.end_id && !params.ignore_eos) end_id_ = *params.end_id;
  for (const std::string& s : stop_) {
    EXPECT(!s.empty(), "sampling: empty stop string");
    max_stop_len_ = std::max(max_stop_len_, s.size());
  }
  EXPECT(max_tokens_ >= 1, "sampling: max_tokens must be >= 1, got {}", max_tokens_);
}

std::string StopChecker::release(size_t end) {
  CHECK(end >= emitted_ && end <= text_.size(), "release({}) with emitted {} of {}", end, emitted_, text_.size());
  std::string out = text_.substr(emitted_, end - emitted_);
  emitted_ = end;
  return out;
}

size_t StopChecker::safe_end() const {
  size_t end = text_.size();
  if (!include_stop_) {
    // Longest suffix that is a prefix of some stop string (a complete one too: that is a match min_tokens ignored).
    const size_t max_len = std::min(max_stop_len_, text_.size() - emitted_);
    for (size_t len = max_len; len > 0; --len) {
      const std::string_view suffix = std::string_view(text_).substr(text_.size() - len);
      const bool prefix = std::any_of(stop_.begin(), stop_.end(), [&](const std::string& s) {
        return s.size() >= len && std::string_view(s).substr(0, len) == suffix;
      });
      if (prefix) {
        end = text_.size() - len;
        break;
      }
    }
  }
  // A trailing incomplete UTF-8 sequence: its lead byte is within the last 3 bytes and it needs more bytes.
  for (size_t back = 1; back <= 3 && back <= end - emitted_; ++back) {
    const auto c = static_cast<unsigned char>(text_[end - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const int need = utf8_sequence_length(c);
    if (need > static_cast<int>(back)) end -= back;
    break;
  }
  return end;
}

std::string StopChecker::update(int32_t token, std::string_view delta) {
  CHECK(!finished(), "StopChecker::update after the request finished ({})", finish_reason_name(reason_));
  ++n_tokens_;
  const bool active = n_tokens_ >= min_tokens_;

  // Stop tokens: the token's own text is part of the output only with include_stop_str_in_output.
  if (active) {
    StopMatch::Kind kind = StopMatch::Kind::kNone;
    if (end_id_ >= 0 && token == end_id_)
      kind = StopMatch::Kind::kEos;
    else if (std::find(stop_token_ids_.begin(), stop_token_ids_.end(), token) != stop_token_ids_.end())
      kind = StopMatch::Kind::kStopToken;
    if (kind != StopMatch::Kind::kNone) {
      if (include_stop_) text_ += delta;
      reason_ = FinishReason::kStop;
      match_ = StopMatch{kind, token, {}};
      return release(text_.size());
    }
  }

  const size_t prev = text_.size();
  text_ += delta;

  // Stop strings: only matches ending in the new text; earlier ones were found before or fell before min_tokens.
  if (active && !stop_.empty() && text_.size() > prev) {
    const size_t from = prev + 1 > max_stop_len_ ? prev + 1 - max_stop_len_ : 0;
    size_t best_start = 0, best_end = std::string::npos;
    const std::string* best = nullptr;
    for (const std::string& s : stop_) {
      for (size_t pos = text_.find(s, from); pos != std::string::npos; pos = text_.find(s, pos + 1)) {
        const size_t end = pos + s.size();
        if (end <= prev) continue;
        if (best == nullptr || end < best_end || (end == best_end && pos < best_start)) {
          best = &s;
          best_start = pos;
          best_end = end;
        }
        break;  // later occurrences of the same string end later
      }
    }
    if (best != nullptr) {
      const size_t cut = include_stop_ ? best_end : best_start;
      CHECK(cut >= emitted_, "stop string at {} but {} bytes already shown", best_start, emitted_);
      reason_ = FinishReason::kStop;
      match_ = StopMatch{StopMatch::Kind::kStopString, -1, *best};
      std::string out = release(cut);
      text_.resize(cut);
      return out;
    }
  }

  if (n_tokens_ >= max_tokens_) {
    reason_ = FinishReason::kLength;
    return release(text_.size());
  }
  return release(safe_end());
}

std::string StopChecker::finish(FinishReason reason) {
  CHECK(!finished(), "StopChecker::finish after the request finished ({})", finish_reason_name(reason_));
  CHECK(reason == FinishReason::kCancelled || reason == FinishReason::kLength, "finish with reason {}",
        finish_reason_name(reason));
  reason_ = reason;
  return release(text_.size());
}

}  // namespace dsv3
