// batch.h: one engine step as the model sees it — a ragged batch of sequences, and the paged MLA cache (model).
// KV layout (model-spec "Decisions"): per layer, per token, the normalized latent (kv_lora_rank) followed by the
// rotated k_pe (qk_rope_head_dim), bf16, in blocks of block_size tokens: [n_layers, n_blocks, block_size, entry].
#pragma once

#include <cstdint>
#include <vector>

#include "dsv3/backend/backend.h"

namespace dsv3 {

struct SeqEntry {
  int32_t n_tokens = 0;         // new tokens in this step; their rows are contiguous, in sequence order
  int32_t n_cached = 0;         // tokens already cached: the first new token sits at position n_cached
  bool absorbed = false;        // decode form (absorbed MLA); false: prompt form (naive MLA)
  std::vector<int32_t> blocks;  // block ids covering positions [0, n_cached + n_tokens)
};

// A row whose input id the previous step sampled on the backend and the host has not read yet (the engine's overlap
// scheduler): token_ids holds kPendingTokenId there, and the model writes device_tokens[index] into the row's id on
// the device (Backend::fill_token_ids) before anything reads it. The model CHECKs that every placeholder row is
// filled this way and no other row is, so a placeholder never reaches the embedding.
constexpr int32_t kPendingTokenId = -1;
struct DeviceTokenRow {
  int32_t row = 0;    // row of token_ids
  int32_t index = 0;  // index into ForwardBatch::device_tokens
};

struct ForwardBatch {
  std::vector<int32_t> token_ids;   // [n]; kPendingTokenId in the rows of device_rows
  std::vector<SeqEntry> seqs;       // absorbed sequences first, then prompt-form sequences
  std::vector<int32_t> logit_rows;  // rows whose logits are returned, in this order
  bool want_hidden = false;         // keep the final-normed hidden state of every row (MTP input)
  bool logits_on_device = false;    // leave the logits in backend memory (ForwardOutput::device_logits) and copy
                                    // nothing to the host: the engine samples them with Backend::sample
  std::vector<DeviceTokenRow> device_rows;  // rows whose id comes from device_tokens, each row at most once
  TensorView device_tokens;                 // [k] i32 in backend memory (the previous step's sampled ids); empty
                                            // when device_rows is

  int64_t n_tokens() const { return static_cast<int64_t>(token_ids.size()); }
};

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t n_blocks, int64_t block_size, int64_t entry, Allocator& alloc);
  TensorView layer(int64_t l) const;  // [n_blocks, block_size, entry]
  int64_t n_layers() const { return n_layers_; }
  int64_t n_blocks() const { return n_blocks_; }
  int64_t block_size() const { return block_size_; }
  int64_t entry() const { return entry_; }
  size_t nbytes() const { return data_.nbytes(); }

 private:
  int64_t n_layers_, n_blocks_, block_size_, entry_;
  Tensor data_;  // [n_layers, n_blocks, block_size, entry] bf16
};

}  // namespace dsv3
