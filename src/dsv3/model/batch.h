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

struct ForwardBatch {
  std::vector<int32_t> token_ids;   // [n]
  std::vector<SeqEntry> seqs;       // absorbed sequences first, then prompt-form sequences
  std::vector<int32_t> logit_rows;  // rows whose logits are returned, in this order
  bool want_hidden = false;         // keep the final-normed hidden state of every row (MTP input)
  bool logits_on_device = false;    // leave the logits in backend memory (ForwardOutput::device_logits) and copy
                                    // nothing to the host: the engine samples them with Backend::sample

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
