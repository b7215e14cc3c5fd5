// memory_plan.cpp: weight bytes from the config, the step workspace from the forward pass, the KV pool rule (engine).
#include "dsv3/engine/memory_plan.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "dsv3/base/error.h"

namespace dsv3 {
namespace {

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t v, int64_t a) { return cdiv(v, a) * a; }
double gb(int64_t bytes) { return static_cast<double>(bytes) / 1e9; }

int64_t sum(const std::vector<PlanItem>& items) {
  int64_t s = 0;
  for (const auto& i : items) s += i.bytes;
  return s;
}

bool any_dense_layer(const ModelConfig& c, int64_t n_layers) {
  for (int64_t L = 0; L < n_layers; ++L)
    if (!c.is_moe_layer(L)) return true;
  return false;
}
bool any_moe_layer(const ModelConfig& c, int64_t n_layers) {
  for (int64_t L = 0; L < n_layers; ++L)
    if (c.is_moe_layer(L)) return true;
  return false;
}

// Bytes of the weights of one layer, as Loader::layer (model/weights.cpp) places them.
struct LayerBytes {
  int64_t attention = 0, kv_b_copy = 0, norms = 0, dense = 0, router = 0, routed = 0, shared = 0;
  int64_t total() const { return attention + kv_b_copy + norms + dense + router + routed + shared; }
};

}  // namespace

std::vector<PlanItem> plan_weight_bytes(const ModelConfig& c, const MemoryPlanOptions& o) {
  const bool fp8 = o.fp8_checkpoint && o.numerics == Numerics::kFp8;
  // A linear [out, in]: FP8 codes + fp32 128x128 block scales; bf16 when the checkpoint is bf16 or bf16 numerics
  // dequantize it at load (model-spec §5.2).
  auto linear = [&](int64_t out, int64_t in) { return fp8 ? out * in + cdiv(out, 128) * cdiv(in, 128) * 4 : out * in * 2; };
  auto norm = [](int64_t n) { return n * 2; };
  const int64_t d = c.hidden_size, H = c.num_attention_heads;
  auto layer = [&](int64_t L) {
    LayerBytes b;
    b.norms = 2 * norm(d);  // input_layernorm, post_attention_layernorm
    if (c.q_lora_rank > 0)
      b.attention += linear(c.q_lora_rank, d) + norm(c.q_lora_rank) + linear(H * c.qk_head_dim(), c.q_lora_rank);
    else
      b.attention += linear(H * c.qk_head_dim(), d);
    const int64_t kvb_out = H * (c.qk_nope_head_dim + c.v_head_dim);
    b.attention += linear(c.kv_lora_rank + c.qk_rope_head_dim, d) + norm(c.kv_lora_rank) +
                   linear(kvb_out, c.kv_lora_rank) + linear(d, H * c.v_head_dim);
    // The absorbed decode reads kv_b_proj as bf16: an FP8 checkpoint run in FP8 keeps a dequantized copy too.
    if (fp8) b.kv_b_copy = kvb_out * c.kv_lora_rank * 2;
    if (c.is_moe_layer(L)) {
      b.router = c.n_routed_experts * d * 2 + (c.topk_method == TopkMethod::kNoauxTc ? c.n_routed_experts * 4 : 0);
      const int64_t f = c.moe_intermediate_size;
      b.routed = c.n_routed_experts * (2 * linear(f, d) + linear(d, f));
      if (c.n_shared_experts > 0) {
        const int64_t fs = c.n_shared_experts * f;
        b.shared = 2 * linear(fs, d) + linear(d, fs);
      }
    } else {
      const int64_t f = c.intermediate_size;
      b.dense = 2 * linear(f, d) + linear(d, f);
    }
    return b;
  };
  LayerBytes main;
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) {
    const LayerBytes b = layer(L);
    main.attention += b.attention, main.kv_b_copy += b.kv_b_copy, main.norms += b.norms, main.dense += b.dense;
    main.router += b.router, main.routed += b.routed, main.shared += b.shared;
  }
  std::vector<PlanItem> v;
  auto add = [&](const char* name, int64_t bytes, std::string note = {}) {
    if (bytes > 0) v.push_back({name, bytes, std::move(note)});
  };
  add("embedding", c.vocab_size * d * 2, "bf16");
  add("attention", main.attention, fp8 ? "FP8 + scales, bf16 norms" : "bf16");
  add("kv_b_proj bf16 copies", main.kv_b_copy, "absorbed decode");
  add("dense MLP", main.dense, fp8 ? "FP8 + scales" : "bf16");
  add("router", main.router, "bf16 gate, fp32 bias");
  add("routed experts", main.routed, fmt::format("{} per MoE layer", c.n_routed_experts));
  add("shared experts", main.shared);
  add("norms", main.norms + norm(d), "layer + final RMSNorm weights");
  add("lm_head", c.vocab_size * d * 2, "bf16");
  if (o.mtp && c.num_nextn_predict_layers > 0) {
    // The loader takes the first MTP layer: enorm, hnorm, shared_head.norm, eh_proj [d, 2d] bf16, one block (its
    // embed_tokens / shared_head.head copies are never loaded: model-spec §6.2).
    const int64_t mtp = 3 * norm(d) + d * 2 * d * 2 + layer(c.num_hidden_layers).total();
    add("MTP layer", mtp, "layer " + std::to_string(c.num_hidden_layers));
  }
  return v;
}

