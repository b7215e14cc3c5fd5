// test_block_pool.cpp: BlockPool counts, ref counts, free/LRU lists, hash map, and the chained block hash (kv).
// Expected values are worked out by hand in each test; misuse that breaks an invariant must abort (death tests).
#include <algorithm>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

#include "dsv3/base/error.h"
#include "dsv3/kv/block_hash.h"
#include "dsv3/kv/block_pool.h"

namespace dsv3::kv {
namespace {

std::vector<int32_t> iota_tokens(int n, int32_t first) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(BlockPool, AllocateReleaseCounts) {
  BlockPool pool(8, 64);
  EXPECT_EQ(pool.n_free(), 8);
  std::vector<int32_t> a = pool.allocate(3);
  std::vector<int32_t> b = pool.allocate(2);
  EXPECT_EQ(a, (std::vector<int32_t>{0, 1, 2}));  // free list is FIFO from a fresh pool
  EXPECT_EQ(b, (std::vector<int32_t>{3, 4}));
  EXPECT_EQ(pool.n_used(), 5);
  EXPECT_EQ(pool.n_free(), 3);
  for (int32_t x : a) EXPECT_EQ(pool.ref_count(x), 1);
  pool.check_integrity();
  pool.release(a[1]);
  EXPECT_EQ(pool.ref_count(a[1]), 0);
  EXPECT_EQ(pool.n_free_uncached(), 4);
  EXPECT_EQ(pool.n_cached_free(), 0);
  pool.check_integrity();
  // The released block goes to the back of the free list: 5, 6, 7 come out first.
  EXPECT_EQ(pool.allocate(4), (std::vector<int32_t>{5, 6, 7, 1}));
  EXPECT_EQ(pool.n_free(), 0);
  pool.check_integrity();
}

TEST(BlockPool, RejectsBadSizes) {
  EXPECT_THROW(BlockPool(0, 64), Error);
  EXPECT_THROW(BlockPool(4, 0), Error);
}

TEST(BlockPoolDeathTest, DoubleReleaseAborts) {
  BlockPool pool(2, 4);
  std::vector<int32_t> a = pool.allocate(1);
  pool.release(a[0]);
  EXPECT_DEATH(pool.release(a[0]), "release of block 0 with ref_count 0");
}

TEST(BlockPoolDeathTest, OverAllocationAborts) {
  BlockPool pool(2, 4);
  EXPECT_DEATH(pool.allocate(3), "allocate\\(3\\) with only 2 free blocks");
}

TEST(BlockPoolDeathTest, SharingAnUnhashedBlockAborts) {
  BlockPool pool(2, 4);
  std::vector<int32_t> a = pool.allocate(1);
  EXPECT_DEATH(pool.acquire(a[0]), "acquire of unhashed block 0");
}

TEST(BlockPool, CachedBlocksSurviveReleaseAndAreEvictedLru) {
  BlockPool pool(4, 4);
  std::vector<int32_t> a = pool.allocate(4);  // 0 1 2 3
  ASSERT_TRUE(pool.cache(a[0], 100));
  ASSERT_TRUE(pool.cache(a[1], 101));
  ASSERT_TRUE(pool.cache(a[2], 102));
  EXPECT_EQ(pool.n_cached(), 3);
  // Release in the order 2, 0, 3, 1: the unhashed block 3 goes to the free list, the others to the LRU in that order.
  pool.release(a[2]);
  pool.release(a[0]);
  pool.release(a[3]);
  pool.release(a[1]);
  EXPECT_EQ(pool.n_free_uncached(), 1);
  EXPECT_EQ(pool.n_cached_free(), 3);
  EXPECT_EQ(pool.n_used(), 0);
  pool.check_integrity();
  EXPECT_EQ(pool.lookup(101), std::optional<int32_t>(1));
  // Unhashed first (3), then least recently released cached (2, hash 102): its hash is gone afterwards.
  EXPECT_EQ(pool.allocate(2), (std::vector<int32_t>{3, 2}));
  EXPECT_FALSE(pool.lookup(102).has_value());
  EXPECT_FALSE(pool.hash_of(2).has_value());
  EXPECT_EQ(pool.lookup(100), std::optional<int32_t>(0));
  EXPECT_EQ(pool.n_cached(), 2);
  pool.check_integrity();
  // A hit on cached-free block 0 takes it out of the LRU; the next eviction skips it and takes 1.
  pool.acquire(0);
  EXPECT_EQ(pool.ref_count(0), 1);
  EXPECT_EQ(pool.n_free(), 1);
  EXPECT_EQ(pool.allocate(1), (std::vector<int32_t>{1}));
  EXPECT_FALSE(pool.lookup(101).has_value());
  pool.check_integrity();
}

TEST(BlockPool, SharedBlockRefCounts) {
  BlockPool pool(3, 4);
  std::vector<int32_t> a = pool.allocate(1);
  ASSERT_TRUE(pool.cache(a[0], 7));
  pool.acquire(a[0]);
  pool.acquire(a[0]);
  EXPECT_EQ(pool.ref_count(a[0]), 3);
  EXPECT_EQ(pool.n_used(), 1);
  pool.release(a[0]);
  pool.release(a[0]);
  EXPECT_EQ(pool.n_used(), 1);
  pool.release(a[0]);
  EXPECT_EQ(pool.n_used(), 0);
  EXPECT_EQ(pool.n_cached_free(), 1);
  pool.check_integrity();
}

TEST(BlockPool, DuplicateHashKeepsTheFirstBlock) {
  BlockPool pool(3, 4);
  std::vector<int32_t> a = pool.allocate(2);
  EXPECT_TRUE(pool.cache(a[0], 55));
  EXPECT_FALSE(pool.cache(a[1], 55));
  EXPECT_EQ(pool.lookup(55), std::optional<int32_t>(a[0]));
  EXPECT_FALSE(pool.hash_of(a[1]).has_value());
  pool.release(a[1]);  // unhashed: plain free list
  EXPECT_EQ(pool.n_free_uncached(), 2);
  pool.check_integrity();
}

TEST(BlockHash, ChainedAndSensitiveToEveryToken) {
  std::vector<int32_t> t = iota_tokens(64, 1000);
  const BlockHash h = hash_block_tokens(kRootBlockHash, t);
  EXPECT_EQ(h, hash_block_tokens(kRootBlockHash, t));  // deterministic
  std::vector<BlockHash> seen{h};
  for (int i = 0; i < 64; ++i) {  // any single changed token changes the hash
    std::vector<int32_t> u = t;
    u[i] += 1;
    seen.push_back(hash_block_tokens(kRootBlockHash, u));
  }
  std::vector<int32_t> swapped = t;
  std::swap(swapped[3], swapped[4]);  // order matters
  seen.push_back(hash_block_tokens(kRootBlockHash, swapped));
  seen.push_back(hash_block_tokens(h, t));                                   // parent matters
  seen.push_back(hash_block_tokens(kRootBlockHash, std::span(t).first(63)));  // length matters
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end());
}

}  // namespace
}  // namespace dsv3::kv
