// deepseek_v3.cpp: layer loop, MLA (naive + absorbed over one paged cache), dense MLP, MoE, head, MTP (model).
#include "dsv3/model/deepseek_v3.h"

#include <algorithm>

#include <fmt/format.h>

#include "dsv3/base/log.h"
#include "dsv3/model/rope.h"

namespace dsv3 {

KvCache::KvCache(int64_t n_layers, int64_t n_blocks, int64_t block_size, int64_t entry, Allocator& alloc)
    : n_layers_(n_layers), n_blocks_(n_blocks), block_size_(block_size), entry_(entry),
      data_(DType::kBF16, {n_layers, n_blocks, block_size, entry}, alloc) {}

TensorView KvCache::layer(int64_t l) const {
  CHECK(l >= 0 && l < n_layers_, "cache layer {} of {}", l, n_layers_);
  TensorView v = data_.view();
  v.data = static_cast<char*>(v.data) + static_cast<size_t>(l * n_blocks_ * block_size_ * entry_) * 2;
  v.shape = {n_blocks_, block_size_, entry_};
  return v;
}

namespace {
// Workspace chunks: large enough that a decode step of the full model fits in one; prefill steps add chunks once.
constexpr size_t kWorkspaceChunk = size_t{256} << 20;

// A view of `shape` starting `elems` elements into `v` (for strided column slices the ops address by stride).
TensorView offset_view(const TensorView& v, int64_t elems, Shape shape) {
  TensorView o = v;
  o.data = static_cast<char*>(v.data) + static_cast<size_t>(elems) * dtype_size(v.dtype);
  o.shape = shape;
  return o;
}
}  // namespace

// Metadata of one step in backend memory (NOTE: decode-form rows come first, see ForwardBatch). Views: into the
// workspace (eager steps) or into graph_meta_ (captured steps).
struct DeepseekV3::StepMeta {
  int64_t n = 0;
  TensorView ids, positions, slots;              // [n] i32
  int64_t n_dec = 0;                             // rows in the absorbed form
  TensorView dec_block_table, dec_seq_lens;      // [n_dec, max_blocks], [n_dec]
  int64_t n_pre_seqs = 0, n_kv = 0;
  TensorView pre_block_table, cu_q, cu_kv;       // [n_pre, max_blocks], [n_pre + 1], [n_pre + 1]
  TensorView logit_rows;                         // [r] i32 rows whose logits the step returns; empty: all n rows
  int64_t n_logits = 0;
};

DeepseekV3::DeepseekV3(const ModelConfig& config, ModelWeights weights, Backend& backend, Numerics numerics)
    : config_(config), weights_(std::move(weights)), backend_(backend), numerics_(numerics),
      ws_(backend.allocator(), kWorkspaceChunk) {
  std::vector<float> f = rope_inv_freq(config_);
  Tensor host = make_host_tensor(DType::kF32, {static_cast<int64_t>(f.size())}, f.data());
  inv_freq_ = Tensor(DType::kF32, host.shape(), backend_.allocator());
  backend_.copy(inv_freq_.view(), host.view());
}

// The returned view lives in the workspace until the step ends (the workspace's deallocate is a no-op, so the
// Tensor owner may die here).
TensorView DeepseekV3::upload_i32(const std::vector<int32_t>& v, Shape shape) {
  if (shape.ndim == 0) shape = {static_cast<int64_t>(v.size())};
  CHECK(shape.numel() == static_cast<int64_t>(v.size()), "upload_i32: {} values for {}", v.size(), shape.str());
  TensorView dev = scratch(DType::kI32, shape).view();
  if (!v.empty()) backend_.copy(dev, TensorView{const_cast<int32_t*>(v.data()), DType::kI32, shape, Device::kCpu});
  return dev;
}

namespace {
// The cache slot (block id x block size + offset) of position p of a sequence; a block id outside the pool is bad
// input from the caller.
int32_t cache_slot(const SeqEntry& s, int32_t p, const KvCache& cache) {
  const int64_t bs = cache.block_size();
  const int32_t blk = s.blocks[p / bs];
  EXPECT(blk >= 0 && blk < cache.n_blocks(), "forward: block id {} outside the pool of {}", blk, cache.n_blocks());
  return static_cast<int32_t>(blk * bs + p % bs);
}

// The (row, index) pairs of b.device_rows, [m * 2] flat, checked: every kPendingTokenId row is filled from
// b.device_tokens, no other row is, none twice, and every index lies inside device_tokens. A placeholder that the
// embedding would read as an id is a bug in the caller (CHECK), not bad input.
std::vector<int32_t> device_token_map(const ForwardBatch& b) {
  const int64_t n = b.n_tokens();
  std::vector<int32_t> map;
  std::vector<char> filled(static_cast<size_t>(n), 0);
  for (const DeviceTokenRow& d : b.device_rows) {
    CHECK(d.row >= 0 && d.row < n && !filled[d.row], "forward: device-token row {} outside the batch of {} or twice",
          d.row, n);
    CHECK(d.index >= 0 && d.index < b.device_tokens.numel(), "forward: device-token index {} outside [0, {})",
          d.index, b.device_tokens.numel());
    filled[d.row] = 1;
    map.push_back(d.row);
    map.push_back(d.index);
  }
  for (int64_t i = 0; i < n; ++i) {
    CHECK((b.token_ids[i] == kPendingTokenId) == (filled[i] != 0),
          "forward: row {} holds id {} and is {}filled from the device (a placeholder must be, and only it)", i,
          b.token_ids[i], filled[i] ? "" : "not ");
  }
  return map;
}

std::vector<int32_t> padded_table(const std::vector<const std::vector<int32_t>*>& rows, int64_t& max_blocks) {
  max_blocks = 1;
  for (auto* r : rows) max_blocks = std::max<int64_t>(max_blocks, static_cast<int64_t>(r->size()));
  std::vector<int32_t> t(rows.size() * static_cast<size_t>(max_blocks), 0);
  for (size_t i = 0; i < rows.size(); ++i) std::copy(rows[i]->begin(), rows[i]->end(), t.begin() + i * max_blocks);
  return t;
}
}  // namespace

DeepseekV3::StepMeta DeepseekV3::build_meta(const ForwardBatch& b, const KvCache& cache) {
  const int64_t n = b.n_tokens(), bs = cache.block_size();
  EXPECT(n > 0, "forward: empty batch");
  StepMeta m;
  m.n = n;
  std::vector<int32_t> pos, slots, dec_lens, cu_q{0}, cu_kv{0};
  std::vector<const std::vector<int32_t>*> dec_rows, pre_rows;
  bool seen_prompt = false;
  for (const auto& s : b.seqs) {
    EXPECT(s.n_tokens > 0 && s.n_cached >= 0, "forward: sequence with {} new tokens after {} cached", s.n_tokens,
           s.n_cached);
    const int64_t total = s.n_cached + s.n_tokens;
    EXPECT(static_cast<int64_t>(s.blocks.size()) * bs >= total, "forward: {} blocks cannot hold {} tokens",
           s.blocks.size(), total);
    CHECK(!(s.absorbed && seen_prompt), "forward: decode-form sequences must precede prompt-form ones");
    seen_prompt |= !s.absorbed;
    for (int32_t i = 0; i < s.n_tokens; ++i) {
      const int32_t p = s.n_cached + i;
      pos.push_back(p);
      slots.push_back(cache_slot(s, p, cache));
      if (s.absorbed) {
        dec_rows.push_back(&s.blocks);
        dec_lens.push_back(p + 1);
      }
    }
    if (!s.absorbed) {
      pre_rows.push_back(&s.blocks);
      cu_q.push_back(cu_q.back() + s.n_tokens);
      cu_kv.push_back(cu_kv.back() + static_cast<int32_t>(total));
    }
  }
  EXPECT(static_cast<int64_t>(pos.size()) == n, "forward: sequences cover {} rows, batch has {}", pos.size(), n);
  const std::vector<int32_t> fill = device_token_map(b);
  m.ids = upload_i32(b.token_ids);
  if (!fill.empty()) {  // ordered after the upload and before the embedding reads the ids
    const int64_t pairs = static_cast<int64_t>(fill.size()) / 2;
    backend_.fill_token_ids({.ids = m.ids, .map = upload_i32(fill, {pairs, 2}), .src = b.device_tokens});
  }
  m.positions = upload_i32(pos);
  m.slots = upload_i32(slots);
  m.n_dec = static_cast<int64_t>(dec_rows.size());
  if (m.n_dec) {
    int64_t mb = 0;
    const std::vector<int32_t> table = padded_table(dec_rows, mb);
    m.dec_block_table = upload_i32(table, {m.n_dec, mb});
    m.dec_seq_lens = upload_i32(dec_lens);
  }
  m.n_pre_seqs = static_cast<int64_t>(pre_rows.size());
  if (m.n_pre_seqs) {
    int64_t mb = 0;
    const std::vector<int32_t> table = padded_table(pre_rows, mb);
    m.pre_block_table = upload_i32(table, {m.n_pre_seqs, mb});
    m.cu_q = upload_i32(cu_q);
    m.cu_kv = upload_i32(cu_kv);
    m.n_kv = cu_kv.back();
  }
  m.n_logits = static_cast<int64_t>(b.logit_rows.size());
  bool all_rows = m.n_logits == n;
  for (int64_t i = 0; i < m.n_logits; ++i) {
    EXPECT(b.logit_rows[i] >= 0 && b.logit_rows[i] < n, "forward: logit row {} outside the batch of {}",
           b.logit_rows[i], n);
    all_rows &= b.logit_rows[i] == i;
  }
  if (m.n_logits && !all_rows) m.logit_rows = upload_i32(b.logit_rows);
  return m;
}

ForwardOutput DeepseekV3::forward(const ForwardBatch& b, KvCache& cache) {
  const ModelConfig& c = config_;
  EXPECT(cache.n_layers() >= c.num_hidden_layers, "forward: cache has {} layers, model {}", cache.n_layers(),
         c.num_hidden_layers);
  if (const int padded = graph_batch_size(b); padded > 0) return forward_graph(b, cache, padded);
  ws_.reset();
  AllocationPurpose why(fmt::format("the activations of a step of {} tokens", b.n_tokens()));
  StepMeta m = build_meta(b, cache);
  ForwardOutput out;
  if (b.want_hidden) out.hidden = Tensor(DType::kBF16, {m.n, c.hidden_size}, backend_.allocator());
  const TensorView logits = body(m, cache, out.hidden.view());
  if (b.logits_on_device) out.device_logits = logits;
  else out.logits = download(logits, {});
  return out;
}

// Embedding, the layers, the final norm and lm_head of one step; returns the [n_logits, vocab] f32 logits (in the
// workspace). The final-normed hidden state goes to hidden_out when given (caller-owned, it outlives the step).
TensorView DeepseekV3::body(const StepMeta& m, KvCache& cache, const TensorView& hidden_out) {
  const ModelConfig& c = config_;
  const int64_t n = m.n, d = c.hidden_size;
  Tensor residual = scratch(DType::kBF16, {n, d}), delta = scratch(DType::kBF16, {n, d});
  backend_.embedding({.ids = m.ids, .table = weights_.embed_tokens, .out = residual});
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) block(weights_.layers[L], L, m, residual, delta, L == 0, cache);
  Tensor hn_tmp;
  if (!hidden_out) hn_tmp = scratch(DType::kBF16, {n, d});
  const TensorView hn = hidden_out ? hidden_out : hn_tmp.view();
  backend_.rms_norm({.x = delta, .residual = residual, .weight = weights_.norm, .out = hn,
                     .eps = static_cast<float>(c.rms_norm_eps)});
  return head(hn, m);
}

