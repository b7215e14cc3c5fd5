// weights.cpp: mapping checkpoint tensors onto the model's structs (model).
#include "dsv3/model/weights.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>

#include "dsv3/base/thread_pool.h"
#include "dsv3/io/schema.h"
#include "dsv3/io/synthetic.h"

namespace dsv3 {

Numerics parse_numerics(const std::string& s) {
  if (s == "fp8") return Numerics::kFp8;
  if (s == "bf16") return Numerics::kBf16;
  FAIL("--numerics '{}' is not supported (supported: fp8, bf16)", s);
}

Tensor dequantize_fp8(const LinearWeight& w) {
  CHECK(w.fp8() && w.weight.device == Device::kCpu, "dequantize_fp8 needs a host FP8 weight");
  const int64_t rows = w.weight.dim(0), cols = w.weight.dim(1), sc = w.scale_inv.dim(1);
  Tensor out(DType::kBF16, {rows, cols});
  const uint8_t* q = w.weight.as<const uint8_t>();
  const float* s = w.scale_inv.as<const float>();
  parallel_for(rows, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      for (int64_t c = 0; c < cols; ++c)
        out.as<bf16>()[r * cols + c] = f32_to_bf16(fp8e4m3_to_f32(q[r * cols + c]) * s[(r / 128) * sc + c / 128]);
  });
  return out;
}

namespace {

// Staging for device backends (StagedUploader): kStagingSlots pinned chunks of kStagingSlotMb MB in flight, filled
// by kStagingThreads host threads. DSV3_LOAD_CHUNKS / DSV3_LOAD_CHUNK_MB / DSV3_LOAD_THREADS override them (for
// measuring the load rate on a given machine).
constexpr int kStagingSlots = 4;
constexpr int kStagingSlotMb = 64;
constexpr int kStagingThreads = 8;

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  EXPECT(end && *end == '\0' && x >= lo && x <= hi, "{}={} must be an integer in [{}, {}]", name, v, lo, hi);
  return static_cast<int>(x);
}

class Loader {
 public:
  Loader(WeightSource& src, Backend& be, Numerics num, ModelWeights& mw)
      : src_(src), be_(be), num_(num), mw_(mw), device_synth_(src.is_dummy() && !be.host_visible()),
        stack_(env_int("DSV3_STACK_PROJ", 1, 0, 1) == 1) {
    if (be.host_visible()) return;  // CPU: the mmap views are used in place, nothing is copied
    const int slots = env_int("DSV3_LOAD_CHUNKS", kStagingSlots, 1, 64);
    const int mb = env_int("DSV3_LOAD_CHUNK_MB", kStagingSlotMb, 1, 4096);
    const int hw = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    const int threads = env_int("DSV3_LOAD_THREADS", std::min(kStagingThreads, hw), 1, 256);
    if (auto sink = be.make_staging_sink(slots, static_cast<size_t>(mb) << 20))
      uploader_ = std::make_unique<StagedUploader>(std::move(sink), threads);
  }

  // Everything queued reaches the backend; called once, after the last tensor.
  void finish() {
    if (uploader_) {
      uploader_->flush();
      mw_.staged = uploader_->stats();
    }
  }

