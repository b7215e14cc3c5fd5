// test_kv_cache_manager.cpp: block tables, prefix hits, LRU eviction of freed prefixes, and the integrity check (kv).
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

#include "dsv3/kv/kv_cache_manager.h"

namespace dsv3::kv {
namespace {

std::vector<int32_t> iota_tokens(int n, int32_t first) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

std::vector<int32_t> table_of(const KvCacheManager& m, int64_t id) {
  auto t = m.block_table(id);
  return {t.begin(), t.end()};
}

TEST(KvCacheManager, TablesGrowAppendOnly) {
  KvCacheManager m({.n_blocks = 6, .tokens_per_block = 4, .enable_block_reuse = false});
  EXPECT_EQ(m.n_blocks_for(0), 0);
  EXPECT_EQ(m.n_blocks_for(4), 1);
  EXPECT_EQ(m.n_blocks_for(5), 2);
  ASSERT_TRUE(m.allocate(1, 5));  // 2 blocks
  ASSERT_TRUE(m.allocate(2, 3));  // 1 block
  EXPECT_EQ(table_of(m, 1), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(table_of(m, 2), (std::vector<int32_t>{2}));
  m.check_integrity();
  ASSERT_TRUE(m.allocate(1, 8));  // still 2 blocks
  ASSERT_TRUE(m.allocate(1, 9));  // third block appended
  EXPECT_EQ(table_of(m, 1), (std::vector<int32_t>{0, 1, 3}));
  m.check_integrity();
  // 2 free blocks left: growing request 2 to 4 blocks (3 new) fails and changes nothing.
  EXPECT_FALSE(m.can_allocate(2, 16));
  EXPECT_FALSE(m.allocate(2, 16));
  EXPECT_EQ(table_of(m, 2), (std::vector<int32_t>{2}));
  EXPECT_EQ(m.n_free_blocks(), 2);
  m.check_integrity();
  m.free(1);
  EXPECT_FALSE(m.has_table(1));
  EXPECT_EQ(m.n_free_blocks(), 5);
  m.free(1);  // unknown id: no-op
  m.check_integrity();
}

TEST(KvCacheManager, NoPrefixHitsWhenReuseIsOff) {
  KvCacheManager m({.n_blocks = 6, .tokens_per_block = 4, .enable_block_reuse = false});
  std::vector<int32_t> t = iota_tokens(12, 1);
  ASSERT_TRUE(m.allocate(1, 12));
  m.cache_computed_blocks(1, t, 12);
  EXPECT_EQ(m.pool().n_cached(), 0);
  EXPECT_EQ(m.find_cached_prefix(t).n_tokens, 0);
}

TEST(KvCacheManager, PrefixHitSharesFullBlocksOnly) {
  KvCacheManager m({.n_blocks = 8, .tokens_per_block = 4, .enable_block_reuse = true});
  std::vector<int32_t> a = iota_tokens(10, 1);  // blocks [1..4] [5..8] [9 10]
  ASSERT_TRUE(m.allocate(1, 10));
  m.cache_computed_blocks(1, a, 6);  // only block 0 is full and computed
  EXPECT_EQ(m.pool().n_cached(), 1);
  m.cache_computed_blocks(1, a, 10);  // now block 1 too; the partial block 2 never
  EXPECT_EQ(m.pool().n_cached(), 2);
  m.check_integrity();

  // B shares 7 tokens with A: only the first full block matches.
  std::vector<int32_t> b = iota_tokens(7, 1);
  b.push_back(99);
  b.push_back(100);
  PrefixHit hit = m.find_cached_prefix(b);
  EXPECT_EQ(hit.n_tokens, 4);
  ASSERT_EQ(hit.blocks.size(), 1u);
  EXPECT_EQ(hit.blocks[0], table_of(m, 1)[0]);
  ASSERT_TRUE(m.allocate(2, static_cast<int>(b.size()), hit));
  EXPECT_EQ(m.pool().ref_count(hit.blocks[0]), 2);
  EXPECT_EQ(table_of(m, 2)[0], table_of(m, 1)[0]);
  EXPECT_NE(table_of(m, 2)[1], table_of(m, 1)[1]);
  m.check_integrity();

  // C equals A's first 8 tokens exactly: the block holding its last token is not reused, so 1 block, not 2.
  EXPECT_EQ(m.find_cached_prefix(iota_tokens(8, 1)).n_tokens, 4);
  // D is 9 tokens: both full blocks match.
  EXPECT_EQ(m.find_cached_prefix(iota_tokens(9, 1)).n_tokens, 8);
  // A different first token misses entirely, although later blocks are equal (chained hash).
  std::vector<int32_t> e = iota_tokens(9, 1);
  e[0] = 42;
  EXPECT_EQ(m.find_cached_prefix(e).n_tokens, 0);

  // Freeing A keeps the shared block used (B holds it) and A's other full block cached-free.
  m.free(1);
  EXPECT_EQ(m.pool().ref_count(hit.blocks[0]), 1);
  EXPECT_EQ(m.pool().n_cached_free(), 1);
  EXPECT_EQ(m.find_cached_prefix(iota_tokens(9, 1)).n_tokens, 8);
  m.check_integrity();
}

TEST(KvCacheManager, CachedFreeHitCountsAgainstCapacity) {
  KvCacheManager m({.n_blocks = 3, .tokens_per_block = 2, .enable_block_reuse = true});
  std::vector<int32_t> a = iota_tokens(5, 1);
  ASSERT_TRUE(m.allocate(1, 5));  // all 3 blocks
  m.cache_computed_blocks(1, a, 4);
  m.free(1);
  EXPECT_EQ(m.pool().n_cached_free(), 2);
  EXPECT_EQ(m.n_free_blocks(), 3);
  PrefixHit hit = m.find_cached_prefix(a);
  ASSERT_EQ(hit.n_tokens, 4);
  // 5 tokens: 2 hit blocks + 1 new block = the whole pool; 7 tokens would need 2 new blocks with 1 left.
  EXPECT_FALSE(m.can_allocate(2, 7, hit));
  EXPECT_TRUE(m.can_allocate(2, 6, hit));
  ASSERT_TRUE(m.allocate(2, 5, hit));
  EXPECT_EQ(m.n_free_blocks(), 0);
  m.check_integrity();
}

TEST(KvCacheManager, FreedPrefixesAreEvictedTailFirst) {
  KvCacheManager m({.n_blocks = 4, .tokens_per_block = 2, .enable_block_reuse = true});
  std::vector<int32_t> a = iota_tokens(7, 1);  // 4 blocks, 3 full
  ASSERT_TRUE(m.allocate(1, 7));
  m.cache_computed_blocks(1, a, 7);
  m.free(1);  // released tail first: LRU order is block 2, 1, 0 (block 3 is unhashed)
  EXPECT_EQ(m.find_cached_prefix(a).n_tokens, 6);
  ASSERT_TRUE(m.allocate(2, 3));  // 2 blocks: the unhashed one, then evicts A's third block
  EXPECT_EQ(m.find_cached_prefix(a).n_tokens, 4);
  ASSERT_TRUE(m.allocate(3, 2));  // evicts A's second block
  EXPECT_EQ(m.find_cached_prefix(a).n_tokens, 2);
  m.check_integrity();
}

TEST(KvCacheManager, FreeRestoresThePoolExactly) {
  KvCacheManager m({.n_blocks = 10, .tokens_per_block = 4, .enable_block_reuse = false});
  ASSERT_TRUE(m.allocate(1, 9));
  const int free_before = m.n_free_blocks(), used_before = m.n_used_blocks();
  ASSERT_TRUE(m.allocate(2, 13));
  ASSERT_TRUE(m.allocate(2, 20));
  EXPECT_EQ(m.n_free_blocks(), free_before - 5);
  m.free(2);
  EXPECT_EQ(m.n_free_blocks(), free_before);
  EXPECT_EQ(m.n_used_blocks(), used_before);
  EXPECT_EQ(m.pool().n_free_uncached(), free_before);
  m.check_integrity();
}

TEST(KvCacheManagerDeathTest, StaleHitAborts) {
  KvCacheManager m({.n_blocks = 2, .tokens_per_block = 2, .enable_block_reuse = true});
  std::vector<int32_t> a = iota_tokens(3, 1);
  ASSERT_TRUE(m.allocate(1, 3));
  m.cache_computed_blocks(1, a, 2);
  m.free(1);
  PrefixHit hit = m.find_cached_prefix(a);
  ASSERT_EQ(hit.n_tokens, 2);
  ASSERT_TRUE(m.allocate(2, 4));  // evicts the cached block behind the hit's back
  m.free(2);
  EXPECT_DEATH(m.allocate(3, 3, hit), "stale prefix hit");
}

TEST(KvCacheManagerDeathTest, MissingTableAborts) {
  KvCacheManager m({.n_blocks = 2, .tokens_per_block = 2, .enable_block_reuse = true});
  EXPECT_DEATH(m.block_table(7), "no KV block table for request 7");
}

}  // namespace
}  // namespace dsv3::kv