void DeepseekV3::block(const LayerWeights& w, int64_t cache_layer, const StepMeta& m, Tensor& residual, Tensor& delta,
                       bool first, KvCache& cache) {
  const int64_t n = m.n, d = config_.hidden_size;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  Workspace::Scope layer_scope(ws_);  // this layer's temporaries die here; residual and delta live outside
  Tensor xn = scratch(DType::kBF16, {n, d});
  if (first) backend_.rms_norm({.x = residual, .weight = w.input_layernorm, .out = xn, .eps = eps});
  else backend_.rms_norm({.x = delta, .residual = residual, .weight = w.input_layernorm, .out = xn, .eps = eps});
  Tensor attn = scratch(DType::kBF16, {n, d});
  attention(w.self_attn, cache_layer, m, xn, attn, cache);
  backend_.rms_norm({.x = attn, .residual = residual, .weight = w.post_attention_layernorm, .out = xn, .eps = eps});
  if (w.moe) moe(w.moe_mlp, xn, delta);
  else mlp(w.mlp, xn, delta);
}

void DeepseekV3::attention(const AttentionWeights& w, int64_t cache_layer, const StepMeta& m, const TensorView& xn,
                           const TensorView& out, KvCache& cache) {
  const ModelConfig& c = config_;
  const int64_t n = m.n, H = c.num_attention_heads, nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim;
  const int64_t qd = nope + rope, vd = c.v_head_dim, rank = c.kv_lora_rank, entry = rank + rope;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const bool ue8m0 = c.quant.scale_fmt_ue8m0;
  // q: [n, H, nope + rope]; kva: [n, kv_lora_rank + rope] -> becomes the cache entry (normalized latent ‖ rotated
  // k_pe) in place.
  Tensor q = scratch(DType::kBF16, {n, H * qd});
  Tensor kva = scratch(DType::kBF16, {n, entry});
  if (c.q_lora_rank > 0) {
    Tensor qa = scratch(DType::kBF16, {n, c.q_lora_rank});
    if (w.q_kv_a.weight) {  // stacked at load: one linear (one weight stream) for both projections of xn
      backend_.linear({.x = xn, .w = w.q_kv_a, .out = qa, .ue8m0 = ue8m0, .out2 = kva});
    } else {
      backend_.linear({.x = xn, .w = w.q_a_proj, .out = qa, .ue8m0 = ue8m0});
      backend_.linear({.x = xn, .w = w.kv_a_proj_with_mqa, .out = kva, .ue8m0 = ue8m0});
    }
    backend_.rms_norm({.x = qa, .weight = w.q_a_layernorm, .out = qa, .eps = eps});
    backend_.linear({.x = qa, .w = w.q_b_proj, .out = q, .ue8m0 = ue8m0});
  } else {
    backend_.linear({.x = xn, .w = w.q_proj, .out = q, .ue8m0 = ue8m0});
    backend_.linear({.x = xn, .w = w.kv_a_proj_with_mqa, .out = kva, .ue8m0 = ue8m0});
  }
  backend_.rope({.x = q.view().reshape({n, H, qd}), .positions = m.positions, .inv_freq = inv_freq_, .offset = nope});
  backend_.rope({.x = kva.view().reshape({n, 1, entry}), .positions = m.positions, .inv_freq = inv_freq_,
                 .offset = rank});
  backend_.rms_norm({.x = kva, .x_stride = entry, .weight = w.kv_a_layernorm, .out = kva, .out_stride = entry,
                     .eps = eps});
  const TensorView layer_cache = cache.layer(cache_layer);
  backend_.kv_cache_store({.kv_new = kva, .cache = layer_cache, .slots = m.slots});

  Tensor o = scratch(DType::kBF16, {n, H * vd});
  const float scale = static_cast<float>(c.softmax_scale());
  if (m.n_dec) {
    const int64_t nd = m.n_dec;
    Tensor q_abs = scratch(DType::kBF16, {nd, H, entry});
    backend_.mla_absorb_q({.q = q.view().rows(0, nd).reshape({nd, H, qd}), .kv_b = w.kv_b_bf16, .q_abs = q_abs,
                           .qk_nope_head_dim = nope, .v_head_dim = vd});
    Tensor o_lat = scratch(DType::kBF16, {nd, H, rank});
    backend_.mla_decode({.q_abs = q_abs, .cache = layer_cache,
                         .block_table = m.dec_block_table,
                         .seq_lens = m.dec_seq_lens, .out = o_lat, .kv_lora_rank = rank, .softmax_scale = scale});
    backend_.mla_absorb_v({.o_latent = o_lat, .kv_b = w.kv_b_bf16, .out = o.view().rows(0, nd).reshape({nd, H, vd}),
                           .qk_nope_head_dim = nope, .v_head_dim = vd});
  }
  if (m.n_pre_seqs) {
    const int64_t nk = m.n_kv, np = n - m.n_dec;
    Tensor latent = scratch(DType::kBF16, {nk, rank}), pe = scratch(DType::kBF16, {nk, rope});
    backend_.kv_cache_gather({.cache = layer_cache,
                              .block_table = m.pre_block_table,
                              .cu_kv = m.cu_kv, .latent_out = latent, .pe_out = pe});
    Tensor kv = scratch(DType::kBF16, {nk, H * (nope + vd)});
    backend_.linear({.x = latent, .w = w.kv_b_proj, .out = kv, .ue8m0 = ue8m0});
    backend_.mla_prefill({.q = q.view().rows(m.n_dec, n).reshape({np, H, qd}),
                          .kv = kv.view().reshape({nk, H, nope + vd}), .k_pe = pe, .cu_q = m.cu_q, .cu_kv = m.cu_kv,
                          .out = o.view().rows(m.n_dec, n).reshape({np, H, vd}), .qk_nope_head_dim = nope,
                          .v_head_dim = vd, .softmax_scale = scale});
  }
  backend_.linear({.x = o, .w = w.o_proj, .out = out, .ue8m0 = ue8m0});
}