  // A backend copy of a host tensor (the host tensor itself on host-visible backends). `keep` owns host's memory
  // when it is a temporary (a dequantized weight): the uploader frees it once staged.
  TensorView place(const TensorView& host, Tensor keep = {}) {
    if (be_.host_visible()) {
      mw_.bytes_loaded += host.nbytes();
      if (!keep.empty()) mw_.owned.push_back(std::move(keep));
      return host;
    }
    Tensor t(host.dtype, host.shape, be_.allocator());
    const TensorView v = t.view();
    mw_.owned.push_back(std::move(t));
    place_into(v, host, std::move(keep));
    return v;
  }
  // Into backend memory the caller allocated (a part of a stacked weight).
  void place_into(const TensorView& dst, const TensorView& host, Tensor keep = {}) {
    CHECK(!be_.host_visible() && dst.dtype == host.dtype && dst.nbytes() == host.nbytes(), "place_into {} <- {}",
          dst.shape.str(), host.shape.str());
    mw_.bytes_loaded += host.nbytes();
    if (uploader_) uploader_->add(dst.data, host.data, host.nbytes(), std::move(keep));
    else be_.copy(dst, host);  // NOTE: a synchronous backend copy; `keep` may die after it
  }
  TensorView place_owned(Tensor&& host) {
    const TensorView v = host.view();
    return place(v, std::move(host));
  }
  // --load_format dummy on a device backend: the backend makes the tensor in its own memory, bit-identical to the
  // host generator, instead of the host generating tens of GB and copying them. False when the backend has no
  // generator; the host path is then taken from here on.
  bool synthesize(const TensorSpec& w, const TensorSpec* scale, LinearWeight& out) {
    if (!device_synth_) return false;
    Tensor t(w.dtype, w.shape, be_.allocator()), sc;
    if (scale) sc = Tensor(scale->dtype, scale->shape, be_.allocator());
    if (!be_.synthesize({.rule = synth_rule(w, src_.seed()), .out = t.view(), .scale_inv = sc.view()})) {
      device_synth_ = false;
      return false;
    }
    out = {t.view(), sc.view()};
    mw_.bytes_loaded += t.nbytes();
    mw_.bytes_made_on_device += t.nbytes();
    mw_.owned.push_back(std::move(t));
    if (scale) {
      mw_.bytes_loaded += sc.nbytes();
      mw_.bytes_made_on_device += sc.nbytes();
      mw_.owned.push_back(std::move(sc));
    }
    return true;
  }
  TensorView tensor(const std::string& name) {
    AllocationPurpose why("weight " + name);
    LinearWeight made;
    if (synthesize(src_.spec(name), nullptr, made)) return made.weight;
    return place(src_.get(name));
  }
  LinearWeight linear(const std::string& name) {
    AllocationPurpose why("weight " + name + ".weight");
    if (device_synth_) {
      // FP8 weights are made as FP8 (with their scales) unless bf16 numerics dequantize them on the host.
      const TensorSpec& ws = src_.spec(name + ".weight");
      const bool fp8 = ws.dtype == DType::kFP8E4M3;
      LinearWeight made;
      if ((!fp8 || num_ == Numerics::kFp8) &&
          synthesize(ws, fp8 ? &src_.spec(name + ".weight_scale_inv") : nullptr, made))
        return made;
    }
    LinearWeight w = src_.linear(name);
    if (w.fp8() && num_ == Numerics::kBf16) return {place_owned(dequantize_fp8(w)), {}};
    LinearWeight out;
    out.weight = place(w.weight);
    if (w.fp8()) out.scale_inv = place(w.scale_inv);
    return out;
  }
  MlpWeights mlp(const std::string& p) { return {linear(p + "gate_proj"), linear(p + "up_proj"), linear(p + "down_proj")}; }
  // The dense MLP and the shared expert: gate ‖ up stacked where they stack (the routed experts stay apart: the
  // grouped MoE kernels take gate and up as they are).
  MlpWeights mlp_stacked(const std::string& p) {
    MlpWeights w;
    w.gate_up = stacked(p + "gate_proj", p + "up_proj", w.gate_proj, w.up_proj);
    w.down_proj = linear(p + "down_proj");
    return w;
  }

