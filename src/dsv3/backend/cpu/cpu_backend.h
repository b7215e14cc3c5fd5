// cpu_backend.h: the reference backend — plain loops, fp32 accumulation, threads over rows (backend/cpu).
// Every op exists here first; tests/ops checks each CUDA kernel against these.
#pragma once

#include "dsv3/backend/backend.h"

namespace dsv3 {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  Allocator& allocator() override { return host_allocator(); }
  bool host_visible() const override { return true; }
  void copy(const TensorView& dst, const TensorView& src) override;
  void synchronize() override {}

  void linear(const LinearParams& p) override;
  void rms_norm(const RmsNormParams& p) override;
  void embedding(const EmbeddingParams& p) override;
  void rope(const RopeParams& p) override;
  void silu_mul(const SiluMulParams& p) override;
  void add(const AddParams& p) override;
  void kv_cache_store(const KvCacheStoreParams& p) override;
  void kv_cache_gather(const KvCacheGatherParams& p) override;
  void mla_prefill(const MlaPrefillParams& p) override;
  void mla_absorb_q(const MlaAbsorbQParams& p) override;
  void mla_decode(const MlaDecodeParams& p) override;
  void mla_absorb_v(const MlaAbsorbVParams& p) override;
  void router(const RouterParams& p) override;
  void moe_experts(const MoeExpertsParams& p) override;
  void sample(const SampleParams& p) override;
  void fill_token_ids(const FillTokenIdsParams& p) override;
};

// The exact FP8 activation quantization of model-spec §5.3 for one row of k values (groups of 128, the last may be
// partial): codes[k] e4m3 and scales[ceil(k/128)] fp32.
void quantize_row_fp8(const float* x, int64_t k, bool ue8m0, uint8_t* codes, float* scales);

}  // namespace dsv3
