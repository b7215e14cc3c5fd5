// test_staged_upload.cpp: StagedUploader's chunking (which tensor goes in which chunk, at which offset), its slot
// rotation, and the weight loader through it, on the CPU (tests/unit). The fake sink runs each "DMA" lazily — only
// when wait(slot) or drain() says it has completed — so an uploader that rewrote a slot before waiting for it, or
// read a source after releasing it, would deliver wrong bytes here, as it would on a GPU.
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <map>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/staged_upload.h"
#include "dsv3/io/tiny_model.h"
#include "dsv3/io/weight_source.h"
#include "dsv3/model/weights.h"
#include "unit/device_like_backend.h"

namespace dsv3 {
namespace {

struct Transfer {
  int chunk, slot;
  size_t offset;
  void* dst;
  size_t bytes;
};

class FakeSink final : public StagingSink {
 public:
  FakeSink(int n_slots, size_t slot_bytes) : bytes_(slot_bytes), slots_(n_slots, std::vector<char>(slot_bytes)),
                                             pending_(n_slots), submitted_(n_slots, false) {}
  ~FakeSink() override { *alive_flag = false; }
  int n_slots() const override { return static_cast<int>(slots_.size()); }
  size_t slot_bytes() const override { return bytes_; }
  void* slot_data(int slot) override {
    // The uploader may only touch a slot whose transfers have completed.
    EXPECT_TRUE(pending_[slot].empty()) << "slot " << slot << " handed out with transfers in flight";
    return slots_[slot].data();
  }
  void wait(int slot) override {
    ++waits[slot];
    run(slot);
  }
  void transfer(int slot, size_t offset, void* dst, size_t n) override {
    EXPECT_LE(offset + n, bytes_);
    log.push_back({chunk_, slot, offset, dst, n});
    pending_[slot].push_back(log.back());
  }
  void submitted(int slot) override {
    submitted_[slot] = true;
    ++chunk_;
  }
  void drain() override {
    for (int s = 0; s < n_slots(); ++s) run(s);
    ++drains;
  }

  std::vector<Transfer> log;
  std::map<int, int> waits;
  int drains = 0;
  std::shared_ptr<bool> alive_flag = std::make_shared<bool>(true);