std::vector<PlanItem> plan_workspace_bytes(const ModelConfig& c, const MemoryPlanOptions& o) {
  // Shapes of one step (model/deepseek_v3.cpp, backend/cuda/cuda_backend.cpp). Every count is in bytes.
  const int64_t n = o.max_num_tokens;                         // rows of the step
  const int64_t d = c.hidden_size, H = c.num_attention_heads, V = c.vocab_size;
  const int64_t nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim, vd = c.v_head_dim, rank = c.kv_lora_rank;
  const int64_t qd = nope + rope, entry = rank + rope, k = c.num_experts_per_tok;
  const int64_t max_seq = o.max_seq_len > 0 ? o.max_seq_len : c.max_position_embeddings;
  const int64_t mb = cdiv(max_seq, o.tokens_per_block);      // block-table width
  // Prefill-form context of the step: the new tokens, plus with chunked prefill the cached prefix of a prompt whose
  // later chunk runs now (up to max_seq_len). NOTE: prefix-cache hits add cached context too; a step beyond this
  // estimate fails its requests with the out-of-memory error, it does not crash.
  const int64_t n_kv = n + (o.enable_chunked_prefill ? max_seq : 0);
  const int64_t r = std::min(n, o.max_batch_size);            // rows that need logits: at most one per request
  const int64_t n_layers = c.num_hidden_layers + (o.mtp ? 1 : 0);
  const bool dense = any_dense_layer(c, n_layers), moe = any_moe_layer(c, n_layers);
  const int64_t f_dense = dense ? c.intermediate_size : 0;
  const int64_t f_shared = moe ? c.n_shared_experts * c.moe_intermediate_size : 0;

  // --- Model activations: Tensors of DeepseekV3::forward, allocated per step and freed at scope end.
  // Step metadata: ids, positions, slots [n] i32; block tables [<= n rows, mb] i32 (decode rows + prefill
  // sequences); seq_lens [n]; cu_q, cu_kv [n + 1].
  const int64_t meta = 3 * n * 4 + n * mb * 4 + n * 4 + 2 * (n + 1) * 4;
  // The residual stream: residual, delta [n, d] bf16, live for the whole step. forward_mtp also holds the main
  // model's hidden [n, d], e [n, d] and cat [n, 2d].
  const int64_t stream = 2 * n * d * 2 + (o.mtp ? 4 * n * d * 2 : 0);
  // A layer's input / output: xn, attn [n, d] bf16 (block()).
  const int64_t layer_io = 2 * n * d * 2;
  // Attention (attention()): q [n, H·qd]; then kva [n, entry] and o [n, H·vd], plus the larger of
  //   decode form, every row absorbed (recomputed requests run their generated positions so):
  //     q_abs [n, H, entry] + o_lat [n, H, rank]
  //   prefill form: latent [n_kv, rank] + pe [n_kv, rope] + kv [n_kv, H·(nope + vd)] (kv_b_proj of the context).
  // Before kva exists, qa [n, q_lora_rank] lives next to q.
  const int64_t attn_decode = n * H * entry * 2 + n * H * rank * 2;
  const int64_t attn_prefill = n_kv * rank * 2 + n_kv * rope * 2 + n_kv * H * (nope + vd) * 2;
  const int64_t attention = n * H * qd * 2 + std::max(n * c.q_lora_rank * 2,
                                                      n * entry * 2 + n * H * vd * 2 + std::max(attn_decode, attn_prefill));
  // FFN: dense MLP g, u [n, f_dense]; MoE ids [n, k] i32 + weights [n, k] f32, then routed, shared [n, d] and the
  // shared expert's g, u [n, f_shared] (the routed experts' buffers are backend scratch, below).
  const int64_t ffn_dense = dense ? 2 * n * f_dense * 2 : 0;
  const int64_t ffn_moe = moe ? n * k * 4 * 2 + (f_shared > 0 ? 2 * n * d * 2 + 2 * n * f_shared * 2 : 0) : 0;
  const int64_t layer_phase = layer_io + std::max({attention, ffn_dense, ffn_moe});
  // Head: hn [n, d], sel [r, d] bf16, logits [r, vocab] f32.
  const int64_t head_phase = n * d * 2 + r * d * 2 + r * V * 4;
  const int64_t activations = meta + stream + std::max(layer_phase, head_phase);
  const char* peak = layer_phase >= head_phase
                         ? (attention >= std::max(ffn_dense, ffn_moe)
                                ? (attn_decode >= attn_prefill ? "attention, decode form" : "attention, prefill form")
                                : (ffn_dense >= ffn_moe ? "dense MLP" : "MoE"))
                         : "lm_head logits";

  // --- Backend scratch (CudaBackend::scratch): grown on demand to 1.25x the request, rounded up to 1 MB, kept.
  auto grown = [](int64_t b) { return b > 0 ? round_up(b + b / 4, 1 << 20) : 0; };
  // FP8 activation codes [rows, k] u8 and scales [k/128, rows] f32 of the FP8 linears: the largest rows x k —
  // n rows over k = hidden, q_lora_rank, H·v (o_proj), the dense / shared / routed down_proj widths; n_kv rows over
  // k = kv_lora_rank (kv_b_proj of the prefill context). bf16 weights quantize nothing.
  int64_t codes = 0, scales = 0;
  if (o.fp8_checkpoint && o.numerics == Numerics::kFp8) {
    const std::pair<int64_t, int64_t> gemms[] = {{n, d},       {n, c.q_lora_rank},           {n, H * vd},
                                                 {n, f_dense}, {n, f_shared},                {n, moe ? c.moe_intermediate_size : 0},
                                                 {n_kv, rank}};
    for (const auto& [rows, kk] : gemms) {
      codes = std::max(codes, rows * kk);
      scales = std::max(scales, rows * cdiv(kk, 128) * 4);
    }
  }
  // MoE permutation buffers (moe_experts), entries = n·top_k: counts/offsets/cursor [E] + row_of [entries] i32;
  // x_perm, y_perm [entries, d] bf16; g, u [entries, moe_intermediate_size] bf16 (256-byte aligned parts).
  int64_t moe_buf = 0;
  if (moe) {
    const int64_t entries = n * k;
    moe_buf = round_up((3 * c.n_routed_experts + entries) * 4, 256) + 2 * round_up(entries * d * 2, 256) +
              2 * round_up(entries * c.moe_intermediate_size * 2, 256);
  }
  // MLA decode split-K partials (mla_decode): rows x splits x H x (rank + 2) f32, splits as mla_decode_splits picks
  // them (NOTE: mirrors CudaBackend::mla_decode_splits, WMMA head groups of 32: the larger case).
  int64_t decode_parts = 0;
  {
    const int64_t hg = cdiv(H, 32), chunks = std::max<int64_t>(1, cdiv(mb * o.tokens_per_block, 128));
    for (int64_t rows = 1; rows <= std::min<int64_t>(n, 264); ++rows) {
      const int64_t unit = std::max<int64_t>(1, rows * hg);
      const int64_t want = std::clamp<int64_t>(cdiv(264, unit), 1, std::min<int64_t>(chunks, 64));
      const int64_t per = cdiv(chunks, want), splits = cdiv(chunks, per);
      if (splits > 1)
        decode_parts = std::max(decode_parts, round_up(rows * splits * H * rank * 4, 256) + rows * splits * H * 2 * 4);
    }
  }
  std::vector<PlanItem> v;
  v.push_back({"activations", activations,
               fmt::format("peak: {}; {} tokens, prefill context {}", peak, n, n_kv)});
  if (codes) v.push_back({"FP8 activation codes", grown(codes), "+ 25% growth headroom"});
  if (scales) v.push_back({"FP8 activation scales", grown(scales), "+ 25% growth headroom"});
  if (moe_buf) v.push_back({"MoE permutation buffers", grown(moe_buf), fmt::format("{} x top-{} rows", n, k)});
  if (decode_parts) v.push_back({"MLA decode partials", grown(decode_parts), "split-K"});
  return v;
}

