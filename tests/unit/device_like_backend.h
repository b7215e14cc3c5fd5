// device_like_backend.h: a test Backend that runs every op on the CPU reference but, like the CUDA backend, is not
// host-visible, so the loader copies weights into it or makes them "on the device" (tests/unit). Tests derive from
// it and override what they observe: synthesize() (test_dummy_load), make_staging_sink() (test_staged_upload), or
// run(), through which every op and copy passes, to record ops instead of running them (test_graph_replay).
// Options::deferred makes it behave like one CUDA stream towards the host (the engine's overlap tests): ops and
// copies are queued and run only when the host waits — synchronize(), a fence, a copy into pageable host memory, or
// freeing backend memory (cudaFree waits too) — so a host read that does not wait first sees stale memory. Copies
// from pageable host memory take the bytes at the call (as cudaMemcpyAsync stages them); copies into pinned memory
// (pinned_host_allocator()) are queued. Both memories start poisoned (0xFF bytes). Options::graphs adds capture():
// ops are recorded, and a replay queues them again.
#pragma once

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "dsv3/backend/backend.h"
#include "dsv3/backend/cpu/cpu_backend.h"

namespace dsv3 {

class DeviceLikeBackend : public Backend {
 public:
  struct Options {
    bool deferred = false;  // queue ops as a stream does (see the file comment)
    bool graphs = false;    // capture() records (with deferred)
  };
  DeviceLikeBackend() = default;
  explicit DeviceLikeBackend(Options o) : opt_(o) {}
  ~DeviceLikeBackend() override { drain(); }

  std::string name() const override { return "device-like"; }
  Allocator& allocator() override { return opt_.deferred ? static_cast<Allocator&>(device_mem_) : host_allocator(); }
  Allocator& pinned_host_allocator() override {
    return opt_.deferred ? static_cast<Allocator&>(pinned_mem_) : host_allocator();
  }
  bool host_visible() const override { return false; }
  void copy(const TensorView& dst, const TensorView& src) override {
    ++copies;
    CHECK(dst.nbytes() == src.nbytes(), "copy: {} bytes to {} bytes", src.nbytes(), dst.nbytes());
    if (!opt_.deferred) {
      run([this, dst, src] { cpu_.copy(dst, src); });
      return;
    }
    if (pageable(dst.data)) {  // returns when done, like cudaMemcpyAsync into pageable memory
      if (rec_) refused_ = true;
      drain();
      cpu_.copy(dst, src);
      return;
    }
    if (pageable(src.data)) {  // the bytes are taken now
      if (rec_) refused_ = true;
      auto bytes = std::make_shared<std::vector<char>>(static_cast<const char*>(src.data),
                                                       static_cast<const char*>(src.data) + src.nbytes());
      run([dst, bytes] { std::memcpy(dst.data, bytes->data(), bytes->size()); });
      return;
    }
    run([this, dst, src] { cpu_.copy(dst, src); });
  }
  void synchronize() override {
    ++syncs;
    if (rec_) refused_ = true;
    drain();
  }
  std::unique_ptr<BackendFence> make_fence() override {
    if (!opt_.deferred) return Backend::make_fence();
    return std::make_unique<Fence>(*this);
  }
  std::unique_ptr<BackendGraph> capture(const std::function<void()>& body) override {
    if (!opt_.deferred || !opt_.graphs) return nullptr;
    ++captures;
    auto g = std::make_unique<Graph>(*this);
    rec_ = &g->ops;
    refused_ = false;
    body();
    rec_ = nullptr;
    if (refused_) return nullptr;
    return g;
  }

  void linear(const LinearParams& p) override { run([this, p] { cpu_.linear(p); }); }
  void rms_norm(const RmsNormParams& p) override { run([this, p] { cpu_.rms_norm(p); }); }
  void embedding(const EmbeddingParams& p) override { run([this, p] { cpu_.embedding(p); }); }
  void rope(const RopeParams& p) override { run([this, p] { cpu_.rope(p); }); }
  void silu_mul(const SiluMulParams& p) override { run([this, p] { cpu_.silu_mul(p); }); }
  void add(const AddParams& p) override { run([this, p] { cpu_.add(p); }); }
  void kv_cache_store(const KvCacheStoreParams& p) override { run([this, p] { cpu_.kv_cache_store(p); }); }
  void kv_cache_gather(const KvCacheGatherParams& p) override { run([this, p] { cpu_.kv_cache_gather(p); }); }
  void mla_prefill(const MlaPrefillParams& p) override { run([this, p] { cpu_.mla_prefill(p); }); }
  void mla_absorb_q(const MlaAbsorbQParams& p) override { run([this, p] { cpu_.mla_absorb_q(p); }); }
  void mla_decode(const MlaDecodeParams& p) override { run([this, p] { cpu_.mla_decode(p); }); }
  void mla_absorb_v(const MlaAbsorbVParams& p) override { run([this, p] { cpu_.mla_absorb_v(p); }); }
  void router(const RouterParams& p) override { run([this, p] { cpu_.router(p); }); }
  void moe_experts(const MoeExpertsParams& p) override { run([this, p] { cpu_.moe_experts(p); }); }
  void sample(const SampleParams& p) override {
    // p.rows is a host array read during the call (backend.h): copied now, as the CUDA backend stages it.
    validate(p);
    auto rows = std::make_shared<std::vector<SampleRowParams>>(p.rows, p.rows + p.logits.dim(0));
    run([this, p, rows] {
      SampleParams q = p;
      q.rows = rows->data();
      cpu_.sample(q);
    });
  }
  void fill_token_ids(const FillTokenIdsParams& p) override {
    ++fills;
    fill_rows += p.map.dim(0);
    run([this, p] { cpu_.fill_token_ids(p); });
  }