 private:
  void run(int slot) {  // the DMA of the slot's transfers completes now
    for (const Transfer& t : pending_[slot]) std::memcpy(t.dst, slots_[slot].data() + t.offset, t.bytes);
    pending_[slot].clear();
  }
  size_t bytes_;
  std::vector<std::vector<char>> slots_;
  std::vector<std::vector<Transfer>> pending_;
  std::vector<bool> submitted_;
  int chunk_ = 0;
};

std::vector<char> pattern(size_t n, uint32_t seed) {
  std::vector<char> v(n);
  std::mt19937 rng(seed);
  for (auto& c : v) c = static_cast<char>(rng());
  return v;
}

TEST(StagedUpload, PacksTensorsIntoChunksAtAlignedOffsets) {
  // Two slots of 1024 bytes; kAlign = 256. Tensors A 100, B 300, C 2000, D 10, E 1024 bytes:
  //   chunk 0 (slot 0): A @0 (100), B @256 (300), C[0, 256) @768        — C starts in what is left of chunk 0
  //   chunk 1 (slot 1): C[256, 1280) @0                                  — a whole chunk of C
  //   chunk 2 (slot 0): C[1280, 2000) @0 (720), D @768 (10)              — slot 0 again: waited for first
  //   chunk 3 (slot 1): E @0 (1024)
  ASSERT_EQ(StagedUploader::kAlign, 256u);
  auto sink = std::make_unique<FakeSink>(2, 1024);
  FakeSink& s = *sink;
  StagedUploader up(std::move(sink), 2);
  const size_t sizes[] = {100, 300, 2000, 10, 1024};
  std::vector<std::vector<char>> src, dst;
  for (size_t i = 0; i < 5; ++i) {
    src.push_back(pattern(sizes[i], 7 + i));
    dst.emplace_back(sizes[i], 0);
  }
  for (size_t i = 0; i < 5; ++i) up.add(dst[i].data(), src[i].data(), sizes[i]);
  up.flush();
  auto at = [&](size_t i, size_t off) { return static_cast<void*>(dst[i].data() + off); };
  const std::vector<Transfer> want = {{0, 0, 0, at(0, 0), 100},    {0, 0, 256, at(1, 0), 300},
                                      {0, 0, 768, at(2, 0), 256},  {1, 1, 0, at(2, 256), 1024},
                                      {2, 0, 0, at(2, 1280), 720}, {2, 0, 768, at(3, 0), 10},
                                      {3, 1, 0, at(4, 0), 1024}};
  ASSERT_EQ(s.log.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(s.log[i].chunk, want[i].chunk) << "transfer " << i;
    EXPECT_EQ(s.log[i].slot, want[i].slot) << "transfer " << i;
    EXPECT_EQ(s.log[i].offset, want[i].offset) << "transfer " << i;
    EXPECT_EQ(s.log[i].dst, want[i].dst) << "transfer " << i;
    EXPECT_EQ(s.log[i].bytes, want[i].bytes) << "transfer " << i;
  }
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(dst[i], src[i]) << "tensor " << i;
  EXPECT_EQ(up.stats().chunks, 4);
  EXPECT_EQ(up.stats().transfers, 7);
  EXPECT_EQ(up.stats().tensors, 5);
  EXPECT_EQ(up.stats().bytes, 3434u);
  EXPECT_EQ(s.waits[0], 2);  // before chunk 0 (nothing in flight yet) and chunk 2 (chunk 0 still in flight)
  EXPECT_EQ(s.waits[1], 2);
  EXPECT_EQ(s.drains, 1);
}

TEST(StagedUpload, ManyRandomTensorsArriveIntactThroughRotatingSlots) {
  std::mt19937 rng(11);
  for (int n_slots : {1, 2, 3, 4}) {
    auto sink = std::make_unique<FakeSink>(n_slots, 4096);
    FakeSink& s = *sink;
    StagedUploader up(std::move(sink), 3);
    std::vector<std::vector<char>> src, dst;
    size_t total = 0;
    for (int i = 0; i < 300; ++i) {
      const size_t n = rng() % 3 == 0 ? rng() % 20000 : rng() % 600;  // mostly small, some spanning chunks, some 0
      src.push_back(pattern(n, rng()));
      dst.emplace_back(n, 0);
      total += n;
    }
    for (size_t i = 0; i < src.size(); ++i) up.add(dst[i].data(), src[i].data(), src[i].size());
    up.flush();
    for (size_t i = 0; i < src.size(); ++i) ASSERT_EQ(dst[i], src[i]) << "tensor " << i << ", " << n_slots << " slots";
    EXPECT_EQ(up.stats().bytes, total);
    // Chunks are filled greedily: every chunk but the last is full up to alignment gaps (< kAlign per tensor).
    std::map<int, size_t> used;
    for (const Transfer& t : s.log) {
      used[t.chunk] = std::max(used[t.chunk], t.offset + t.bytes);
      EXPECT_EQ(t.slot, t.chunk % n_slots);  // round robin
    }
    for (const auto& [chunk, end] : used) {
      if (chunk + 1 < static_cast<int>(used.size())) {
        EXPECT_GT(end, 4096u - StagedUploader::kAlign) << chunk;
      }
    }
  }
}

// Counts frees, to see when the uploader lets go of a host temporary.
class CountingAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override { return host_allocator().allocate(bytes); }
  void deallocate(void* p, size_t bytes) override {
    ++frees;
    host_allocator().deallocate(p, bytes);
  }
  Device device() const override { return Device::kCpu; }
  int frees = 0;
};

TEST(StagedUpload, ReleasesAHostTemporaryOnceItsLastChunkIsStaged) {
  CountingAllocator alloc;
  auto sink = std::make_unique<FakeSink>(2, 1024);
  StagedUploader up(std::move(sink), 1);
  Tensor tmp(DType::kU8, {1000}, alloc);
  std::memset(tmp.view().data, 0x5a, 1000);
  std::vector<char> dst(1000, 0), dst2(100, 0), src2(100, 1);
  const void* src = tmp.view().data;  // taken before the tensor moves into the call
  up.add(dst.data(), src, 1000, std::move(tmp));
  EXPECT_EQ(alloc.frees, 0);  // its chunk is still being packed
  up.add(dst2.data(), src2.data(), 100);  // chunk 0 is full (1000 aligned up to 1024): staged, tmp released
  EXPECT_EQ(alloc.frees, 1);
  up.flush();
  EXPECT_EQ(dst, std::vector<char>(1000, 0x5a));
  EXPECT_EQ(dst2, src2);
}

// A backend whose memory is "not host-visible" (host memory, as test_dummy_load's FakeDevice) with staging buffers:
// the weight loader must stage every byte through the sink and place the same model as the CPU backend.
class StagingDevice final : public DeviceLikeBackend {
 public:
  std::string name() const override { return "staging-device"; }
  std::unique_ptr<StagingSink> make_staging_sink(int n_slots, size_t slot_bytes) override {
    sink_slots = n_slots;
    sink_bytes = slot_bytes;
    auto s = std::make_unique<FakeSink>(n_slots, slot_bytes);
    sink_alive = s->alive_flag;
    return s;
  }

  int sink_slots = 0;
  size_t sink_bytes = 0;
  std::shared_ptr<bool> sink_alive;
};

void expect_same_weights(const ModelWeights& h, const ModelWeights& d) {
  auto hv = named_weights(h), dv = named_weights(d);
  ASSERT_EQ(hv.size(), dv.size());
  for (size_t i = 0; i < hv.size(); ++i) {
    const TensorView &a = hv[i].second, &b = dv[i].second;
    ASSERT_EQ(hv[i].first, dv[i].first);
    ASSERT_TRUE(a && b) << hv[i].first;
    ASSERT_EQ(a.shape, b.shape) << hv[i].first;
    EXPECT_NE(a.data, b.data) << hv[i].first << ": the device load must own its tensors";
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes()), 0) << hv[i].first << " " << a.shape.str();
  }
}