void DeepseekV3::mlp(const MlpWeights& w, const TensorView& xn, const TensorView& out) {
  const int64_t n = xn.dim(0), f = w.gate_proj.weight.dim(0);
  const bool ue8m0 = config_.quant.scale_fmt_ue8m0;
  Tensor g = scratch(DType::kBF16, {n, f}), u = scratch(DType::kBF16, {n, f});
  if (w.gate_up.weight) {  // stacked at load (weights.h)
    backend_.linear({.x = xn, .w = w.gate_up, .out = g, .ue8m0 = ue8m0, .out2 = u});
  } else {
    backend_.linear({.x = xn, .w = w.gate_proj, .out = g, .ue8m0 = ue8m0});
    backend_.linear({.x = xn, .w = w.up_proj, .out = u, .ue8m0 = ue8m0});
  }
  backend_.silu_mul({.gate = g, .up = u, .out = g});
  backend_.linear({.x = g, .w = w.down_proj, .out = out, .ue8m0 = ue8m0});
}

void DeepseekV3::moe(const MoeWeights& w, const TensorView& xn, const TensorView& out) {
  const ModelConfig& c = config_;
  const int64_t n = xn.dim(0), k = c.num_experts_per_tok;
  Tensor ids = scratch(DType::kI32, {n, k}), wts = scratch(DType::kF32, {n, k});
  RouterParams rp{.x = xn, .gate = w.gate, .bias = w.e_score_correction_bias, .topk_ids = ids, .topk_weights = wts};
  rp.scoring = c.scoring_func == ScoringFunc::kSigmoid ? RouterScoring::kSigmoid : RouterScoring::kSoftmax;
  rp.method = c.topk_method == TopkMethod::kNoauxTc ? RouterTopk::kNoauxTc
              : c.topk_method == TopkMethod::kGreedy ? RouterTopk::kGreedy
                                                      : RouterTopk::kGroupLimitedGreedy;
  rp.n_group = c.n_group;
  rp.topk_group = c.topk_group;
  rp.top_k = k;
  rp.norm_topk_prob = c.norm_topk_prob;
  rp.routed_scaling_factor = static_cast<float>(c.routed_scaling_factor);
  backend_.router(rp);
  if (!w.has_shared) {
    backend_.moe_experts({.x = xn, .topk_ids = ids, .topk_weights = wts, .experts = w.experts.data(),
                          .n_experts = static_cast<int64_t>(w.experts.size()), .out = out,
                          .ue8m0 = c.quant.scale_fmt_ue8m0});
    return;
  }
  Tensor routed = scratch(DType::kBF16, {n, c.hidden_size}), shared = scratch(DType::kBF16, {n, c.hidden_size});
  backend_.moe_experts({.x = xn, .topk_ids = ids, .topk_weights = wts, .experts = w.experts.data(),
                        .n_experts = static_cast<int64_t>(w.experts.size()), .out = routed,
                        .ue8m0 = c.quant.scale_fmt_ue8m0});
  mlp(w.shared_experts, xn, shared);
  // NOTE: the shared output is added after the routed sum's bf16 rounding (as HF transformers), model-spec §4.3.
  backend_.add({.a = routed, .b = shared, .out = out});
}

