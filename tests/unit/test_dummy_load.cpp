// test_dummy_load.cpp: the loader's --load_format dummy path for backends that are not host-visible (tests/unit).
// A fake "device" backend (host memory, but host_visible() false, as CUDA's) implements synthesize() from the rules
// of base/synth_rules.h with its own loops; the model it loads must equal, tensor by tensor and byte for byte, the
// model the CPU backend loads from the host generator, with the generator asked for exactly the tensors that need
// no host step. The CUDA kernel itself is checked against the host generator in tests/ops ("synthesize").
#include <algorithm>
#include <cmath>
#include <cstring>

#include <gtest/gtest.h>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "unit/device_like_backend.h"
#include "dsv3/io/tiny_model.h"
#include "dsv3/io/weight_source.h"
#include "dsv3/model/weights.h"

namespace dsv3 {
namespace {

class FakeDevice final : public DeviceLikeBackend {
 public:
  explicit FakeDevice(bool can_synthesize) : can_synthesize_(can_synthesize) {}
  std::string name() const override { return "fake-device"; }

  // Element by element, block by block: a third implementation of the rules (the host generator and the CUDA
  // kernel are the other two), written plainly.
  bool synthesize(const SynthesizeParams& p) override {
    ++synth_calls;
    if (!can_synthesize_) return false;
    if (p.out.dtype != DType::kFP8E4M3) {
      EXPECT_FALSE(p.scale_inv);
      for (int64_t i = 0; i < p.out.numel(); ++i) {
        const float v = synth_value(p.rule, static_cast<uint64_t>(i));
        if (p.out.dtype == DType::kBF16) p.out.as<bf16>()[i] = f32_to_bf16(v);
        else p.out.as<float>()[i] = v;
      }
      return true;
    }
    ++synth_fp8;
    const int64_t rows = p.out.dim(0), cols = p.out.dim(1), bc = p.scale_inv.dim(1);
    EXPECT_EQ(p.scale_inv.dim(0), (rows + 127) / 128);
    EXPECT_EQ(bc, (cols + 127) / 128);
    for (int64_t blk = 0; blk < p.scale_inv.numel(); ++blk) {
      const int64_t r0 = blk / bc * 128, c0 = blk % bc * 128;
      const float amp = synth_block_amp(p.rule.key, static_cast<uint64_t>(blk));
      float amax = 0.f;
      for (int64_t r = r0; r < std::min(rows, r0 + 128); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + 128); ++c)
          amax = std::max(amax, std::fabs(synth_fp8_prequant(p.rule, amp, static_cast<uint64_t>(r * cols + c))));
      const float s = synth_fp8_scale(amax);
      p.scale_inv.as<float>()[blk] = s;
      for (int64_t r = r0; r < std::min(rows, r0 + 128); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + 128); ++c)
          p.out.as<uint8_t>()[r * cols + c] = synth_e4m3_from_bits(
              f32_to_bits(synth_div(synth_fp8_prequant(p.rule, amp, static_cast<uint64_t>(r * cols + c)), s)));
    }
    return true;
  }

  int synth_calls = 0, synth_fp8 = 0;

 private:
  bool can_synthesize_;
};

// Loads a dummy micro model on the CPU and on the fake device and compares every tensor.
void expect_same_model(const ModelConfig& c, Numerics numerics, FakeDevice& dev) {
  auto host_src = WeightSource::dummy(c, 5), dev_src = WeightSource::dummy(c, 5);
  CpuBackend cpu;
  ModelWeights h = load_model_weights(*host_src, cpu, numerics);
  ModelWeights d = load_model_weights(*dev_src, dev, numerics);
  auto hv = named_weights(h), dv = named_weights(d);
  ASSERT_EQ(hv.size(), dv.size());
  EXPECT_EQ(h.bytes_loaded, d.bytes_loaded);
  for (size_t i = 0; i < hv.size(); ++i) {
    const TensorView &a = hv[i].second, &b = dv[i].second;
    ASSERT_EQ(hv[i].first, dv[i].first);
    ASSERT_TRUE(a && b) << hv[i].first;
    ASSERT_EQ(a.dtype, b.dtype) << hv[i].first;
    ASSERT_EQ(a.shape, b.shape) << hv[i].first;
    EXPECT_NE(a.data, b.data) << hv[i].first << ": the device load must own its tensors";
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes()), 0) << hv[i].first << " " << a.shape.str();
  }
}

ModelConfig micro(bool fp8) {
  ModelConfig c = tiny_model_preset("micro");
  c.quant.fp8 = fp8;
  return c;
}

