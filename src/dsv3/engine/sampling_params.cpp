// sampling_params.cpp: SamplingParams::validate, the one place bad sampling input is rejected (engine).
// Messages name the field and the accepted range, as the server returns them verbatim with status 400.
#include "dsv3/engine/sampling_params.h"

#include <cmath>

#include "dsv3/base/error.h"

namespace dsv3 {

void SamplingParams::validate(int vocab_size) const {
  EXPECT(std::isfinite(temperature) && temperature >= 0.0f,
         "sampling: temperature must be >= 0 (0 = greedy), got {}", temperature);
  EXPECT(top_k >= 0, "sampling: top_k must be >= 0 (0 = off), got {}", top_k);
  EXPECT(top_p > 0.0f && top_p <= 1.0f, "sampling: top_p must be in (0, 1], got {}", top_p);
  EXPECT(min_p >= 0.0f && min_p <= 1.0f, "sampling: min_p must be in [0, 1], got {}", min_p);
  EXPECT(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f,
         "sampling: repetition_penalty must be > 0 (1 = off), got {}", repetition_penalty);
  EXPECT(presence_penalty >= -2.0f && presence_penalty <= 2.0f,
         "sampling: presence_penalty must be in [-2, 2], got {}", presence_penalty);
  EXPECT(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f,
         "sampling: frequency_penalty must be in [-2, 2], got {}", frequency_penalty);
  if (logprobs) {
    EXPECT(*logprobs >= 0 && *logprobs <= kMaxLogprobs, "sampling: logprobs must be in [0, {}], got {}",
           kMaxLogprobs, *logprobs);
    EXPECT(vocab_size <= 0 || *logprobs <= vocab_size, "sampling: logprobs {} exceeds the vocabulary size {}",
           *logprobs, vocab_size);
  }
  EXPECT(max_tokens >= 1, "sampling: max_tokens must be >= 1, got {}", max_tokens);
  EXPECT(min_tokens >= 0, "sampling: min_tokens must be >= 0, got {}", min_tokens);
  EXPECT(min_tokens <= max_tokens, "sampling: min_tokens ({}) must not exceed max_tokens ({})", min_tokens,
         max_tokens);
  EXPECT(n >= 1, "sampling: n must be >= 1, got {}", n);
  for (size_t i = 0; i < stop_token_ids.size(); ++i) {
    const int32_t id = stop_token_ids[i];
    EXPECT(id >= 0 && (vocab_size <= 0 || id < vocab_size),
           "sampling: stop_token_ids[{}] = {} is not a token id (vocabulary size {})", i, id, vocab_size);
  }
  for (size_t i = 0; i < stop.size(); ++i) EXPECT(!stop[i].empty(), "sampling: stop[{}] is an empty string", i);
  if (end_id) {
    EXPECT(*end_id >= 0 && (vocab_size <= 0 || *end_id < vocab_size),
           "sampling: end_id = {} is not a token id (vocabulary size {})", *end_id, vocab_size);
  }
}

}  // namespace dsv3