  // Two projections of one input stacked into one device weight [m1 + m2, k] (FP8 with its scales; m1 % 128 == 0,
  // so each part keeps whole scale blocks): the model runs them as one linear with out2 — one weight stream, one GEMV
  // launch at decode. Each part is made or placed into its own rows and stays usable alone as a row view (wa, wb).
  // Host-visible backends (the mmap views are used in place), bf16 numerics, shapes that do not stack and
  // DSV3_STACK_PROJ=0 load the two apart; the returned weight is then empty.
  LinearWeight stacked(const std::string& a, const std::string& b, LinearWeight& wa, LinearWeight& wb) {
    // What would be stacked: the dummy generator's exact specs, or the checkpoint's tensors themselves (a checkpoint
    // may store a linear in bf16 where its config says FP8; the source accepts both).
    Shape shape_a, shape_b;
    bool fp8 = false;
    LinearWeight ha, hb;
    const bool want = stack_ && !be_.host_visible() && num_ == Numerics::kFp8;
    if (want && device_synth_) {
      const TensorSpec &sa = src_.spec(a + ".weight"), &sb = src_.spec(b + ".weight");
      shape_a = sa.shape, shape_b = sb.shape;
      fp8 = sa.dtype == DType::kFP8E4M3 && sb.dtype == DType::kFP8E4M3;
    } else if (want) {
      ha = src_.linear(a), hb = src_.linear(b);  // mmap views: nothing is read yet
      shape_a = ha.weight.shape, shape_b = hb.weight.shape;
      fp8 = ha.fp8() && hb.fp8();
    }
    if (!want || !fp8 || shape_a.ndim != 2 || shape_b.ndim != 2 || shape_a[1] != shape_b[1] || shape_a[0] % 128 != 0) {
      wa = linear(a);
      wb = linear(b);
      return {};
    }
    const int64_t m1 = shape_a[0], m2 = shape_b[0], k = shape_a[1];
    AllocationPurpose why(fmt::format("weight {} + {} (stacked)", a, b));
    Tensor w(DType::kFP8E4M3, {m1 + m2, k}, be_.allocator());
    Tensor s(DType::kF32, {(m1 + m2 + 127) / 128, (k + 127) / 128}, be_.allocator());
    wa = {w.view().rows(0, m1), s.view().rows(0, m1 / 128)};
    wb = {w.view().rows(m1, m1 + m2), s.view().rows(m1 / 128, (m1 + m2 + 127) / 128)};
    LinearWeight both{w.view(), s.view()};
    mw_.owned.push_back(std::move(w));
    mw_.owned.push_back(std::move(s));
    fill(a, wa, ha);
    fill(b, wb, hb);
    return both;
  }
  // An FP8 linear made on the device (dummy) or placed from `host` (fetched here if empty) into `dst`.
  void fill(const std::string& name, const LinearWeight& dst, LinearWeight host) {
    if (device_synth_) {
      if (be_.synthesize({.rule = synth_rule(src_.spec(name + ".weight"), src_.seed()), .out = dst.weight,
                          .scale_inv = dst.scale_inv})) {
        const uint64_t bytes = dst.weight.nbytes() + dst.scale_inv.nbytes();
        mw_.bytes_loaded += bytes;
        mw_.bytes_made_on_device += bytes;
        return;
      }
      device_synth_ = false;
    }
    if (!host.weight) host = src_.linear(name);
    EXPECT(host.fp8() && host.weight.shape == dst.weight.shape && host.scale_inv.shape == dst.scale_inv.shape,
           "weight {}: {} {} with scale_inv {}, expected FP8 {} with {}", name, dtype_name(host.weight.dtype),
           host.weight.shape.str(), host.scale_inv.shape.str(), dst.weight.shape.str(), dst.scale_inv.shape.str());
    place_into(dst.weight, host.weight);
    place_into(dst.scale_inv, host.scale_inv);
  }