// lm_head over the rows whose logits the step returns (gathered by the embedding op, a bounds-checked row gather).
TensorView DeepseekV3::head(const TensorView& hn, const StepMeta& m) {
  const int64_t r = m.n_logits, d = config_.hidden_size, vocab = config_.vocab_size;
  if (r == 0) return {};
  TensorView x = hn;
  if (m.logit_rows) {
    x = scratch(DType::kBF16, {r, d}).view();
    backend_.embedding({.ids = m.logit_rows, .table = hn, .out = x});
  }
  TensorView out = scratch(DType::kF32, {r, vocab}).view();
  backend_.linear({.x = x, .w = weights_.lm_head, .out = out});
  return out;
}

// Copies logits rows to the host (rows: which rows of `logits`, in order; empty: all) and waits for them.
std::vector<float> DeepseekV3::download(const TensorView& logits, const std::vector<int32_t>& rows) {
  std::vector<float> host;
  if (!logits) return host;
  const int64_t vocab = logits.dim(1);
  const int64_t r = rows.empty() ? logits.dim(0) : static_cast<int64_t>(rows.size());
  host.resize(static_cast<size_t>(r * vocab));
  int64_t i = 0;
  while (i < r) {  // runs of consecutive rows as one copy
    const int64_t first = rows.empty() ? i : rows[i];
    int64_t len = 1;
    while (i + len < r && (rows.empty() || rows[i + len] == first + len)) ++len;
    backend_.copy(TensorView{host.data() + i * vocab, DType::kF32, {len, vocab}, Device::kCpu},
                  logits.rows(first, first + len));
    i += len;
  }
  backend_.synchronize();
  return host;
}

