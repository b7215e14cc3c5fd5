// block_hash.h: the chained hash that names a full KV block for prefix reuse (kv).
// A block's hash covers its parent block's hash and its tokens_per_block token ids, so equal hashes mean equal
// token prefixes up to the end of the block (up to 64-bit collisions, which we accept as vLLM does by default).
#pragma once

#include <cstdint>
#include <span>

namespace dsv3::kv {

using BlockHash = uint64_t;

// Parent hash of a request's first block.
inline constexpr BlockHash kRootBlockHash = 0x6a09e667f3bcc908ull;

namespace detail {
// splitmix64 finaliser: a cheap mixer with full avalanche, so neighbouring token ids give unrelated hashes.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}
}  // namespace detail

// hash(parent, tokens): the block's token count is folded in, so a block never collides with its own prefix.
inline BlockHash hash_block_tokens(BlockHash parent, std::span<const int32_t> tokens) {
  uint64_t h = detail::mix64(parent ^ (0x9e3779b97f4a7c15ull * (tokens.size() + 1)));
  for (int32_t t : tokens) h = detail::mix64(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(t)) + 0x9e3779b97f4a7c15ull));
  return h;
}

}  // namespace dsv3::kv
