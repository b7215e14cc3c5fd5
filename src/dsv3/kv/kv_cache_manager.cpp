// kv_cache_manager.cpp: block tables, prefix-cache lookups and the table-level integrity check (kv).
#include "dsv3/kv/kv_cache_manager.h"

#include <algorithm>

#include "dsv3/base/error.h"

namespace dsv3::kv {

KvCacheManager::KvCacheManager(const KvCacheConfig& config)
    : config_(config), pool_(config.n_blocks, config.tokens_per_block) {}

const KvCacheManager::Table& KvCacheManager::table(int64_t id) const {
  auto it = tables_.find(id);
  CHECK(it != tables_.end(), "no KV block table for request {}", id);
  return it->second;
}

std::span<const int32_t> KvCacheManager::block_table(int64_t id) const { return table(id).blocks; }

PrefixHit KvCacheManager::find_cached_prefix(std::span<const int32_t> tokens) const {
  PrefixHit hit;
  if (!config_.enable_block_reuse || tokens.empty()) return hit;
  const int tpb = tokens_per_block();
  // NOTE: (size - 1) / tpb: the block that holds the last token is never reused, even when full.
  const int max_blocks = static_cast<int>(tokens.size() - 1) / tpb;
  BlockHash parent = kRootBlockHash;
  for (int j = 0; j < max_blocks; ++j) {
    BlockHash h = hash_block_tokens(parent, tokens.subspan(static_cast<size_t>(j) * tpb, tpb));
    auto b = pool_.lookup(h);
    if (!b) break;
    hit.blocks.push_back(*b);
    hit.hashes.push_back(h);
    parent = h;
  }
  hit.n_tokens = static_cast<int>(hit.blocks.size()) * tpb;
  return hit;
}

bool KvCacheManager::can_allocate(int64_t id, int n_tokens, const PrefixHit& hit) const {
  auto it = tables_.find(id);
  const int have = it != tables_.end() ? static_cast<int>(it->second.blocks.size())
                                       : static_cast<int>(hit.blocks.size());
  const int n_new = std::max(0, n_blocks_for(n_tokens) - have);
  int n_free = pool_.n_free();
  if (it == tables_.end()) {
    // Hit blocks that sit cached-free leave the free count when this request takes them.
    for (int32_t b : hit.blocks) n_free -= pool_.ref_count(b) == 0 ? 1 : 0;
  }
  return n_new <= n_free;
}

bool KvCacheManager::allocate(int64_t id, int n_tokens, const PrefixHit& hit) {
  CHECK(n_tokens >= 0, "allocate of {} tokens for request {}", n_tokens, id);
  if (!can_allocate(id, n_tokens, hit)) return false;
  auto it = tables_.find(id);
  if (it == tables_.end()) {
    CHECK(hit.blocks.size() == hit.hashes.size(), "prefix hit with {} blocks but {} hashes", hit.blocks.size(),
          hit.hashes.size());
    Table t;
    // Take the hit blocks first, so that allocating the rest cannot evict them.
    for (size_t j = 0; j < hit.blocks.size(); ++j) {
      auto h = pool_.hash_of(hit.blocks[j]);
      CHECK(h && *h == hit.hashes[j], "stale prefix hit: block {} no longer holds hash {:#x}", hit.blocks[j],
            hit.hashes[j]);
      pool_.acquire(hit.blocks[j]);
    }
    t.blocks = hit.blocks;
    t.hashes = hit.hashes;
    it = tables_.emplace(id, std::move(t)).first;
  } else {
    CHECK(hit.blocks.empty(), "prefix hit passed for request {} that already has a block table", id);
  }
  Table& t = it->second;
  const int n_new = n_blocks_for(n_tokens) - static_cast<int>(t.blocks.size());
  if (n_new > 0) {
    std::vector<int32_t> fresh = pool_.allocate(n_new);
    t.blocks.insert(t.blocks.end(), fresh.begin(), fresh.end());
  }
  return true;
}

void KvCacheManager::cache_computed_blocks(int64_t id, std::span<const int32_t> tokens, int n_computed) {
  auto it = tables_.find(id);
  CHECK(it != tables_.end(), "cache_computed_blocks for request {} without a block table", id);
  CHECK(n_computed >= 0 && n_computed <= static_cast<int>(tokens.size()),
        "request {}: {} computed tokens of {}", id, n_computed, tokens.size());
  if (!config_.enable_block_reuse) return;
  Table& t = it->second;
  const int tpb = tokens_per_block();
  const int n_full = n_computed / tpb;
  CHECK(n_full <= static_cast<int>(t.blocks.size()), "request {}: {} computed blocks but a table of {}", id, n_full,
        t.blocks.size());
  for (int j = static_cast<int>(t.hashes.size()); j < n_full; ++j) {
    BlockHash parent = j == 0 ? kRootBlockHash : t.hashes[j - 1];
    BlockHash h = hash_block_tokens(parent, tokens.subspan(static_cast<size_t>(j) * tpb, tpb));
    t.hashes.push_back(h);
    // false: an identical block is already cached (computed concurrently by another request); ours stays private.
    pool_.cache(t.blocks[j], h);
  }
}

void KvCacheManager::free(int64_t id) {
  auto it = tables_.find(id);
  if (it == tables_.end()) return;
  const std::vector<int32_t>& blocks = it->second.blocks;
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) pool_.release(*b);
  tables_.erase(it);
  checked_tables_.erase(id);
}

void KvCacheManager::check_integrity() const {
  pool_.check_integrity();
  std::vector<int> refs(pool_.n_blocks(), 0);
  for (const auto& [id, t] : tables_) {
    CHECK(t.hashes.size() <= t.blocks.size(), "request {}: {} block hashes for {} blocks", id, t.hashes.size(),
          t.blocks.size());
    for (size_t j = 0; j < t.blocks.size(); ++j) {
      const int32_t b = t.blocks[j];
      CHECK(b >= 0 && b < pool_.n_blocks(), "request {}: table entry {} holds bad block id {}", id, j, b);
      ++refs[b];
      auto h = pool_.hash_of(b);
      if (h) {
        CHECK(j < t.hashes.size() && t.hashes[j] == *h,
              "request {}: block {} at table position {} carries hash {:#x} that does not match the request's "
              "tokens", id, b, j, *h);
      }
    }
  }
  for (int32_t b = 0; b < pool_.n_blocks(); ++b) {
    CHECK(refs[b] == pool_.ref_count(b), "KV block {}: ref_count {} but held by {} block tables", b,
          pool_.ref_count(b), refs[b]);
    // A shared block must be a prefix-cache block; the hash match per table was checked above.
    CHECK(refs[b] <= 1 || pool_.hash_of(b).has_value(), "KV block {} is shared by {} tables without a hash", b,
          refs[b]);
  }
  for (const auto& [id, t] : tables_) {
    auto old = checked_tables_.find(id);
    if (old != checked_tables_.end()) {
      CHECK(old->second.size() <= t.blocks.size() &&
                std::equal(old->second.begin(), old->second.end(), t.blocks.begin()),
            "request {}: block table changed an existing entry or shrank (was {} blocks, now {})", id,
            old->second.size(), t.blocks.size());
    }
    checked_tables_[id] = t.blocks;
  }
  for (auto it = checked_tables_.begin(); it != checked_tables_.end();) {
    it = tables_.count(it->first) ? std::next(it) : checked_tables_.erase(it);
  }
}

}  // namespace dsv3::kv