ForwardOutput DeepseekV3::forward_mtp(const ForwardBatch& b, const TensorView& hidden_prev, KvCache& cache) {
  EXPECT(weights_.mtp.has_value(), "this checkpoint has no MTP layer");
  const ModelConfig& c = config_;
  const MtpWeights& mw = *weights_.mtp;
  const int64_t n = b.n_tokens(), d = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  EXPECT(hidden_prev.dim(0) == n && hidden_prev.dim(1) == d, "forward_mtp: hidden {} for {} rows",
         hidden_prev.shape.str(), n);
  EXPECT(cache.n_layers() > c.num_hidden_layers, "forward_mtp: the cache has no MTP layer");
  // hidden_prev is the caller's (owned, outside the workspace), so rewinding cannot clobber it.
  ws_.reset();
  AllocationPurpose why(fmt::format("the MTP activations of a step of {} tokens", n));
  StepMeta m = build_meta(b, cache);
  // u = eh_proj(concat(enorm(Emb(t_{p+1})), hnorm(h_p))): embedding first, hidden second (model-spec §6.1).
  Tensor e = scratch(DType::kBF16, {n, d}), cat = scratch(DType::kBF16, {n, 2 * d});
  backend_.embedding({.ids = m.ids, .table = weights_.embed_tokens, .out = e});
  backend_.rms_norm({.x = e, .weight = mw.enorm, .out = cat, .out_stride = 2 * d, .eps = eps});
  backend_.rms_norm({.x = hidden_prev, .weight = mw.hnorm, .out = offset_view(cat, d, {n, d}), .out_stride = 2 * d,
                     .eps = eps});
  Tensor residual = scratch(DType::kBF16, {n, d}), delta = scratch(DType::kBF16, {n, d});
  backend_.linear({.x = cat, .w = mw.eh_proj, .out = residual});
  block(mw.block, c.num_hidden_layers, m, residual, delta, true, cache);
  ForwardOutput out;
  Tensor hn = b.want_hidden ? Tensor(DType::kBF16, {n, d}, backend_.allocator()) : scratch(DType::kBF16, {n, d});
  backend_.rms_norm({.x = delta, .residual = residual, .weight = mw.shared_head_norm, .out = hn, .eps = eps});
  const TensorView logits = head(hn, m);
  if (b.logits_on_device) out.device_logits = logits;
  else out.logits = download(logits, {});
  if (b.want_hidden) out.hidden = std::move(hn);
  return out;
}