  LayerWeights layer(int64_t L) {
    const ModelConfig& c = src_.config();
    const std::string p = layer_prefix(L);
    LayerWeights lw;
    lw.input_layernorm = tensor(p + "input_layernorm.weight");
    lw.post_attention_layernorm = tensor(p + "post_attention_layernorm.weight");
    auto& a = lw.self_attn;
    const std::string ap = p + "self_attn.";
    if (c.q_lora_rank > 0) {
      a.q_kv_a = stacked(ap + "q_a_proj", ap + "kv_a_proj_with_mqa", a.q_a_proj, a.kv_a_proj_with_mqa);
      a.q_a_layernorm = tensor(ap + "q_a_layernorm.weight");
      a.q_b_proj = linear(ap + "q_b_proj");
    } else {
      a.q_proj = linear(ap + "q_proj");
      a.kv_a_proj_with_mqa = linear(ap + "kv_a_proj_with_mqa");
    }
    a.kv_a_layernorm = tensor(ap + "kv_a_layernorm.weight");
    LinearWeight kvb = src_.linear(ap + "kv_b_proj");
    if (kvb.fp8()) {
      AllocationPurpose why("weight " + ap + "kv_b_proj (dequantized bf16 copy for the absorbed decode)");
      a.kv_b_bf16 = place_owned(dequantize_fp8(kvb));
      a.kv_b_proj = num_ == Numerics::kBf16 ? LinearWeight{a.kv_b_bf16, {}} : linear(ap + "kv_b_proj");
    } else {
      a.kv_b_proj = linear(ap + "kv_b_proj");
      a.kv_b_bf16 = a.kv_b_proj.weight;
    }
    a.o_proj = linear(ap + "o_proj");
    lw.moe = c.is_moe_layer(L);
    if (lw.moe) {
      const std::string m = p + "mlp.";
      lw.moe_mlp.gate = tensor(m + "gate.weight");
      if (c.topk_method == TopkMethod::kNoauxTc) lw.moe_mlp.e_score_correction_bias = tensor(m + "gate.e_score_correction_bias");
      for (int64_t e = 0; e < c.n_routed_experts; ++e) {
        MlpWeights ew = mlp(fmt::format("{}experts.{}.", m, e));
        lw.moe_mlp.experts.push_back({ew.gate_proj, ew.up_proj, ew.down_proj});
      }
      if (c.n_shared_experts > 0) {
        lw.moe_mlp.has_shared = true;
        lw.moe_mlp.shared_experts = mlp_stacked(m + "shared_experts.");
      }
    } else {
      lw.mlp = mlp_stacked(p + "mlp.");
    }
    return lw;
  }

 private:
  WeightSource& src_;
  Backend& be_;
  Numerics num_;
  ModelWeights& mw_;
  bool device_synth_;
  bool stack_;  // DSV3_STACK_PROJ (default 1): q_a ‖ kv_a and gate ‖ up stacked on device backends (stacked())
  std::unique_ptr<StagedUploader> uploader_;  // device backends with staging buffers
};

using Named = std::vector<std::pair<std::string, TensorView>>;

void append_linear(Named& v, const std::string& name, const LinearWeight& w) {
  v.emplace_back(name, w.weight);
  if (w.scale_inv) v.emplace_back(name + ".scale_inv", w.scale_inv);
}
void append_layer(Named& v, const std::string& p, const LayerWeights& l) {
  v.emplace_back(p + "input_layernorm", l.input_layernorm);
  v.emplace_back(p + "post_attention_layernorm", l.post_attention_layernorm);
  const AttentionWeights& a = l.self_attn;
  const std::pair<const char*, const LinearWeight*> attn[] = {
      {"q_a_proj", &a.q_a_proj}, {"q_b_proj", &a.q_b_proj}, {"q_proj", &a.q_proj},
      {"kv_a_proj_with_mqa", &a.kv_a_proj_with_mqa}, {"kv_b_proj", &a.kv_b_proj}, {"o_proj", &a.o_proj}};
  for (const auto& [n, w] : attn)
    if (w->weight) append_linear(v, p + n, *w);
  if (a.q_a_layernorm) v.emplace_back(p + "q_a_layernorm", a.q_a_layernorm);
  v.emplace_back(p + "kv_a_layernorm", a.kv_a_layernorm);
  v.emplace_back(p + "kv_b_bf16", a.kv_b_bf16);
  auto mlp = [&](const std::string& q, const LinearWeight& g, const LinearWeight& u, const LinearWeight& dn) {
    append_linear(v, q + "gate_proj", g);
    append_linear(v, q + "up_proj", u);
    append_linear(v, q + "down_proj", dn);
  };
  if (!l.moe) {
    mlp(p + "mlp.", l.mlp.gate_proj, l.mlp.up_proj, l.mlp.down_proj);
    return;
  }
  v.emplace_back(p + "gate", l.moe_mlp.gate);
  if (l.moe_mlp.e_score_correction_bias) v.emplace_back(p + "e_score_correction_bias", l.moe_mlp.e_score_correction_bias);
  for (size_t e = 0; e < l.moe_mlp.experts.size(); ++e) {
    const ExpertWeights& ew = l.moe_mlp.experts[e];
    mlp(fmt::format("{}experts.{}.", p, e), ew.gate, ew.up, ew.down);
  }
  if (l.moe_mlp.has_shared)
    mlp(p + "shared_experts.", l.moe_mlp.shared_experts.gate_proj, l.moe_mlp.shared_experts.up_proj,
        l.moe_mlp.shared_experts.down_proj);
}

}  // namespace