MemoryPlan plan_memory(const ModelConfig& c, const MemoryPlanOptions& o, const DeviceMemory& dev) {
  EXPECT(o.max_num_tokens > 0 && o.max_batch_size > 0, "max_num_tokens ({}) and max_batch_size ({}) must be > 0",
         o.max_num_tokens, o.max_batch_size);
  EXPECT(o.tokens_per_block > 0, "tokens_per_block must be > 0, got {}", o.tokens_per_block);
  EXPECT(o.max_seq_len >= 0 && o.kv_max_tokens >= 0, "max_seq_len ({}) and kv_cache_config.max_tokens ({}) must be >= 0",
         o.max_seq_len, o.kv_max_tokens);
  EXPECT(o.kv_free_gpu_mem_fraction > 0 && o.kv_free_gpu_mem_fraction < 1,
         "kv_cache_config.free_gpu_memory_fraction must be in (0, 1), got {}", o.kv_free_gpu_mem_fraction);
  MemoryPlan p;
  p.options = o;
  p.device = dev;
  p.weights = plan_weight_bytes(c, o);
  p.workspace = plan_workspace_bytes(c, o);
  p.weight_bytes = sum(p.weights);
  p.workspace_bytes = sum(p.workspace);
  const bool measured = dev.free_after_weights >= 0;
  p.free_after_weights = measured ? dev.free_after_weights : dev.free - p.weight_bytes;
  p.weights_used = measured ? dev.free - dev.free_after_weights : p.weight_bytes;
  p.free_for_kv = p.free_after_weights - p.workspace_bytes - p.graph_bytes;

  p.max_seq_len = o.max_seq_len > 0 ? o.max_seq_len : c.max_position_embeddings;
  const int64_t bs = o.tokens_per_block;
  p.blocks_per_seq = cdiv(p.max_seq_len, bs);
  p.n_cache_layers = c.num_hidden_layers + (o.mtp && c.num_nextn_predict_layers > 0 ? 1 : 0);
  p.kv_bytes_per_token = p.n_cache_layers * c.kv_entry_dim() * 2;  // bf16 latent ‖ k_pe per cache layer
  p.kv_block_bytes = p.kv_bytes_per_token * bs;
  // TensorRT-LLM's rule: free_gpu_memory_fraction of what is free, and max_tokens too when set: the smaller wins.
  const double budget = p.free_for_kv > 0 ? std::floor(o.kv_free_gpu_mem_fraction * static_cast<double>(p.free_for_kv)) : 0;
  p.kv_blocks_by_memory = static_cast<int64_t>(budget) / p.kv_block_bytes;
  p.kv_blocks = p.kv_blocks_by_memory;
  p.kv_limited_by = "free_gpu_memory_fraction";
  if (o.kv_max_tokens > 0) {
    p.kv_blocks_by_max_tokens = cdiv(o.kv_max_tokens, bs);
    if (p.kv_blocks_by_max_tokens < p.kv_blocks) {
      p.kv_blocks = p.kv_blocks_by_max_tokens;
      p.kv_limited_by = "max_tokens";
    }
  }
  // Never more than every request could use at once (+1: the scheduler keeps one block spare).
  const int64_t cap = o.max_batch_size * p.blocks_per_seq + 1;
  if (cap < p.kv_blocks) {
    p.kv_blocks = cap;
    p.kv_limited_by = "max_batch_size x max_seq_len";
  }
  p.kv_tokens = p.kv_blocks * bs;
  p.kv_bytes = p.kv_blocks * p.kv_block_bytes;
  p.max_concurrent_seqs = p.kv_blocks / p.blocks_per_seq;

  if (p.free_for_kv < 0) {
    p.error = fmt::format("out of GPU memory: weights {:.2f} GB + workspace {:.2f} GB + graphs {:.2f} GB exceed the "
                          "{:.2f} GB free of {:.2f} GB (the workspace is sized for max_num_tokens {})",
                          gb(p.weights_used), gb(p.workspace_bytes), gb(p.graph_bytes), gb(dev.free), gb(dev.total),
                          o.max_num_tokens);
  } else if (p.kv_blocks < 1) {
    p.error = fmt::format("out of GPU memory: weights {:.2f} GB + workspace {:.2f} GB + graphs {:.2f} GB leave "
                          "{:.2f} GB of the {:.2f} GB free, and {:.0f}% of it holds no KV block of {} tokens "
                          "({} bytes)",
                          gb(p.weights_used), gb(p.workspace_bytes), gb(p.graph_bytes), gb(p.free_for_kv),
                          gb(dev.free), o.kv_free_gpu_mem_fraction * 100, bs, p.kv_block_bytes);
  }
  return p;
}

