// test_workspace.cpp: the model's step workspace — same requests after a rewind give the same addresses (what CUDA
// graphs rely on), scopes free in LIFO order, chunks are added but never moved, alignment, high-water mark.
#include <gtest/gtest.h>

#include <cstdint>
#include <set>

#include "dsv3/model/workspace.h"

namespace dsv3 {
namespace {

// Counts what the workspace asks of its base allocator.
class CountingAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    ++allocs;
    bytes_out += bytes;
    return host_allocator().allocate(bytes);
  }
  void deallocate(void* p, size_t bytes) override {
    ++frees;
    host_allocator().deallocate(p, bytes);
  }
  Device device() const override { return Device::kCpu; }
  int allocs = 0, frees = 0;
  size_t bytes_out = 0;
};

uintptr_t addr(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.view().data); }

TEST(Workspace, SameSequenceSameAddressesAfterReset) {
  CountingAllocator base;
  Workspace ws(base, 1 << 20);
  std::vector<uintptr_t> first;
  for (int round = 0; round < 3; ++round) {
    ws.reset();
    std::vector<uintptr_t> got;
    Tensor a(DType::kBF16, {100, 7}, ws), b(DType::kF32, {3}, ws), c(DType::kI32, {1000}, ws);
    got = {addr(a), addr(b), addr(c)};
    if (round == 0) first = got;
    EXPECT_EQ(got, first) << "round " << round;
    for (uintptr_t p : got) EXPECT_EQ(p % Workspace::kAlign, 0u);
  }
  EXPECT_EQ(base.allocs, 1);  // one chunk, reused
  // 1400 B -> 1536, 12 B -> 256, 4000 B -> 4096: consecutive, aligned.
  EXPECT_EQ(first[1] - first[0], 1536u);
  EXPECT_EQ(first[2] - first[1], 256u);
}

TEST(Workspace, ScopeRewindsInLifoOrder) {
  CountingAllocator base;
  Workspace ws(base, 1 << 16);
  Tensor keep(DType::kU8, {1000}, ws);
  uintptr_t inner_first = 0;
  for (int layer = 0; layer < 4; ++layer) {
    Workspace::Scope scope(ws);
    Tensor t(DType::kU8, {5000}, ws), u(DType::kU8, {300}, ws);
    if (layer == 0) inner_first = addr(t);
    EXPECT_EQ(addr(t), inner_first) << "layer " << layer << " reuses the memory of the previous layer";
    EXPECT_GT(addr(t), addr(keep));
  }
  EXPECT_EQ(ws.high_water(), 1024u + 5120u + 512u);
  Tensor after(DType::kU8, {10}, ws);
  EXPECT_EQ(addr(after), inner_first);
}

TEST(Workspace, GrowsByChunksWithoutMovingEarlierOnes) {
  CountingAllocator base;
  Workspace ws(base, 4096);
  Tensor a(DType::kU8, {3000}, ws);
  const uintptr_t a0 = addr(a);
  Tensor b(DType::kU8, {3000}, ws);  // does not fit after a: a second chunk
  Tensor big(DType::kU8, {100000}, ws);  // larger than a chunk: its own size
  EXPECT_EQ(base.allocs, 3);
  EXPECT_EQ(ws.n_chunks(), 3u);
  EXPECT_GE(ws.capacity(), 4096u + 4096u + 100000u);
  std::set<uintptr_t> distinct{addr(a), addr(b), addr(big)};
  EXPECT_EQ(distinct.size(), 3u);
  ws.reset();
  Tensor a2(DType::kU8, {3000}, ws), b2(DType::kU8, {3000}, ws), big2(DType::kU8, {100000}, ws);
  EXPECT_EQ(addr(a2), a0);
  EXPECT_EQ(addr(b2), addr(b));
  EXPECT_EQ(addr(big2), addr(big));
  EXPECT_EQ(base.allocs, 3) << "a replay of the same step allocates nothing";
  ws.reset();
  // A small request after a reset fits the first chunk; one that does not fit it skips to the next.
  Tensor s(DType::kU8, {4000}, ws), s2(DType::kU8, {4000}, ws);
  EXPECT_EQ(addr(s), a0);
  EXPECT_EQ(addr(s2), addr(b));
}

TEST(Workspace, ReleaseAheadOfTopAborts) {
  CountingAllocator base;
  Workspace ws(base, 4096);
  Tensor a(DType::kU8, {100}, ws);
  const Workspace::Mark m = ws.mark();
  ws.reset();
  EXPECT_DEATH(ws.release(m), "ahead of the top");
}

TEST(Workspace, FreesChunksOnDestruction) {
  CountingAllocator base;
  {
    Workspace ws(base, 4096);
    Tensor a(DType::kU8, {10000}, ws), b(DType::kU8, {10}, ws);
  }
  EXPECT_EQ(base.frees, base.allocs);
  EXPECT_EQ(base.allocs, 2);
}

}  // namespace
}  // namespace dsv3
