// block_pool.h: the pool of KV blocks: ids, reference counts, free lists and the prefix-cache hash map (kv).
// The pool hands out block ids only; the engine owns the memory ([layers, n_blocks, tokens_per_block, 576] bf16).
// Host-only bookkeeping, no CUDA and no tensors, so it is tested exhaustively on the CPU.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

#include "dsv3/kv/block_hash.h"

namespace dsv3::kv {

// Every block is in exactly one of three states:
//   used         ref_count > 0: held by ref_count block tables (shared only through a prefix-cache hit);
//   free         ref_count == 0, no hash: on the free list, handed out first;
//   cached-free  ref_count == 0, with a hash: keeps its KV for prefix reuse, on an LRU list, evicted (its hash
//                dropped) only when the free list runs dry.
// A hashed block may also be used; the hash map holds exactly the hashed blocks, one block per hash.
class BlockPool {
 public:
  BlockPool(int n_blocks, int tokens_per_block);

  int n_blocks() const { return static_cast<int>(blocks_.size()); }
  int tokens_per_block() const { return tokens_per_block_; }
  // Blocks that allocate() can hand out: free + cached-free.
  int n_free() const { return static_cast<int>(free_.size() + cached_free_.size()); }
  int n_free_uncached() const { return static_cast<int>(free_.size()); }
  int n_cached_free() const { return static_cast<int>(cached_free_.size()); }
  int n_used() const { return n_used_; }
  int n_cached() const { return static_cast<int>(hash_to_block_.size()); }

  // Takes n blocks (ref_count 1 each), free ones first, then evicts cached-free ones least recently used first.
  // CHECKs n <= n_free(): callers test capacity first.
  std::vector<int32_t> allocate(int n);
  // The cached block holding `hash`, if any (used or cached-free).
  std::optional<int32_t> lookup(BlockHash hash) const;
  // Adds a reference to a hashed block found by lookup(); a cached-free block becomes used again.
  void acquire(int32_t block);
  // Drops one reference; at zero the block goes to the cached-free LRU (most recent end) if hashed, else to the
  // free list.
  void release(int32_t block);
  // Records that used block `block` now holds the full, computed content named by `hash`. Returns false (and leaves
  // the block unhashed) when another block already holds that hash: the map keeps one block per hash.
  bool cache(int32_t block, BlockHash hash);

  int ref_count(int32_t block) const;
  std::optional<BlockHash> hash_of(int32_t block) const;

  // Aborts with a message when a pool invariant is broken: states partition the blocks, counts add up to n_blocks,
  // the hash map and the per-block hashes agree one to one, the LRU list holds exactly the cached-free blocks.
  void check_integrity() const;

 private:
  struct Block {
    int ref_count = 0;
    bool has_hash = false;
    BlockHash hash = 0;
    bool on_free_list = false;
    std::list<int32_t>::iterator lru_pos;  // valid while cached-free
  };
  void check_id(int32_t block) const;

  int tokens_per_block_;
  int n_used_ = 0;
  std::vector<Block> blocks_;
  std::deque<int32_t> free_;                 // unhashed free blocks, FIFO
  std::list<int32_t> cached_free_;           // hashed free blocks, front = least recently released
  std::unordered_map<BlockHash, int32_t> hash_to_block_;
};

}  // namespace dsv3::kv