// ----------------------------------------------------------------------------------------------- CUDA graphs

void DeepseekV3::set_cuda_graphs(const CudaGraphOptions& o) {
  graphs_.clear();
  graph_meta_ = Tensor();
  graph_opt_ = CudaGraphOptions{};
  if (o.batch_sizes.empty() || backend_.host_visible()) return;  // host backends record nothing
  EXPECT(std::is_sorted(o.batch_sizes.begin(), o.batch_sizes.end()) && o.batch_sizes.front() >= 1,
         "cuda graph batch sizes must be ascending and >= 1");
  EXPECT(o.max_blocks_per_seq >= 1, "cuda graphs: max_blocks_per_seq {} < 1", o.max_blocks_per_seq);
  graph_opt_ = o;
  graphs_.resize(o.batch_sizes.size());
  const int64_t bmax = o.batch_sizes.back();
  // Layout: ids | positions | slots | seq_lens (bmax each) | device-token pairs [bmax, 2] | block table
  // [bmax, max_blocks_per_seq].
  graph_meta_ = Tensor(DType::kI32, {6 * bmax + bmax * o.max_blocks_per_seq}, backend_.allocator());
  graph_meta_host_.assign(static_cast<size_t>(graph_meta_.view().numel()), 0);
}

// The captured size a batch runs at, or 0 when it runs eagerly: decode-only (one absorbed token per sequence),
// no hidden states wanted, every block table within the captured width.
int DeepseekV3::graph_batch_size(const ForwardBatch& b) const {
  if (graphs_.empty() || b.want_hidden) return 0;
  const int64_t n = b.n_tokens();
  if (static_cast<int64_t>(b.seqs.size()) != n) return 0;
  for (const SeqEntry& s : b.seqs)
    if (!s.absorbed || s.n_tokens != 1 || static_cast<int64_t>(s.blocks.size()) > graph_opt_.max_blocks_per_seq)
      return 0;
  for (int size : graph_opt_.batch_sizes) {
    if (size == n) return size;
    if (size > n) return graph_opt_.padding && graph_opt_.pad_block >= 0 ? size : 0;
  }
  return 0;
}

