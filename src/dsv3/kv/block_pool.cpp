// block_pool.cpp: BlockPool: free list, LRU of cached-free blocks, reference counts, hash map (kv).
// Invariant (checked by check_integrity): n_free_uncached + n_cached_free + n_used == n_blocks.
#include "dsv3/kv/block_pool.h"

#include "dsv3/base/error.h"

namespace dsv3::kv {

BlockPool::BlockPool(int n_blocks, int tokens_per_block) : tokens_per_block_(tokens_per_block) {
  EXPECT(n_blocks >= 1, "KV block pool: n_blocks must be >= 1, got {}", n_blocks);
  EXPECT(tokens_per_block >= 1, "KV block pool: tokens_per_block must be >= 1, got {}", tokens_per_block);
  blocks_.resize(n_blocks);
  for (int32_t b = 0; b < n_blocks; ++b) {
    free_.push_back(b);
    blocks_[b].on_free_list = true;
  }
}

void BlockPool::check_id(int32_t block) const {
  CHECK(block >= 0 && block < n_blocks(), "block id {} out of range [0, {})", block, n_blocks());
}

std::vector<int32_t> BlockPool::allocate(int n) {
  CHECK(n >= 0 && n <= n_free(), "allocate({}) with only {} free blocks", n, n_free());
  std::vector<int32_t> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) {
    int32_t b;
    if (!free_.empty()) {
      b = free_.front();
      free_.pop_front();
      blocks_[b].on_free_list = false;
    } else {
      // NOTE: eviction: the least recently released cached block loses its hash, and so its reuse value.
      b = cached_free_.front();
      cached_free_.pop_front();
      Block& blk = blocks_[b];
      CHECK(blk.has_hash, "cached-free block {} has no hash", b);
      hash_to_block_.erase(blk.hash);
      blk.has_hash = false;
      blk.hash = 0;
    }
    CHECK(blocks_[b].ref_count == 0, "allocating block {} with ref_count {}", b, blocks_[b].ref_count);
    blocks_[b].ref_count = 1;
    ++n_used_;
    out.push_back(b);
  }
  return out;
}

std::optional<int32_t> BlockPool::lookup(BlockHash hash) const {
  auto it = hash_to_block_.find(hash);
  if (it == hash_to_block_.end()) return std::nullopt;
  return it->second;
}

void BlockPool::acquire(int32_t block) {
  check_id(block);
  Block& blk = blocks_[block];
  CHECK(blk.has_hash, "acquire of unhashed block {}: only prefix-cache hits may share a block", block);
  if (blk.ref_count == 0) {
    cached_free_.erase(blk.lru_pos);
    ++n_used_;
  }
  ++blk.ref_count;
}

void BlockPool::release(int32_t block) {
  check_id(block);
  Block& blk = blocks_[block];
  CHECK(blk.ref_count > 0, "release of block {} with ref_count {}", block, blk.ref_count);
  if (--blk.ref_count > 0) return;
  --n_used_;
  if (blk.has_hash) {
    blk.lru_pos = cached_free_.insert(cached_free_.end(), block);
  } else {
    free_.push_back(block);
    blk.on_free_list = true;
  }
}

bool BlockPool::cache(int32_t block, BlockHash hash) {
  check_id(block);
  Block& blk = blocks_[block];
  CHECK(blk.ref_count > 0, "cache() of block {} that is not in use", block);
  if (blk.has_hash) {
    CHECK(blk.hash == hash, "block {} re-cached under a different hash ({:#x} vs {:#x})", block, hash, blk.hash);
    return true;
  }
  if (hash_to_block_.count(hash)) return false;
  hash_to_block_.emplace(hash, block);
  blk.has_hash = true;
  blk.hash = hash;
  return true;
}

int BlockPool::ref_count(int32_t block) const {
  check_id(block);
  return blocks_[block].ref_count;
}

std::optional<BlockHash> BlockPool::hash_of(int32_t block) const {
  check_id(block);
  if (!blocks_[block].has_hash) return std::nullopt;
  return blocks_[block].hash;
}

void BlockPool::check_integrity() const {
  const int n = n_blocks();
  CHECK(n_free_uncached() + n_cached_free() + n_used() == n,
        "KV pool: free {} + cached-free {} + used {} != total {}", n_free_uncached(), n_cached_free(), n_used(), n);
  std::vector<int> seen(n, 0);  // 1: free list, 2: LRU
  for (int32_t b : free_) {
    CHECK(b >= 0 && b < n, "KV pool: free list holds bad id {}", b);
    CHECK(seen[b] == 0, "KV pool: block {} twice on the free lists", b);
    seen[b] = 1;
  }
  for (int32_t b : cached_free_) {
    CHECK(b >= 0 && b < n, "KV pool: LRU list holds bad id {}", b);
    CHECK(seen[b] == 0, "KV pool: block {} twice on the free lists", b);
    seen[b] = 2;
  }
  int n_used = 0, n_hashed = 0;
  for (int32_t b = 0; b < n; ++b) {
    const Block& blk = blocks_[b];
    CHECK(blk.ref_count >= 0, "KV pool: block {} has ref_count {}", b, blk.ref_count);
    if (blk.ref_count > 0) {
      ++n_used;
      CHECK(seen[b] == 0, "KV pool: used block {} (ref_count {}) is on a free list", b, blk.ref_count);
    } else if (blk.has_hash) {
      CHECK(seen[b] == 2, "KV pool: cached-free block {} is not on the LRU list", b);
      CHECK(*blk.lru_pos == b, "KV pool: LRU position of block {} points at {}", b, *blk.lru_pos);
    } else {
      CHECK(seen[b] == 1, "KV pool: free block {} is not on the free list", b);
    }
    CHECK(blk.on_free_list == (seen[b] == 1), "KV pool: block {} free-list flag out of date", b);
    if (blk.has_hash) {
      ++n_hashed;
      auto it = hash_to_block_.find(blk.hash);
      CHECK(it != hash_to_block_.end() && it->second == b,
            "KV pool: block {} has hash {:#x} but the map does not point back to it", b, blk.hash);
    }
  }
  CHECK(n_used == n_used_, "KV pool: {} blocks have ref_count > 0 but n_used is {}", n_used, n_used_);
  // Every map entry points at a block carrying that hash, and no two entries share a block (counts match).
  CHECK(n_hashed == static_cast<int>(hash_to_block_.size()), "KV pool: {} hashed blocks but {} map entries",
        n_hashed, hash_to_block_.size());
  for (const auto& [h, b] : hash_to_block_) {
    CHECK(b >= 0 && b < n && blocks_[b].has_hash && blocks_[b].hash == h,
          "KV pool: map entry {:#x} -> block {} does not match the block's hash", h, b);
  }
}

}  // namespace dsv3::kv