TEST(DummyLoad, DeviceGeneratorMakesEveryTensorExceptTheHostDequantizedOnes) {
  FakeDevice dev(true);
  expect_same_model(micro(true), Numerics::kFp8, dev);
  EXPECT_GT(dev.synth_fp8, 0);
  // kv_b_proj's bf16 copy is dequantized on the host: one copy per layer (MTP included), nothing else is copied.
  const ModelConfig c = micro(true);
  EXPECT_EQ(dev.copies, c.num_hidden_layers + c.num_nextn_predict_layers);
}

TEST(DummyLoad, Bf16NumericsDequantizeFp8LinearsOnTheHost) {
  FakeDevice dev(true);
  expect_same_model(micro(true), Numerics::kBf16, dev);
  EXPECT_EQ(dev.synth_fp8, 0);
  EXPECT_GT(dev.synth_calls, 0);  // norms, embeddings, bf16 linears
  EXPECT_GT(dev.copies, 0);
}

TEST(DummyLoad, Bf16Checkpoint) {
  FakeDevice dev(true);
  expect_same_model(micro(false), Numerics::kFp8, dev);
  EXPECT_EQ(dev.synth_fp8, 0);
  EXPECT_EQ(dev.copies, 0);  // kv_b_proj is bf16 already: no host step at all
}

// Off the CPU, q_a ‖ kv_a and gate ‖ up (dense MLP, shared expert) load into one buffer each, the parts as row views
// of it (the byte-for-byte comparison above covers their contents); the CPU (mmap views in place) and
// DSV3_STACK_PROJ=0 keep them apart. (Routed experts are never stacked: ExpertWeights has no stacked field.)
TEST(DummyLoad, StackedProjectionsAreRowViewsOfOneBuffer) {
  const ModelConfig c = micro(true);
  auto src = WeightSource::dummy(c, 5);
  FakeDevice dev(true);
  ModelWeights d = load_model_weights(*src, dev, Numerics::kFp8);
  const AttentionWeights& a = d.layers[0].self_attn;
  const int64_t qr = c.q_lora_rank, kva = c.kv_lora_rank + c.qk_rope_head_dim, hd = c.hidden_size;
  ASSERT_TRUE(a.q_kv_a.weight);
  EXPECT_EQ(a.q_kv_a.weight.shape, Shape({qr + kva, hd}));
  EXPECT_EQ(a.q_kv_a.scale_inv.shape, Shape({(qr + kva + 127) / 128, (hd + 127) / 128}));
  EXPECT_EQ(a.q_a_proj.weight.data, a.q_kv_a.weight.data);
  EXPECT_EQ(a.kv_a_proj_with_mqa.weight.data, a.q_kv_a.weight.as<uint8_t>() + qr * hd);
  EXPECT_EQ(a.kv_a_proj_with_mqa.scale_inv.data, a.q_kv_a.scale_inv.as<float>() + qr / 128 * ((hd + 127) / 128));
  const MlpWeights& mlp = d.layers[0].mlp;
  ASSERT_TRUE(mlp.gate_up.weight);
  EXPECT_EQ(mlp.gate_up.weight.shape, Shape({2 * c.intermediate_size, hd}));
  EXPECT_EQ(mlp.up_proj.weight.data, mlp.gate_up.weight.as<uint8_t>() + c.intermediate_size * hd);
  ASSERT_TRUE(d.layers[1].moe);
  const MoeWeights& moe = d.layers[1].moe_mlp;
  ASSERT_TRUE(moe.shared_experts.gate_up.weight);

  CpuBackend cpu;
  auto host_src = WeightSource::dummy(c, 5);
  ModelWeights h = load_model_weights(*host_src, cpu, Numerics::kFp8);
  EXPECT_FALSE(h.layers[0].self_attn.q_kv_a.weight);
  EXPECT_FALSE(h.layers[0].mlp.gate_up.weight);

  setenv("DSV3_STACK_PROJ", "0", 1);
  FakeDevice dev2(true);
  auto src2 = WeightSource::dummy(c, 5);
  ModelWeights apart = load_model_weights(*src2, dev2, Numerics::kFp8);
  unsetenv("DSV3_STACK_PROJ");
  EXPECT_FALSE(apart.layers[0].self_attn.q_kv_a.weight);
  EXPECT_FALSE(apart.layers[0].mlp.gate_up.weight);
  EXPECT_EQ(apart.bytes_loaded, d.bytes_loaded);
}

TEST(DummyLoad, BackendWithoutGeneratorFallsBackToCopies) {
  FakeDevice dev(false);
  expect_same_model(micro(true), Numerics::kFp8, dev);
  EXPECT_EQ(dev.synth_calls, 1);  // asked once, then never again
  EXPECT_GT(dev.copies, 10);
}

}  // namespace
}  // namespace dsv3