  int copies = 0;    // copy() calls (recorded ones included)
  int syncs = 0;     // synchronize() calls
  int fills = 0;     // fill_token_ids() calls
  int64_t fill_rows = 0;  // ids they fill
  int captures = 0;  // capture() calls
  int64_t max_queued = 0;  // the most ops ever waiting in the queue (deferred): how far the host ran ahead

 protected:
  // Every op and copy; params are captured by value, so a subclass may keep `op` and run it later.
  virtual void run(std::function<void()> op) {
    if (rec_) {
      rec_->push_back(std::move(op));
    } else if (opt_.deferred) {
      queue_.push_back(std::move(op));
      ++enqueued_;
      max_queued = std::max<int64_t>(max_queued, static_cast<int64_t>(queue_.size()));
    } else {
      op();
    }
  }
  // Runs queued ops in order until `upto` have run (default: all). An op that throws (bad input found on the
  // "device") surfaces here, where a GPU error would.
  void drain(uint64_t upto = ~uint64_t{0}) {
    while (!queue_.empty() && executed_ < upto) {
      std::function<void()> op = std::move(queue_.front());
      queue_.pop_front();
      ++executed_;
      op();
    }
  }
  CpuBackend cpu_;

 private:
  // Host memory under this backend's name, with its address ranges known (device or pinned memory of the test).
  class TrackedMemory final : public Allocator {
   public:
    explicit TrackedMemory(DeviceLikeBackend& b) : backend_(b) {}
    void* allocate(size_t bytes) override {
      void* p = ::operator new(bytes ? bytes : 1, std::align_val_t{256});
      std::memset(p, 0xFF, bytes);  // poison: NaN as bf16/f32, -1 as i32 — a read before any write shows
      ranges_[p] = bytes;
      return p;
    }
    void deallocate(void* p, size_t bytes) override {
      backend_.drain();  // queued ops may still use it (cudaFree waits for the device too)
      ranges_.erase(p);
      ::operator delete(p, std::align_val_t{256});
    }
    Device device() const override { return Device::kCpu; }
    bool owns(const void* p) const {
      auto it = ranges_.upper_bound(p);
      if (it == ranges_.begin()) return false;
      --it;
      return std::less_equal<const void*>()(it->first, p) &&
             std::less<const void*>()(p, static_cast<const char*>(it->first) + std::max<size_t>(it->second, 1));
    }

   private:
    DeviceLikeBackend& backend_;
    std::map<const void*, size_t, std::less<const void*>> ranges_;
  };
  class Fence final : public BackendFence {
   public:
    explicit Fence(DeviceLikeBackend& b) : backend_(b) {}
    void record() override { mark_ = backend_.enqueued_; }
    void wait() override { backend_.drain(mark_); }

   private:
    DeviceLikeBackend& backend_;
    uint64_t mark_ = 0;
  };
  class Graph final : public BackendGraph {
   public:
    explicit Graph(DeviceLikeBackend& b) : backend_(b) {}
    void replay() override {
      for (const auto& op : ops) backend_.run(op);
    }
    std::vector<std::function<void()>> ops;

   private:
    DeviceLikeBackend& backend_;
  };
  bool pageable(const void* p) const { return !device_mem_.owns(p) && !pinned_mem_.owns(p); }

  Options opt_;
  TrackedMemory device_mem_{*this}, pinned_mem_{*this};
  std::deque<std::function<void()>> queue_;
  uint64_t enqueued_ = 0, executed_ = 0;
  std::vector<std::function<void()>>* rec_ = nullptr;  // capturing into this
  bool refused_ = false;                               // the capture did what a CUDA graph cannot
};

}  // namespace dsv3
