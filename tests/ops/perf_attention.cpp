// perf_attention.cpp: test_ops --perf tables of the MLA ops: mla_decode (each kernel, forced split sizes,
// graph-wide block tables), mla_absorb_q / mla_absorb_v (auto, slice, tile) and mla_prefill (each kernel) at
// DeepSeek-V3 dims, with the HBM share or TFLOPS against the H200 ceilings.
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "ops_env.h"
#include "ops_perf.h"

namespace dsv3::ops_test {

// table_blocks > 0: block tables that many blocks wide (the rest unused), as a captured CUDA graph's table is
// max_seq_len / block_size wide (163840 / 64 = 2560 for DeepSeek-V3): the launcher sizes the splits for that width.
void perf_decode(Env& env, Backend& gpu, const char* label, const std::vector<int>& ctxs, const std::vector<int>& batches,
                 int table_blocks) {
  const int H = 128, entry = 576, rank = 512, bs = 64;
  const int max_ctx = *std::max_element(ctxs.begin(), ctxs.end()), max_b = *std::max_element(batches.begin(), batches.end());
  const int64_t n_blocks = static_cast<int64_t>(max_b) * max_ctx / bs;
  fmt::print("\n== perf: mla_decode ({}), H={}, entry={}, block_size={}, {}{} ==\n", label, H, entry, bs,
             env.p_bf16 ? "P in bf16 (DSV3_MLA_P_BF16=1)" : "P split into bf16 hi + lo",
             table_blocks ? fmt::format(", block tables {} wide", table_blocks) : "");
  // At H=128 every KV byte meets 2 * 128 * (576 + 512) / 1152 = 242 FLOPs: the tensor cores' bf16 peak (~989
  // TFLOPS dense, less for mma.sync) caps the KV rate near 4.1 TB/s, so TFLOPS is printed next to the HBM share.
  fmt::print("{:>7} {:>6} {:>10} {:>10} {:>8} {:>8}\n", "context", "batch", "time_us", "KV_GB/s", "%4540", "TFLOPS");
  Rng rng(43);
  Dev d(gpu);
  // The cache: one random chunk, replicated on the device (random data; never zeros).
  const int64_t chunk_blocks = 256;
  Tensor chunk = rand_bf16(rng, {chunk_blocks, bs, entry});
  TensorView dchunk = d.up(chunk, "chunk");
  TensorView cache = d.out(DType::kBF16, {n_blocks, bs, entry}, "cache");
  for (int64_t b = 0; b < n_blocks; b += chunk_blocks) {  // device-to-device replication
    const int64_t cnt = std::min(chunk_blocks, n_blocks - b);
    gpu.copy(cache.rows(b, b + cnt), dchunk.rows(0, cnt));
  }
  gpu.synchronize();
  for (int ctx : ctxs) {
    for (int B : batches) {
      const int mb = ctx / bs, width = std::max(mb, table_blocks);
      std::vector<int32_t> perm = shuffled(rng, static_cast<int>(std::min<int64_t>(n_blocks, INT32_MAX)));
      std::vector<int32_t> table(static_cast<size_t>(B) * width, 0);
      for (int b = 0; b < B; ++b)
        for (int k = 0; k < mb; ++k) table[static_cast<size_t>(b) * width + k] = perm[static_cast<size_t>(b) * mb + k];
      Tensor bt = host_i32({B, width}, table), lens = host_i32({B}, std::vector<int32_t>(static_cast<size_t>(B), ctx));
      Tensor q = rand_bf16(rng, {B, H, entry}, 0.5f);
      Dev io(gpu);
      MlaDecodeParams p{.q_abs = io.up(q, "q"), .cache = cache, .block_table = io.up(bt, "bt"), .seq_lens = io.up(lens, "lens"),
                        .out = io.out(DType::kBF16, {B, H, rank}, "out"), .kv_lora_rank = rank,
                        .softmax_scale = 0.07f};
      const double t = time_it(gpu, [&](int) { gpu.mla_decode(p); });
      const double gbs = static_cast<double>(B) * ctx * entry * 2 / t;
      const double tflops = 2.0 * B * ctx * H * (entry + rank) / t / 1e12;
      fmt::print("{:>7} {:>6} {:>10.1f} {:>10.0f} {:>7.1f}% {:>8.1f}\n", ctx, B, t * 1e6, gbs / 1e9, 100 * gbs / kHbmRead,
                 tflops);
    }
  }
}

// mla_absorb_q / mla_absorb_v at DeepSeek-V3 dims: per decode step each reads its 16.8 MB half of kv_b once. kv_b
// rotates over 5 device copies (168 MB, past the 50 MB L2), as a model's layers do; µs per call of back-to-back
// launches and the weight read as % of 4540 GB/s, for the launcher's choice (auto: slice kernels up to 8 tokens),
// the slice kernels and the token-tile kernels forced (DSV3_MLA_ABSORB=slice|tile).
void perf_absorb(Env& env) {
  const int H = 128, nope = 128, rope = 64, vd = 128, rank = 512, copies = 5;
  const double bytes = H * 128.0 * rank * 2;
  fmt::print("\n== perf: mla_absorb_q / mla_absorb_v, H={}, rank={} (weight {:.1f} MB each, {} copies rotating) ==\n",
             H, rank, bytes / 1e6, copies);
  Rng rng(46);
  Tensor kvb = rand_bf16(rng, {H * (nope + vd), rank}, 0.05f);
  Dev dw(*env.gpu);
  std::vector<TensorView> dkvb{dw.up(kvb, "kv_b")};
  for (int c = 1; c < copies; ++c) {
    dkvb.push_back(dw.out(DType::kBF16, {H * (nope + vd), rank}, "kv_b copy"));
    env.gpu->copy(dkvb.back(), dkvb[0]);
  }
  env.gpu->synchronize();
  struct Variant {
    const char* name;
    Backend* gpu;
  };
  const Variant variants[] = {{"auto", env.gpu}, {"slice", env.gpu_absorb_slice}, {"tile", env.gpu_absorb_tile}};
  for (const char* op : {"mla_absorb_q", "mla_absorb_v"}) {
    fmt::print("{:<13} {:>5}", op, "n");
    for (const Variant& v : variants) fmt::print(" {:>9} {:>7}", fmt::format("{}_us", v.name), "%4540");
    fmt::print("\n");
    for (int n : {1, 2, 4, 8, 16, 32, 128}) {
      Tensor q = rand_bf16(rng, {n, H, nope + rope}), o = rand_bf16(rng, {n, H, rank});
      Dev d(*env.gpu);
      TensorView dq = d.up(q, "q"), dout_q = d.out(DType::kBF16, {n, H, rank + rope}, "q_abs");
      TensorView dlat = d.up(o, "o"), dout_v = d.out(DType::kBF16, {n, H, vd}, "out");
      fmt::print("{:<13} {:>5}", "", n);
      for (const Variant& v : variants) {
        Backend& gpu = *v.gpu;
        const double t = time_it(gpu, [&](int i) {
          const TensorView& w = dkvb[static_cast<size_t>(i % copies)];
          if (std::string(op) == "mla_absorb_q")
            gpu.mla_absorb_q({.q = dq, .kv_b = w, .q_abs = dout_q, .qk_nope_head_dim = nope, .v_head_dim = vd});
          else
            gpu.mla_absorb_v({.o_latent = dlat, .kv_b = w, .out = dout_v, .qk_nope_head_dim = nope, .v_head_dim = vd});
        });
        fmt::print(" {:>9.1f} {:>6.1f}%", t * 1e6, 100 * bytes / t / kHbmRead);
      }
      fmt::print("\n");
    }
  }
}

// Causal prefill attention at H = 128 (DeepSeek-V3): one 4096-token prompt, 8 prompts of 1024 (the v3-slice
// benchmark's batch) and a 1024-token chunk after 3072 cached tokens, on each kernel. FLOPs are counted exactly:
// Σ over queries of the keys it sees (kv_len - q_len + i + 1) x H x 2 x (192 + 128).
void perf_prefill(Env& env) {
  const int H = 128;
  struct Config {
    const char* name;
    std::vector<std::pair<int, int>> seqs;  // (q_len, kv_len)
  };
  const Config configs[] = {{"1 x 4096", {{4096, 4096}}},
                            {"8 x 1024", std::vector<std::pair<int, int>>(8, {1024, 1024})},
                            {"chunk 1024 @ 4096", {{1024, 4096}}}};
  struct Kernel {
    const char* name;
    Backend* gpu;
  };
  const Kernel kernels[] = {{"mma (128 rows)", env.gpu}, {"mma64 (64 rows)", env.gpu_prefill64},
                            {"simple (CUDA cores)", env.gpu_simple}};
  fmt::print("\n== perf: mla_prefill, H={}, nope 128 + rope 64, v 128, causal, {} ==\n", H,
             env.p_bf16 ? "P in bf16 (DSV3_MLA_P_BF16=1)" : "P split into bf16 hi + lo");
  fmt::print("{:<18} {:<20} {:>10} {:>9} {:>7} {:>7}\n", "shape", "kernel", "time_ms", "TFLOPS", "%500", "%810");
  Rng rng(44);
  for (const Config& c : configs) {
    std::vector<int32_t> cq{0}, ck{0};
    double flops = 0;
    for (auto [nq, nk] : c.seqs) {
      cq.push_back(cq.back() + nq), ck.push_back(ck.back() + nk);
      for (int i = 0; i < nq; ++i) flops += static_cast<double>(nk - nq + i + 1) * H * 2 * (192 + 128);
    }
    const int nq = cq.back(), nk = ck.back();
    Tensor q = tiled_bf16(rng, {nq, H, 192}, 1.f), kv = tiled_bf16(rng, {nk, H, 256}, 1.f);
    Tensor kpe = rand_bf16(rng, {nk, 64});
    Tensor tcq = host_i32({static_cast<int64_t>(cq.size())}, cq), tck = host_i32({static_cast<int64_t>(ck.size())}, ck);
    for (const Kernel& k : kernels) {
      Backend& gpu = *k.gpu;
      Dev d(gpu);
      MlaPrefillParams p{.q = d.up(q, "q"), .kv = d.up(kv, "kv"), .k_pe = d.up(kpe, "k_pe"), .cu_q = d.up(tcq, "cu_q"),
                         .cu_kv = d.up(tck, "cu_kv"), .out = d.out(DType::kBF16, {nq, H, 128}, "out"),
                         .qk_nope_head_dim = 128, .v_head_dim = 128, .softmax_scale = 0.07f};
      const double t = time_it(gpu, [&](int) { gpu.mla_prefill(p); });
      const double tflops = flops / t / 1e12;
      fmt::print("{:<18} {:<20} {:>10.3f} {:>9.1f} {:>6.1f}% {:>6.1f}%\n", c.name, k.name, t * 1e3, tflops,
                 100 * tflops / 500, 100 * tflops * 1e12 / kBf16Tflops);
    }
  }
}

}  // namespace dsv3::ops_test
