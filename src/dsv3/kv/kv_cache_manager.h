// kv_cache_manager.h: per-request block tables over a BlockPool, with prefix reuse (kv).
// The scheduler asks it for blocks, the engine reads the tables to place each token's KV entry
// (block table[pos / tokens_per_block], slot pos % tokens_per_block). Host only, no model code.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "dsv3/kv/block_hash.h"
#include "dsv3/kv/block_pool.h"

namespace dsv3::kv {

struct KvCacheConfig {
  int n_blocks = 0;               // size of the pool
  int tokens_per_block = 64;      // tokens per block
  bool enable_block_reuse = false;  // prefix reuse of full computed blocks across requests
};

// The longest cached prefix of a token sequence, in whole blocks.
struct PrefixHit {
  std::vector<int32_t> blocks;    // [n_hit_blocks] cached block ids, in order
  std::vector<BlockHash> hashes;  // [n_hit_blocks] chain hashes of those blocks
  int n_tokens = 0;               // n_hit_blocks * tokens_per_block
};

class KvCacheManager {
 public:
  explicit KvCacheManager(const KvCacheConfig& config);

  const KvCacheConfig& config() const { return config_; }
  int tokens_per_block() const { return config_.tokens_per_block; }
  int n_blocks_for(int n_tokens) const { return (n_tokens + tokens_per_block() - 1) / tokens_per_block(); }

  // Longest prefix of `tokens` (a request's prompt + output so far) held in cached full blocks. Never covers the
  // block holding the last token, so the caller always computes at least one token (the one that gives logits).
  // Empty when reuse is off. Does not change the pool; the hit is only valid until the pool changes.
  PrefixHit find_cached_prefix(std::span<const int32_t> tokens) const;

  // Whether allocate(id, n_tokens, hit) would succeed now.
  bool can_allocate(int64_t id, int n_tokens, const PrefixHit& hit = {}) const;
  // Grows the table of `id` (created on first call) to cover n_tokens token positions. On the first call, `hit`'s
  // blocks become the head of the table (shared, ref_count + 1). Returns false and changes nothing when the pool
  // lacks blocks. A table never shrinks or changes its existing entries (append-only).
  bool allocate(int64_t id, int n_tokens, const PrefixHit& hit = {});
  // Tells the manager that tokens[0, n_computed) of `id` now have their KV in the cache; the full blocks among them
  // enter the prefix cache (when reuse is on). `tokens` must extend the tokens passed before for this request.
  void cache_computed_blocks(int64_t id, std::span<const int32_t> tokens, int n_computed);
  // Releases every block of `id` (tail first, so that the LRU evicts a request's last blocks before its first,
  // which are the likelier shared prefix) and forgets the table. No-op for an unknown id.
  void free(int64_t id);

  bool has_table(int64_t id) const { return tables_.count(id) != 0; }
  // The block ids of `id`'s table; CHECKs that it exists.
  std::span<const int32_t> block_table(int64_t id) const;
  int n_tables() const { return static_cast<int>(tables_.size()); }

  const BlockPool& pool() const { return pool_; }
  int n_free_blocks() const { return pool_.n_free(); }
  int n_used_blocks() const { return pool_.n_used(); }

  // Aborts with a message on a broken invariant: the pool's own (free + cached-free + used == total, hash map one
  // to one), each block's ref_count equals the number of tables holding it, no block shared (or placed in a table)
  // without a matching chain hash, and every table extends its value at the previous check (append-only).
  void check_integrity() const;

 private:
  struct Table {
    std::vector<int32_t> blocks;
    std::vector<BlockHash> hashes;  // chain hashes of the leading full computed blocks, hashes.size() <= blocks.size()
  };
  const Table& table(int64_t id) const;

  KvCacheConfig config_;
  BlockPool pool_;
  std::unordered_map<int64_t, Table> tables_;
  // Tables as seen by the last check_integrity(), to prove that they only grow.
  mutable std::unordered_map<int64_t, std::vector<int32_t>> checked_tables_;
};

}  // namespace dsv3::kv
