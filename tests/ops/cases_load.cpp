// cases_load.cpp: test_ops cases of weight loading and device memory: synthesize (--load_format dummy on the
// device), dummy_load and checkpoint_load (the loader end to end, byte for byte against the CPU's load),
// staged_upload, device_oom, and graph_scratch_growth (a captured graph after the scratch grew).
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dsv3/backend/cuda/cuda_backend.h"
#include "dsv3/backend/staged_upload.h"
#include "dsv3/base/timer.h"
#include "dsv3/io/synthetic.h"
#include "dsv3/io/tiny_model.h"
#include "dsv3/io/weight_source.h"
#include "dsv3/model/weights.h"
#include "ops_cases.h"
#include "ops_env.h"

namespace dsv3::ops_test {

namespace {

// --load_format dummy on the device: the backend's generator against the host's (io/synthetic.cpp), byte for byte.
// The host side uses numeric.h's reference conversions, so this also checks the device's bf16 rounding and its
// integer e4m3 encoder on real data; shapes with partial 128x128 edge blocks and widths that are not a multiple of 4
// (the kernel's unpacked stores) are included.
void synth_case(std::string name, TensorRole role, DType dtype, Shape shape, uint64_t seed, bool quick) {
  add_case("synthesize", fmt::format("{},{},{},seed={}", name, dtype_name(dtype), shape.str(), seed), quick,
           [=](Env& env) {
             if (env.gpu->host_visible()) {  // --self-check: there is no device generator to check
               fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
               return true;
             }
             const TensorSpec spec{name, role, dtype, shape};
             const bool fp8 = dtype == DType::kFP8E4M3;
             Tensor ref(dtype, shape), ref_sc;
             Shape sc_shape;
             if (fp8) {
               sc_shape = Shape{ceil_div(shape[0], 128), ceil_div(shape[1], 128)};
               ref_sc = Tensor(DType::kF32, sc_shape);
               synth_fp8_linear(spec, seed, ref.as<uint8_t>(), ref_sc.as<float>());
             } else {
               synth_fill(spec, seed, ref.view().data);
             }
             Dev d(*env.gpu);
             TensorView out = d.out(dtype, shape, "out"), sc = fp8 ? d.out(DType::kF32, sc_shape, "scale_inv") : TensorView{};
             if (!env.gpu->synthesize({.rule = synth_rule(spec, seed), .out = out, .scale_inv = sc})) {
               fmt::print("    backend {} has no synthesize()\n", env.gpu->name());
               return false;
             }
             bool ok = compare("out", ref, d.get(out), kBitwise);
             if (fp8) ok &= compare("scale_inv", ref_sc, d.get(sc), kBitwise);
             return ok && d.guards_ok;
           });
}

// The loader end to end: a dummy model loaded for the GPU (made on the device) equals the same model loaded for the
// CPU (made on the host), tensor by tensor, byte for byte.
void dummy_load_case(std::string preset, bool fp8, Numerics numerics, bool quick) {
  add_case("dummy_load", fmt::format("preset={},fp8={},numerics={}", preset, fp8, numerics == Numerics::kFp8 ? "fp8" : "bf16"),
           quick, [=](Env& env) {
             if (env.gpu->host_visible()) {  // --self-check: there is no device generator to check
               fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
               return true;
             }
             ModelConfig c = tiny_model_preset(preset);
             c.quant.fp8 = fp8;
             auto host_src = WeightSource::dummy(c, 11), dev_src = WeightSource::dummy(c, 11);
             ModelWeights h = load_model_weights(*host_src, *env.cpu, numerics);
             ModelWeights g = load_model_weights(*dev_src, *env.gpu, numerics);
             auto hv = named_weights(h), gv = named_weights(g);
             if (hv.size() != gv.size()) {
               fmt::print("    {} host tensors vs {} device tensors\n", hv.size(), gv.size());
               return false;
             }
             bool ok = g.bytes_loaded == h.bytes_loaded;
             if (!ok) fmt::print("    bytes_loaded: host {} device {}\n", h.bytes_loaded, g.bytes_loaded);
             int checked = 0;
             for (size_t i = 0; i < hv.size(); ++i) {
               const TensorView& a = hv[i].second;
               const TensorView& b = gv[i].second;
               if (b.device != Device::kCuda || a.dtype != b.dtype || !(a.shape == b.shape)) {
                 fmt::print("    {}: host {} {} vs device {} {} ({})\n", hv[i].first, dtype_name(a.dtype), a.shape.str(),
                            dtype_name(b.dtype), b.shape.str(), b.device == Device::kCuda ? "cuda" : "host");
                 ok = false;
                 continue;
               }
               Tensor got(b.dtype, b.shape);
               env.gpu->copy(got.view(), b);
               env.gpu->synchronize();
               if (!compare(hv[i].first, a, got, kBitwise)) ok = false;
               ++checked;
             }
             fmt::print("    {} tensors, {:.1f} MB compared\n", checked, static_cast<double>(h.bytes_loaded) / 1e6);
             return ok;
           });
}

// Staged uploads (backend/staged_upload.h through the backend's pinned staging sink): random host buffers, most of
// them small, some spanning several chunks, through n_slots pinned chunks of slot_kb KB; every byte must arrive (FP8
// tensors: byte-granular sizes, compared bitwise) and no guard may be hit. Few slots force the slot rotation to wait
// for in-flight DMA.
void staged_upload_case(int n_slots, int slot_kb, int n_tensors, int max_kb, int threads, bool quick) {
  add_case("staged_upload", fmt::format("slots={},slot_kb={},tensors={},max_kb={},threads={}", n_slots, slot_kb,
                                        n_tensors, max_kb, threads),
           quick, [=](Env& env) {
             auto sink = env.gpu->make_staging_sink(n_slots, static_cast<size_t>(slot_kb) << 10);
             if (!sink) {
               fmt::print("    skipped: backend {} has no staging sink\n", env.gpu->name());
               return env.gpu->host_visible();
             }
             StagedUploader up(std::move(sink), threads);
             Rng rng(static_cast<uint64_t>(31 * n_slots + slot_kb + n_tensors));
             Dev d(*env.gpu);
             std::vector<Tensor> src;
             std::vector<TensorView> dst;
             uint64_t total = 0;
             for (int i = 0; i < n_tensors; ++i) {
               const int64_t n = rng.uniform_int(0, 3) == 0 ? rng.uniform_int(1, max_kb * 1024) : rng.uniform_int(1, 3000);
               Tensor h(DType::kFP8E4M3, {n});
               for (int64_t j = 0; j < n; ++j) h.as<uint8_t>()[j] = static_cast<uint8_t>(rng.gen()());
               dst.push_back(d.out(DType::kFP8E4M3, {n}, fmt::format("t{}", i)));
               up.add(dst.back().data, h.view().data, static_cast<size_t>(n));
               src.push_back(std::move(h));
               total += static_cast<uint64_t>(n);
             }
             up.flush();
             bool ok = up.stats().bytes == total;
             for (int i = 0; i < n_tensors; ++i) ok &= compare(fmt::format("t{}", i), src[i], d.get(dst[i]), kBitwise);
             fmt::print("    {} tensors, {:.1f} MB in {} chunks, {} transfers\n", n_tensors, total / 1e6,
                        up.stats().chunks, up.stats().transfers);
             return ok && d.guards_ok;
           });
}

// The loader end to end from a checkpoint on disk (mmap -> staging chunks -> device), against the CPU's load of the
// same files, tensor by tensor, byte for byte. chunk_mb > 0 overrides the staging chunk size (DSV3_LOAD_CHUNK_MB), so
// a small model still spans several chunks and reuses slots.
void checkpoint_load_case(std::string preset, Numerics numerics, int chunk_mb, bool quick) {
  add_case("checkpoint_load", fmt::format("preset={},numerics={},chunk_mb={}", preset,
                                          numerics == Numerics::kFp8 ? "fp8" : "bf16", chunk_mb),
           quick, [=](Env& env) {
             const std::string dir = fmt::format("/tmp/dsv3_test_ops_ckpt_{}", preset);
             if (!std::filesystem::exists(dir + "/model.safetensors.index.json")) {
               TinyModelOptions o;
               o.out_dir = dir;
               o.seed = 21;
               write_tiny_model(tiny_model_preset(preset), o);
             }
             if (chunk_mb > 0) setenv("DSV3_LOAD_CHUNK_MB", std::to_string(chunk_mb).c_str(), 1);
             auto host_src = WeightSource::open(dir, LoadFormat::kAuto), dev_src = WeightSource::open(dir, LoadFormat::kAuto);
             ModelWeights h = load_model_weights(*host_src, *env.cpu, numerics);
             const double t0 = now_seconds();
             ModelWeights g = load_model_weights(*dev_src, *env.gpu, numerics);
             const double dt = now_seconds() - t0;
             unsetenv("DSV3_LOAD_CHUNK_MB");
             auto hv = named_weights(h), gv = named_weights(g);
             bool ok = hv.size() == gv.size() && g.bytes_loaded == h.bytes_loaded;
             if (!env.gpu->host_visible() && g.staged.bytes != g.bytes_loaded) {
               fmt::print("    staged {} of {} bytes\n", g.staged.bytes, g.bytes_loaded);
               ok = false;
             }
             for (size_t i = 0; ok && i < hv.size(); ++i) {
               const TensorView& a = hv[i].second;
               const TensorView& b = gv[i].second;
               if (a.dtype != b.dtype || !(a.shape == b.shape)) {
                 fmt::print("    {}: {} {} vs {} {}\n", hv[i].first, dtype_name(a.dtype), a.shape.str(), dtype_name(b.dtype),
                            b.shape.str());
                 ok = false;
                 break;
               }
               Tensor got(b.dtype, b.shape);
               env.gpu->copy(got.view(), b);
               env.gpu->synchronize();
               if (!compare(hv[i].first, a, got, kBitwise)) ok = false;
             }
             fmt::print("    {} tensors, {:.1f} MB in {} chunks ({} transfers) in {:.3f} s\n", gv.size(),
                        g.bytes_loaded / 1e6, g.staged.chunks, g.staged.transfers, dt);
             return ok;
           });
}

// Out of device memory is a dsv3::Error naming the bytes, what they were for and the free/total memory of that moment
// (not an abort), and the device stays usable after it.
void device_oom_case() {
  add_case("device_oom", "1 PiB", true, [](Env& env) {
    if (env.gpu->host_visible()) {
      fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
      return true;
    }
    bool ok = false;
    try {
      AllocationPurpose why("the device_oom test");
      Tensor t(DType::kU8, {int64_t{1} << 50}, env.gpu->allocator());
      fmt::print("    a 1 PiB allocation succeeded\n");
    } catch (const Error& e) {
      const std::string m = e.what();
      fmt::print("    {}\n", m);
      ok = m.find("CUDA out of memory on device") != std::string::npos &&
           m.find("(1125899906842624 bytes) for the device_oom test; ") != std::string::npos &&
           m.find(" free of ") != std::string::npos;
    }
    Rng rng(5);
    Tensor h = rand_bf16(rng, {1000});
    Dev d(*env.gpu);
    const TensorView v = d.up(h, "x");
    return compare("after the failed allocation", h, d.get(v), kBitwise) && d.guards_ok && ok;
  });
}

// A CUDA graph captured at one row keeps working after a larger eager call grew the backend's scratch buffers
// (the grown-out buffer must outlive the graph; freeing it made the replay fault). A fresh backend, so that the
// capture sees the smallest scratch, with default options (the tests' per-op synchronization refuses captures).
void graph_scratch_case() {
  add_case("graph_scratch_growth", "fp8 linear captured at 1 row, scratch grown by 64 rows, replayed", true, [](Env& env) {
    if (env.gpu->host_visible()) {
      fmt::print("    skipped: backend {} is host-visible\n", env.gpu->name());
      return true;
    }
    std::unique_ptr<Backend> gpu = make_cuda_backend(CudaBackendOptions{});
    Rng rng(77);
    const int m = 256, k = 1024;
    HostLinear w = rand_fp8_weight(rng, m, k);
    Tensor x1 = rand_bf16(rng, {1, k}), x1b = rand_bf16(rng, {1, k}), x64 = rand_bf16(rng, {64, k});
    Dev d(*gpu);
    const LinearWeight dw = d.weight(w);
    TensorView dx1 = d.up(x1, "x1"), dx64 = d.up(x64, "x64");
    TensorView dout1 = d.out(DType::kBF16, {1, m}, "out1"), dout64 = d.out(DType::kBF16, {64, m}, "out64");
    gpu->linear({.x = dx1, .w = dw, .out = dout1});  // eager first (as the model's warm-up): sizes the scratch
    gpu->synchronize();
    std::unique_ptr<BackendGraph> graph = gpu->capture([&] { gpu->linear({.x = dx1, .w = dw, .out = dout1}); });
    if (!graph) {
      fmt::print("    the capture was refused\n");
      return false;
    }
    gpu->linear({.x = dx64, .w = dw, .out = dout64});  // grows the FP8 code and scale scratch past the captured size
    gpu->copy(dx1, x1b.view());
    graph->replay();
    gpu->synchronize();
    Tensor ref1(DType::kBF16, {1, m}), ref64(DType::kBF16, {64, m});
    env.cpu->linear({.x = x1b, .w = w.view(), .out = ref1});
    env.cpu->linear({.x = x64, .w = w.view(), .out = ref64});
    bool ok = compare("replayed 1-row output (new input)", ref1, d.get(dout1), kTolGemmFp8);
    ok &= compare("64-row output", ref64, d.get(dout64), kTolGemmFp8);
    return ok && d.guards_ok;
  });
}

}  // namespace

void register_load_cases() {
  graph_scratch_case();
  // Synthetic weights: DeepSeek-V3 shapes (kv_a_proj_with_mqa 576 x 7168: a partial row block), partial blocks in both
  // dimensions, widths that are not a multiple of 4, a single partial block, and the non-FP8 roles.
  const std::string lp = "model.layers.3.";
  synth_case(lp + "self_attn.kv_a_proj_with_mqa.weight", TensorRole::kLinear, DType::kFP8E4M3, {576, 7168}, 0, true);
  synth_case(lp + "mlp.experts.17.down_proj.weight", TensorRole::kLinear, DType::kFP8E4M3, {7168, 2048}, 5, false);
  synth_case(lp + "self_attn.q_b_proj.weight", TensorRole::kLinear, DType::kFP8E4M3, {200, 300}, 1, true);
  synth_case(lp + "self_attn.o_proj.weight", TensorRole::kLinear, DType::kFP8E4M3, {129, 130}, 2, true);
  synth_case(lp + "mlp.up_proj.weight", TensorRole::kLinear, DType::kFP8E4M3, {7, 5}, 3, true);
  synth_case(lp + "mlp.down_proj.weight", TensorRole::kLinear, DType::kBF16, {300, 257}, 4, true);  // bf16 checkpoint
  synth_case("model.embed_tokens.weight", TensorRole::kEmbedding, DType::kBF16, {3001, 7168}, 0, false);
  synth_case("model.embed_tokens.weight", TensorRole::kEmbedding, DType::kBF16, {37, 33}, 9, true);
  synth_case("lm_head.weight", TensorRole::kLinearBf16, DType::kBF16, {1000, 7168}, 0, true);
  synth_case(lp + "input_layernorm.weight", TensorRole::kNorm, DType::kBF16, {7168}, 0, true);
  synth_case(lp + "self_attn.kv_a_layernorm.weight", TensorRole::kNorm, DType::kBF16, {512}, 6, true);
  synth_case(lp + "mlp.gate.e_score_correction_bias", TensorRole::kBias, DType::kF32, {256}, 0, true);
  synth_case(lp + "mlp.gate.e_score_correction_bias", TensorRole::kBias, DType::kF32, {1}, 8, true);
  dummy_load_case("micro", true, Numerics::kFp8, true);
  dummy_load_case("micro", true, Numerics::kBf16, true);  // FP8 linears dequantized on the host, the rest on the device
  dummy_load_case("micro", false, Numerics::kFp8, true);  // a bf16 checkpoint
  dummy_load_case("tiny", true, Numerics::kFp8, false);
  staged_upload_case(1, 64, 50, 200, 1, true);     // one slot: every chunk waits for the previous DMA
  staged_upload_case(2, 256, 300, 1000, 4, true);  // tensors spanning up to 4 chunks
  staged_upload_case(4, 1024, 400, 4000, 8, false);
  checkpoint_load_case("micro", Numerics::kFp8, 1, true);   // ~5 MB through 1 MB chunks: 4 slots rotate
  checkpoint_load_case("micro", Numerics::kBf16, 1, true);  // host-dequantized temporaries, released once staged
  checkpoint_load_case("tiny", Numerics::kFp8, 0, false);   // the default 4 x 64 MB chunks
  device_oom_case();
}

}  // namespace dsv3::ops_test
