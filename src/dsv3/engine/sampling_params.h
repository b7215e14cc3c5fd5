// sampling_params.h: the per-request sampling and stop settings of the engine (engine).
// Field names follow TensorRT-LLM's LLM-API SamplingParams and the OpenAI/vLLM request fields, so the server and the
// tools map JSON keys and CLI options onto them one to one. validate() throws dsv3::Error naming the bad field.
// Consumed by Sampler (logit processing and the draw) and StopChecker (stop ids, stop strings, lengths).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dsv3/base/sampling_rules.h"  // kGreedyTemperature

namespace dsv3 {

// OpenAI's top_logprobs limit and vLLM's default max_logprobs.
inline constexpr int kMaxLogprobs = 20;

struct SamplingParams {
  // Logit processing, applied in this order (Sampler documents the exact math):
  float repetition_penalty = 1.0f;  // > 0; 1 = off. Seen (prompt + generated) tokens: l > 0 ? l / r : l * r
  float presence_penalty = 0.0f;    // [-2, 2]; l -= presence_penalty once per token present in the generated tokens
  float frequency_penalty = 0.0f;   // [-2, 2]; l -= frequency_penalty * count of the token in the generated tokens
  int min_tokens = 0;               // EOS (unless ignore_eos) and stop_token_ids are masked until this many tokens
  float temperature = 1.0f;         // >= 0; < kGreedyTemperature = greedy (argmax, ties to the lowest id)
  int top_k = 0;                    // >= 0; 0 = off; keeps the k best (logit desc, id asc)
  float top_p = 1.0f;               // (0, 1]; 1 = off; smallest prefix whose probability mass reaches top_p
  float min_p = 0.0f;               // [0, 1]; 0 = off; keeps p >= min_p * p_max
  // Random draw: the same seed gives the same tokens whatever the batch. Unset: the engine assigns one from a
  // process-wide counter (SeedSource), so each request still owns an independent stream.
  std::optional<uint64_t> seed;

  // Outputs. logprobs = n: the chosen token's logprob plus the n most likely tokens' (0 = only the chosen token's);
  // unset = no logprobs.
  std::optional<int> logprobs;

  // Stop conditions (StopChecker).
  int max_tokens = 32;                    // >= 1; TensorRT-LLM's default. Finish reason "length"
  std::vector<int32_t> stop_token_ids;    // finish reason "stop"; the token's text is dropped unless included below
  std::vector<std::string> stop;          // stop strings, matched on the decoded text; non-empty
  bool include_stop_str_in_output = false;
  bool ignore_eos = false;                // end_id neither stops nor is masked by min_tokens
  std::optional<int32_t> end_id;          // EOS; the engine fills it from the tokenizer when unset
  int n = 1;                              // sequences per prompt, >= 1

  // Throws dsv3::Error naming the first bad field. vocab_size > 0 also range-checks token ids and logprobs.
  void validate(int vocab_size = 0) const;

  bool greedy() const { return sampling_greedy(temperature); }
};

}  // namespace dsv3
