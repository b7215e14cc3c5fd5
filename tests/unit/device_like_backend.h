// device_like_backend.h: a test Backend that runs every op on the CPU reference but, like the CUDA backend, is not
// host-visible, so the loader copies weights into it or makes them "on the device" (tests/unit). Tests derive from
// it and override what they observe: synthesize() (test_dummy_load), make_staging_sink() (test_staged_upload), or
// run(), through which every op and copy passes, to record ops instead of running them (test_graph_replay).
#pragma once

#include <functional>
#include <utility>

#include "dsv3/backend/backend.h"
#include "dsv3/backend/cpu/cpu_backend.h"

namespace dsv3 {

class DeviceLikeBackend : public Backend {
 public:
  Allocator& allocator() override { return host_allocator(); }
  bool host_visible() const override { return false; }
  void copy(const TensorView& dst, const TensorView& src) override {
    ++copies;
    run([this, dst, src] { cpu_.copy(dst, src); });
  }
  void synchronize() override {}
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
  void sample(const SampleParams& p) override { run([this, p] { cpu_.sample(p); }); }

  int copies = 0;  // copy() calls (recorded ones included)

 protected:
  // Every op and copy; params are captured by value, so a subclass may keep `op` and run it later.
  virtual void run(std::function<void()> op) { op(); }
  CpuBackend cpu_;
};

}  // namespace dsv3