ForwardOutput DeepseekV3::forward_graph(const ForwardBatch& b, KvCache& cache, int padded) {
  const int64_t n = b.n_tokens(), bmax = graph_opt_.batch_sizes.back(), mb = graph_opt_.max_blocks_per_seq;
  const int64_t bs = cache.block_size();
  EXPECT(!b.logit_rows.empty(), "forward: a decode step without logit rows");
  // Static metadata: real rows first, then padding rows (token 0 at position 0 in the pad block, one visible key).
  std::vector<int32_t>& h = graph_meta_host_;
  int32_t* ids = h.data();
  int32_t* pos = ids + bmax;
  int32_t* slots = pos + bmax;
  int32_t* lens = slots + bmax;
  int32_t* fill = lens + bmax;
  int32_t* table = fill + 2 * bmax;
  const std::vector<int32_t> fill_map = device_token_map(b);
  std::copy(fill_map.begin(), fill_map.end(), fill);
  for (int64_t i = 0; i < padded; ++i) {
    int32_t* row = table + i * mb;
    if (i < n) {
      const SeqEntry& s = b.seqs[i];
      const int32_t p = s.n_cached;
      ids[i] = b.token_ids[i];
      pos[i] = p;
      slots[i] = cache_slot(s, p, cache);
      lens[i] = p + 1;
      std::copy(s.blocks.begin(), s.blocks.end(), row);
    } else {
      ids[i] = 0;
      pos[i] = 0;
      slots[i] = static_cast<int32_t>(graph_opt_.pad_block * bs);
      lens[i] = 1;
      row[0] = graph_opt_.pad_block;
    }
  }
  // One copy: the four vectors and the pairs whole, the table's first `padded` rows.
  const int64_t words = 6 * bmax + padded * mb;
  backend_.copy(graph_meta_.view().rows(0, words), TensorView{h.data(), DType::kI32, {words}, Device::kCpu});
  const TensorView meta = graph_meta_.view();
  if (!fill_map.empty()) {
    // The captured step reads its ids from the static buffer: fill it on the stream, before the replay (or the
    // eager run of a first step of this size).
    const int64_t pairs = static_cast<int64_t>(fill_map.size()) / 2;
    backend_.fill_token_ids({.ids = meta.rows(0, padded),
                             .map = meta.rows(4 * bmax, 4 * bmax + 2 * pairs).reshape({pairs, 2}),
                             .src = b.device_tokens});
  }
  StepMeta m;
  m.n = m.n_dec = m.n_logits = padded;
  m.ids = meta.rows(0, padded);
  m.positions = meta.rows(bmax, bmax + padded);
  m.slots = meta.rows(2 * bmax, 2 * bmax + padded);
  m.dec_seq_lens = meta.rows(3 * bmax, 3 * bmax + padded);
  m.dec_block_table = meta.rows(6 * bmax, 6 * bmax + padded * mb).reshape({padded, mb});

  const size_t slot_i = static_cast<size_t>(
      std::find(graph_opt_.batch_sizes.begin(), graph_opt_.batch_sizes.end(), padded) - graph_opt_.batch_sizes.begin());
  GraphSlot& g = graphs_.at(slot_i);
  TensorView logits;
  if (g.graph) {
    g.graph->replay();
    logits = g.logits;
    ++graph_stats_.replays;
  } else {
    // The eager run computes this step (and sizes every buffer); a first step of this size then records the same
    // sequence of ops, which lands at the same workspace addresses.
    ws_.reset();
    logits = body(m, cache, {});
    if (!g.tried) {
      g.tried = true;
      g.logits = logits;
      g.graph = backend_.capture([&] {
        ws_.reset();
        const TensorView again = body(m, cache, {});
        CHECK(again.data == g.logits.data, "cuda graph: the recorded step's logits moved in the workspace");
      });
      if (g.graph) {
        ++graph_stats_.captures;
        log_info("CUDA graph captured for decode steps of {} rows ({} real)", padded, n);
      } else {
        ++graph_stats_.refused;
        log_warn("decode steps of {} rows run without a CUDA graph (the backend refused the capture)", padded);
      }
    }
  }
  ForwardOutput out;
  bool prefix = true;  // the usual case: every row's logits, in order
  for (size_t i = 0; i < b.logit_rows.size(); ++i) prefix &= b.logit_rows[i] == static_cast<int32_t>(i);
  if (b.logits_on_device && prefix) {
    out.device_logits = logits.rows(0, static_cast<int64_t>(b.logit_rows.size()));
  } else if (b.logits_on_device) {
    // Not the workspace: after a replay its top may sit below the graph's logits.
    const int64_t r = static_cast<int64_t>(b.logit_rows.size());
    if (graph_sel_.view().numel() < r * logits.dim(1))
      graph_sel_ = Tensor(DType::kF32, {r, logits.dim(1)}, backend_.allocator());
    const TensorView sel = graph_sel_.view().rows(0, r);
    for (size_t i = 0; i < b.logit_rows.size(); ++i)
      backend_.copy(sel.rows(i, i + 1), logits.rows(b.logit_rows[i], b.logit_rows[i] + 1));
    out.device_logits = sel;
  } else {
    out.logits = download(logits, b.logit_rows);
  }
  return out;
}

}  // namespace dsv3