std::string weight_load_summary(const ModelWeights& mw, double seconds) {
  auto size = [](uint64_t b) {
    return b >= 1'000'000'000 ? fmt::format("{:.1f} GB", b / 1e9) : fmt::format("{:.1f} MB", b / 1e6);
  };
  std::string how;
  if (mw.in_place) how = "used in place (mmap or host tensors)";
  else if (mw.bytes_made_on_device == mw.bytes_loaded) how = "made on the device (--load_format dummy)";
  else if (mw.staged.bytes > 0)
    how = fmt::format("{} staged in {} chunks{}", size(mw.staged.bytes), mw.staged.chunks,
                      mw.bytes_made_on_device ? ", " + size(mw.bytes_made_on_device) + " made on the device" : "");
  else how = "copied";
  return fmt::format("loaded {} of weights in {:.2f} s ({:.2f} GB/s; {})", size(mw.bytes_loaded), seconds,
                     seconds > 0 ? mw.bytes_loaded / 1e9 / seconds : 0.0, how);
}

std::vector<std::pair<std::string, TensorView>> named_weights(const ModelWeights& mw) {
  Named v;
  v.emplace_back("embed_tokens", mw.embed_tokens);
  v.emplace_back("norm", mw.norm);
  append_linear(v, "lm_head", mw.lm_head);
  for (size_t L = 0; L < mw.layers.size(); ++L) append_layer(v, fmt::format("layers.{}.", L), mw.layers[L]);
  if (mw.mtp) {
    v.emplace_back("mtp.enorm", mw.mtp->enorm);
    v.emplace_back("mtp.hnorm", mw.mtp->hnorm);
    v.emplace_back("mtp.shared_head_norm", mw.mtp->shared_head_norm);
    append_linear(v, "mtp.eh_proj", mw.mtp->eh_proj);
    append_layer(v, "mtp.", mw.mtp->block);
  }
  return v;
}

ModelWeights load_model_weights(WeightSource& src, Backend& backend, Numerics numerics, bool load_mtp) {
  const ModelConfig& c = src.config();
  ModelWeights mw;
  mw.in_place = backend.host_visible();
  Loader ld(src, backend, numerics, mw);
  mw.embed_tokens = ld.tensor("model.embed_tokens.weight");
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) mw.layers.push_back(ld.layer(L));
  mw.norm = ld.tensor("model.norm.weight");
  mw.lm_head = {ld.tensor("lm_head.weight"), {}};
  if (load_mtp && src.has_mtp() && c.num_nextn_predict_layers > 0) {
    const int64_t L = c.num_hidden_layers;
    const std::string p = layer_prefix(L);
    MtpWeights m;
    m.enorm = ld.tensor(p + "enorm.weight");
    m.hnorm = ld.tensor(p + "hnorm.weight");
    m.shared_head_norm = ld.tensor(p + "shared_head.norm.weight");
    m.eh_proj = {ld.tensor(p + "eh_proj.weight"), {}};
    m.block = ld.layer(L);
    mw.mtp = std::move(m);
  }
  ld.finish();
  backend.synchronize();  // copies and generators are queued on the backend's stream: loading ends here
  return mw;
}

}  // namespace dsv3
