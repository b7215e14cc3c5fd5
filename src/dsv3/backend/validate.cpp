// validate.cpp: host-side Params checks shared by all backends (backend). Throws dsv3::Error naming op and field.
#include "dsv3/backend/backend.h"

#include <cmath>

namespace dsv3 {

void validate(const LinearParams& p) {
  const int64_t k = p.w.weight.dim(1), m = p.w.weight.dim(0);
  EXPECT(p.x.dtype == DType::kBF16, "linear: x must be bf16, got {}", dtype_name(p.x.dtype));
  EXPECT(p.x.shape.ndim == 2, "linear: x must be 2-D, got {}", p.x.shape.str());
  EXPECT(p.x.dim(1) == k, "linear: x {} does not match weight {}", p.x.shape.str(), p.w.weight.shape.str());
  EXPECT(p.x_stride == 0 || p.x_stride >= k, "linear: x_stride {} < k {}", p.x_stride, k);
  if (p.out2) {
    EXPECT(p.out.shape.ndim == 2 && p.out2.shape.ndim == 2 && p.out.dim(0) == p.x.dim(0) &&
               p.out2.dim(0) == p.x.dim(0) && p.out.dim(1) > 0 && p.out2.dim(1) > 0 && p.out.dim(1) + p.out2.dim(1) == m,
           "linear: out {} + out2 {} for x {} and stacked w {}", p.out.shape.str(), p.out2.shape.str(),
           p.x.shape.str(), p.w.weight.shape.str());
    EXPECT(p.out2.dtype == p.out.dtype, "linear: out2 dtype {} differs from out's {}", dtype_name(p.out2.dtype),
           dtype_name(p.out.dtype));
    EXPECT(!p.w.fp8() || p.out.dim(1) % 128 == 0, "linear: a stacked FP8 weight splits at {}, not a multiple of 128",
           p.out.dim(1));
  } else {
    EXPECT(p.out.shape.ndim == 2 && p.out.dim(0) == p.x.dim(0) && p.out.dim(1) == m,
           "linear: out {} for x {} and w {}", p.out.shape.str(), p.x.shape.str(), p.w.weight.shape.str());
  }
  EXPECT(p.out.dtype == DType::kBF16 || p.out.dtype == DType::kF32, "linear: out dtype {}", dtype_name(p.out.dtype));
  if (p.w.fp8()) {
    EXPECT(p.w.scale_inv.data && p.w.scale_inv.dim(0) == (m + 127) / 128 && p.w.scale_inv.dim(1) == (k + 127) / 128,
           "linear: FP8 weight {} needs scale_inv [{}, {}]", p.w.weight.shape.str(), (m + 127) / 128, (k + 127) / 128);
  } else {
    EXPECT(p.w.weight.dtype == DType::kBF16, "linear: weight dtype {}", dtype_name(p.w.weight.dtype));
  }
}

void validate(const RmsNormParams& p) {
  const int64_t dim = p.weight.dim(0);
  EXPECT(p.x.dim(-1) == dim || p.x_stride > 0, "rms_norm: x {} vs weight [{}]", p.x.shape.str(), dim);
  EXPECT(p.x_stride == 0 || p.x_stride >= dim, "rms_norm: x_stride {} < dim {}", p.x_stride, dim);
  EXPECT(p.out_stride == 0 || p.out_stride >= dim, "rms_norm: out_stride {} < dim {}", p.out_stride, dim);
  if (p.residual) EXPECT(p.residual.numel() == p.x.numel(), "rms_norm: residual {} vs x {}", p.residual.shape.str(),
                         p.x.shape.str());
}

void validate(const MlaPrefillParams& p) {
  EXPECT(p.q.shape.ndim == 3 && p.kv.shape.ndim == 3, "mla_prefill: q {} kv {}", p.q.shape.str(), p.kv.shape.str());
  EXPECT(p.q.dim(1) == p.kv.dim(1), "mla_prefill: heads of q {} and kv {}", p.q.shape.str(), p.kv.shape.str());
  EXPECT(p.kv.dim(2) == p.qk_nope_head_dim + p.v_head_dim, "mla_prefill: kv {} vs nope {} + v {}", p.kv.shape.str(),
         p.qk_nope_head_dim, p.v_head_dim);
  EXPECT(p.k_pe.dim(0) == p.kv.dim(0) && p.q.dim(2) == p.qk_nope_head_dim + p.k_pe.dim(1),
         "mla_prefill: k_pe {} q {}", p.k_pe.shape.str(), p.q.shape.str());
  EXPECT(p.cu_q.numel() == p.cu_kv.numel() && p.cu_q.numel() >= 1, "mla_prefill: cu_q/cu_kv sizes");
  EXPECT(p.out.dim(0) == p.q.dim(0) && p.out.dim(1) == p.q.dim(1) && p.out.dim(2) == p.v_head_dim,
         "mla_prefill: out {}", p.out.shape.str());
}

void validate(const MlaDecodeParams& p) {
  EXPECT(p.q_abs.shape.ndim == 3 && p.cache.shape.ndim == 3, "mla_decode: q_abs {} cache {}", p.q_abs.shape.str(),
         p.cache.shape.str());
  EXPECT(p.q_abs.dim(2) == p.cache.dim(2), "mla_decode: q_abs entry {} vs cache entry {}", p.q_abs.dim(2),
         p.cache.dim(2));
  EXPECT(p.block_table.dim(0) == p.q_abs.dim(0) && p.seq_lens.numel() == p.q_abs.dim(0),
         "mla_decode: block_table {} seq_lens {} for {} rows", p.block_table.shape.str(), p.seq_lens.shape.str(),
         p.q_abs.dim(0));
  EXPECT(p.out.dim(2) == p.kv_lora_rank && p.kv_lora_rank < p.q_abs.dim(2), "mla_decode: out {}", p.out.shape.str());
}

void validate(const RouterParams& p) {
  const int64_t E = p.gate.dim(0);
  EXPECT(p.x.dim(1) == p.gate.dim(1), "router: x {} vs gate {}", p.x.shape.str(), p.gate.shape.str());
  EXPECT(p.top_k >= 1 && p.top_k <= E, "router: top_k {} of {} experts", p.top_k, E);
  EXPECT(p.n_group >= 1 && E % p.n_group == 0 && p.topk_group >= 1 && p.topk_group <= p.n_group,
         "router: {} experts in {} groups, topk_group {}", E, p.n_group, p.topk_group);
  if (p.method == RouterTopk::kNoauxTc) EXPECT(p.bias.data && p.bias.numel() == E, "router: noaux_tc needs bias [{}]", E);
  EXPECT(p.topk_ids.dim(0) == p.x.dim(0) && p.topk_ids.dim(1) == p.top_k, "router: topk_ids {}",
         p.topk_ids.shape.str());
}

void validate(const MoeExpertsParams& p) {
  EXPECT(p.experts != nullptr && p.n_experts > 0, "moe_experts: no experts");
  EXPECT(p.out.numel() == p.x.numel(), "moe_experts: out {} vs x {}", p.out.shape.str(), p.x.shape.str());
  EXPECT(p.topk_ids.dim(0) == p.x.dim(0), "moe_experts: topk_ids {} for x {}", p.topk_ids.shape.str(),
         p.x.shape.str());
}

void validate(const SampleParams& p) {
  EXPECT(p.logits.dtype == DType::kF32 && p.logits.shape.ndim == 2, "sample: logits must be [rows, vocab] F32, got {} {}",
         dtype_name(p.logits.dtype), p.logits.shape.str());
  const int64_t r = p.logits.dim(0), vocab = p.logits.dim(1);
  EXPECT(vocab > 0 && vocab < (int64_t{1} << 31), "sample: vocab {} outside [1, 2^31)", vocab);
  EXPECT(p.logits_stride == 0 || p.logits_stride >= vocab, "sample: logits_stride {} < vocab {}", p.logits_stride,
         vocab);
  EXPECT(p.tokens.dtype == DType::kI32 && p.tokens.numel() == r, "sample: tokens must be [{}] I32, got {} {}", r,
         dtype_name(p.tokens.dtype), p.tokens.shape.str());
  if (p.logprobs)
    EXPECT(p.logprobs.dtype == DType::kF32 && p.logprobs.numel() == r, "sample: logprobs must be [{}] F32, got {} {}",
           r, dtype_name(p.logprobs.dtype), p.logprobs.shape.str());
  EXPECT(r == 0 || p.rows != nullptr, "sample: no row parameters for {} rows", r);
  for (int64_t i = 0; i < r; ++i) {
    const SampleRowParams& q = p.rows[i];
    EXPECT(std::isfinite(q.temperature) && q.temperature >= 0.0f, "sample: row {}: temperature {}", i, q.temperature);
    EXPECT(q.top_k >= 0, "sample: row {}: top_k {} < 0", i, q.top_k);
    EXPECT(q.top_p > 0.0f && q.top_p <= 1.0f, "sample: row {}: top_p {} outside (0, 1]", i, q.top_p);
    EXPECT(q.min_p >= 0.0f && q.min_p <= 1.0f, "sample: row {}: min_p {} outside [0, 1]", i, q.min_p);
  }
}

void validate(const FillTokenIdsParams& p) {
  EXPECT(p.ids.dtype == DType::kI32 && p.ids.shape.ndim == 1, "fill_token_ids: ids must be [n] I32, got {} {}",
         dtype_name(p.ids.dtype), p.ids.shape.str());
  EXPECT(p.src.dtype == DType::kI32 && p.src.shape.ndim == 1, "fill_token_ids: src must be [k] I32, got {} {}",
         dtype_name(p.src.dtype), p.src.shape.str());
  EXPECT(p.map.dtype == DType::kI32 && p.map.shape.ndim == 2 && p.map.dim(1) == 2,
         "fill_token_ids: map must be [m, 2] I32, got {} {}", dtype_name(p.map.dtype), p.map.shape.str());
  EXPECT(p.map.dim(0) <= p.ids.dim(0), "fill_token_ids: {} pairs for {} ids", p.map.dim(0), p.ids.dim(0));
  EXPECT(p.map.dim(0) == 0 || (p.ids.data && p.map.data && p.src.data && p.src.dim(0) > 0),
         "fill_token_ids: {} pairs with ids {}, src {}", p.map.dim(0), p.ids.shape.str(), p.src.shape.str());
}

}  // namespace dsv3