void expect_fits(const MemoryPlan& plan) {
  if (!plan.fits()) FAIL("{}", plan.error);
}

std::string format_memory_plan(const MemoryPlan& p, bool details) {
  std::string s;
  auto line = [&](const std::string& name, int64_t bytes, const std::string& note) {
    s += fmt::format("  {:<26}{:>9.2f} GB{}{}\n", name, gb(bytes), note.empty() ? "" : "  ", note);
  };
  const MemoryPlanOptions& o = p.options;
  line("GPU memory", p.device.total, "total");
  line("free at start", p.device.free, "before the weights");
  const bool measured = p.device.free_after_weights >= 0;
  line("weights", p.weights_used,
       fmt::format("{} numerics{}{}", o.numerics == Numerics::kFp8 ? "fp8" : "bf16", o.mtp ? ", MTP layer" : "",
                   measured ? fmt::format("; measured, planned {:.2f} GB", gb(p.weight_bytes)) : ""));
  if (details)
    for (const auto& i : p.weights) line("  " + i.name, i.bytes, i.note);
  line("workspace", p.workspace_bytes, fmt::format("peak of one step of {} tokens", o.max_num_tokens));
  if (details)
    for (const auto& i : p.workspace) line("  " + i.name, i.bytes, i.note);
  line("CUDA graphs", p.graph_bytes, "fixed reserve");
  line("free for KV cache", p.free_for_kv, "after weights, workspace and graphs");
  line("KV cache", p.kv_bytes,
       fmt::format("{:.0f}% of it{}; limited by {}", o.kv_free_gpu_mem_fraction * 100,
                   o.kv_max_tokens > 0 ? fmt::format(", max_tokens {}", o.kv_max_tokens) : "", p.kv_limited_by));
  s += fmt::format("  {:<26}{:>9}    {} blocks of {} tokens, {} bytes per token ({} cache layers)\n", "KV tokens",
                   p.kv_tokens, p.kv_blocks, o.tokens_per_block, p.kv_bytes_per_token, p.n_cache_layers);
  s += fmt::format("  {:<26}{:>9}    of max_seq_len {} ({} blocks each)\n", "max concurrent sequences",
                   p.max_concurrent_seqs, p.max_seq_len, p.blocks_per_seq);
  return s;
}

}  // namespace dsv3