class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~EnvVar() { unsetenv(name_); }

 private:
  const char* name_;
};

TEST(StagedUpload, WeightLoaderStagesACheckpointIntoADeviceBackend) {
  const std::string dir = ::testing::TempDir() + "/dsv3_staged_upload_micro";
  std::filesystem::remove_all(dir);
  TinyModelOptions o;
  o.out_dir = dir;
  o.seed = 4;
  write_tiny_model(tiny_model_preset("micro"), o);
  EnvVar chunks("DSV3_LOAD_CHUNKS", "3"), mb("DSV3_LOAD_CHUNK_MB", "1"), threads("DSV3_LOAD_THREADS", "3");
  for (Numerics num : {Numerics::kFp8, Numerics::kBf16}) {
    auto host_src = WeightSource::open(dir, LoadFormat::kAuto), dev_src = WeightSource::open(dir, LoadFormat::kAuto);
    CpuBackend cpu;
    StagingDevice dev;
    ModelWeights h = load_model_weights(*host_src, cpu, num);
    ModelWeights d = load_model_weights(*dev_src, dev, num);
    EXPECT_EQ(dev.sink_slots, 3);
    EXPECT_EQ(dev.sink_bytes, 1u << 20);
    EXPECT_FALSE(*dev.sink_alive) << "the loader frees its staging buffers when done";
    EXPECT_EQ(dev.copies, 0) << "every byte goes through the staging chunks";
    EXPECT_EQ(d.bytes_loaded, h.bytes_loaded);
    EXPECT_EQ(d.staged.bytes, d.bytes_loaded);
    // The embedding (1024 x 256 bf16 = 512 KB) and the rest: several 1 MB chunks, far fewer than tensors.
    EXPECT_GT(d.staged.chunks, 2);
    EXPECT_LT(d.staged.chunks, d.staged.tensors / 4);
    EXPECT_EQ(h.staged.bytes, 0u);  // the CPU uses the mmap in place
    expect_same_weights(h, d);
  }
}

TEST(StagedUpload, DummyWeightsWithoutADeviceGeneratorAreStagedFromTheHostGenerator) {
  // StagingDevice has no synthesize(): the host generator's tensors (and the dequantized kv_b copies, host
  // temporaries released once staged) go through the chunks.
  ModelConfig c = tiny_model_preset("micro");
  auto host_src = WeightSource::dummy(c, 9), dev_src = WeightSource::dummy(c, 9);
  CpuBackend cpu;
  StagingDevice dev;
  ModelWeights h = load_model_weights(*host_src, cpu, Numerics::kFp8);
  ModelWeights d = load_model_weights(*dev_src, dev, Numerics::kFp8);
  EXPECT_EQ(dev.sink_slots, 4);  // the defaults: 4 chunks of 64 MB
  EXPECT_EQ(dev.sink_bytes, 64u << 20);
  EXPECT_EQ(dev.copies, 0);
  EXPECT_EQ(d.staged.bytes, d.bytes_loaded);
  EXPECT_EQ(d.staged.chunks, 1);  // the micro model is < 64 MB
  expect_same_weights(h, d);
}

TEST(StagedUpload, LoadSummaryLine) {
  ModelWeights w;
  w.bytes_loaded = w.staged.bytes = 39'000'000'000;
  w.staged.chunks = 596;
  EXPECT_EQ(weight_load_summary(w, 8.12), "loaded 39.0 GB of weights in 8.12 s (4.80 GB/s; 39.0 GB staged in 596 chunks)");
  w.bytes_made_on_device = w.bytes_loaded;
  EXPECT_EQ(weight_load_summary(w, 0.5), "loaded 39.0 GB of weights in 0.50 s (78.00 GB/s; made on the device "
                                         "(--load_format dummy))");
  ModelWeights cpu;
  cpu.bytes_loaded = 3'200'000;
  cpu.in_place = true;
  EXPECT_EQ(weight_load_summary(cpu, 0.01), "loaded 3.2 MB of weights in 0.01 s (0.32 GB/s; used in place (mmap or "
                                            "host tensors))");
}

TEST(StagedUpload, BadEnvironmentOverridesAreInputErrors) {
  ModelConfig c = tiny_model_preset("micro");
  auto src = WeightSource::dummy(c, 1);
  StagingDevice dev;
  EnvVar bad("DSV3_LOAD_CHUNK_MB", "lots");
  try {
    load_model_weights(*src, dev, Numerics::kFp8);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("DSV3_LOAD_CHUNK_MB=lots"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv3
