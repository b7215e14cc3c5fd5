// cpu_attention.cpp: paged MLA cache store/gather, naive prefill attention, absorbed decode (backend/cpu).
// Scores, softmax and P·V accumulate in fp32; outputs round once to bf16 (model-spec §3.5, §3.8). The arithmetic is
// backend/ref_math.h's (shared with the CUDA reference numerics, backend/cuda/reference_attention.cu): scores are
// sequential dot products, max / sum / P·V run over the keys in order; threads split (query, head) jobs only.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/ref_math.h"
#include "dsv3/base/thread_pool.h"

namespace dsv3 {

void CpuBackend::kv_cache_store(const KvCacheStoreParams& p) {
  const int64_t n = p.kv_new.dim(0), entry = p.kv_new.dim(1);
  const int64_t n_slots = p.cache.dim(0) * p.cache.dim(1);
  EXPECT(p.cache.dim(2) == entry, "kv_cache_store: entry {} vs cache {}", entry, p.cache.shape.str());
  const int32_t* slots = p.slots.as<const int32_t>();
  for (int64_t t = 0; t < n; ++t) {
    CHECK(slots[t] >= 0 && slots[t] < n_slots, "kv_cache_store: slot {} outside the pool of {}", slots[t], n_slots);
    std::memcpy(p.cache.as<bf16>() + static_cast<int64_t>(slots[t]) * entry, p.kv_new.as<const bf16>() + t * entry,
                entry * 2);
  }
}

void CpuBackend::kv_cache_gather(const KvCacheGatherParams& p) {
  const int64_t n_seqs = p.cu_kv.numel() - 1, bs = p.cache.dim(1), entry = p.cache.dim(2);
  const int64_t rank = p.latent_out.dim(1), rope = p.pe_out.dim(1), max_blocks = p.block_table.dim(1);
  CHECK(rank + rope == entry, "kv_cache_gather: {} + {} != {}", rank, rope, entry);
  const int32_t* cu = p.cu_kv.as<const int32_t>();
  const int32_t* bt = p.block_table.as<const int32_t>();
  for (int64_t s = 0; s < n_seqs; ++s) {
    for (int64_t t = 0; t < cu[s + 1] - cu[s]; ++t) {
      CHECK(t / bs < max_blocks, "kv_cache_gather: position {} beyond the block table", t);
      const int64_t block = bt[s * max_blocks + t / bs];
      const bf16* src = p.cache.as<const bf16>() + (block * bs + t % bs) * entry;
      std::memcpy(p.latent_out.as<bf16>() + (cu[s] + t) * rank, src, rank * 2);
      std::memcpy(p.pe_out.as<bf16>() + (cu[s] + t) * rope, src + rank, rope * 2);
    }
  }
}

void CpuBackend::mla_prefill(const MlaPrefillParams& p) {
  validate(p);
  const int64_t H = p.q.dim(1), qd = p.q.dim(2), nope = p.qk_nope_head_dim, vd = p.v_head_dim;
  const int64_t rope = qd - nope, kvd = nope + vd;
  const int64_t n_seqs = p.cu_q.numel() - 1;
  const int32_t* cq = p.cu_q.as<const int32_t>();
  const int32_t* ck = p.cu_kv.as<const int32_t>();
  const bf16* q = p.q.as<const bf16>();
  const bf16* kv = p.kv.as<const bf16>();
  const bf16* kpe = p.k_pe.as<const bf16>();
  bf16* out = p.out.as<bf16>();
  for (int64_t s = 0; s < n_seqs; ++s) {
    const int64_t q0 = cq[s], nq = cq[s + 1] - cq[s], k0 = ck[s], nk = ck[s + 1] - ck[s];
    EXPECT(nk >= nq, "mla_prefill: sequence {} has {} queries but only {} keys", s, nq, nk);
    parallel_for(nq * H, [&](int64_t b, int64_t e) {
      std::vector<float> sc(static_cast<size_t>(nk)), acc(static_cast<size_t>(vd));
      for (int64_t job = b; job < e; ++job) {
        const int64_t i = job / H, h = job % H;
        const int64_t last = nk - nq + i;  // absolute position of this query
        const uint16_t* qr = &q[((q0 + i) * H + h) * qd].bits;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t t = 0; t <= last; ++t) {
          const uint16_t* kr = &kv[((k0 + t) * H + h) * kvd].bits;
          const uint16_t* pr = &kpe[(k0 + t) * rope].bits;
          sc[t] = ref::mul(ref::dot(qr + nope, pr, rope, ref::dot(qr, kr, nope)), p.softmax_scale);
          mx = ref::max_f(mx, sc[t]);
        }
        float sum = 0.f;
        for (int64_t t = 0; t <= last; ++t) sum = ref::add(sum, sc[t] = ref::exp_shifted(sc[t], mx));
        std::fill(acc.begin(), acc.end(), 0.f);
        for (int64_t t = 0; t <= last; ++t) {
          const float w = ref::div(sc[t], sum);
          const uint16_t* vr = &kv[((k0 + t) * H + h) * kvd + nope].bits;
          for (int64_t c = 0; c < vd; ++c) acc[c] = ref::mac(acc[c], w, ref::bf16_to_f32(vr[c]));
        }
        bf16* o = out + ((q0 + i) * H + h) * vd;
        for (int64_t c = 0; c < vd; ++c) o[c].bits = ref::f32_to_bf16(acc[c]);
      }
    });
  }
}

void CpuBackend::mla_absorb_q(const MlaAbsorbQParams& p) {
  const int64_t n = p.q.dim(0), H = p.q.dim(1), qd = p.q.dim(2), nope = p.qk_nope_head_dim;
  const int64_t rank = p.kv_b.dim(1), rope = qd - nope, per_head = nope + p.v_head_dim;
  EXPECT(p.kv_b.dim(0) == H * per_head && p.q_abs.dim(2) == rank + rope, "mla_absorb_q: kv_b {} q_abs {}",
         p.kv_b.shape.str(), p.q_abs.shape.str());
  const bf16* w = p.kv_b.as<const bf16>();
  parallel_for(n * H, [&](int64_t b, int64_t e) {
    std::vector<float> acc(static_cast<size_t>(rank));
    for (int64_t job = b; job < e; ++job) {
      const int64_t t = job / H, h = job % H;
      const bf16* qr = p.q.as<const bf16>() + (t * H + h) * qd;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t d = 0; d < nope; ++d) {  // q̃_c = Σ_d q_nope_d · W_UK[d, c], d ascending
        const float qv = bf16_to_f32(qr[d]);
        const bf16* wr = w + (h * per_head + d) * rank;
        for (int64_t c = 0; c < rank; ++c) acc[c] = ref::mac(acc[c], qv, bf16_to_f32(wr[c]));
      }
      bf16* o = p.q_abs.as<bf16>() + (t * H + h) * (rank + rope);
      for (int64_t c = 0; c < rank; ++c) o[c].bits = ref::f32_to_bf16(acc[c]);
      std::memcpy(o + rank, qr + nope, rope * 2);
    }
  });
}

void CpuBackend::mla_decode(const MlaDecodeParams& p) {
  validate(p);
  const int64_t n = p.q_abs.dim(0), H = p.q_abs.dim(1), entry = p.q_abs.dim(2), rank = p.kv_lora_rank;
  const int64_t bs = p.cache.dim(1), max_blocks = p.block_table.dim(1);
  const int32_t* bt = p.block_table.as<const int32_t>();
  const int32_t* lens = p.seq_lens.as<const int32_t>();
  parallel_for(n * H, [&](int64_t b, int64_t e) {
    std::vector<float> sc, acc(static_cast<size_t>(rank)), qf(static_cast<size_t>(entry));
    for (int64_t job = b; job < e; ++job) {
      const int64_t t = job / H, h = job % H, len = lens[t];
      CHECK(len >= 1 && (len + bs - 1) / bs <= max_blocks, "mla_decode: row {} length {}", t, len);
      const bf16* qr = p.q_abs.as<const bf16>() + (t * H + h) * entry;
      for (int64_t c = 0; c < entry; ++c) qf[c] = bf16_to_f32(qr[c]);
      sc.resize(static_cast<size_t>(len));
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t k = 0; k < len; ++k) {
        const uint16_t* kr = &p.cache.as<const bf16>()[(bt[t * max_blocks + k / bs] * bs + k % bs) * entry].bits;
        sc[k] = ref::mul(ref::dot(qf.data(), kr, entry), p.softmax_scale);
        mx = ref::max_f(mx, sc[k]);
      }
      float sum = 0.f;
      for (int64_t k = 0; k < len; ++k) sum = ref::add(sum, sc[k] = ref::exp_shifted(sc[k], mx));
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t k = 0; k < len; ++k) {
        const float w = ref::div(sc[k], sum);
        const bf16* kr = p.cache.as<const bf16>() + (bt[t * max_blocks + k / bs] * bs + k % bs) * entry;
        for (int64_t c = 0; c < rank; ++c) acc[c] = ref::mac(acc[c], w, bf16_to_f32(kr[c]));
      }
      bf16* o = p.out.as<bf16>() + (t * H + h) * rank;
      for (int64_t c = 0; c < rank; ++c) o[c].bits = ref::f32_to_bf16(acc[c]);
    }
  });
}

void CpuBackend::mla_absorb_v(const MlaAbsorbVParams& p) {
  const int64_t n = p.o_latent.dim(0), H = p.o_latent.dim(1), rank = p.o_latent.dim(2);
  const int64_t nope = p.qk_nope_head_dim, vd = p.v_head_dim, per_head = nope + vd;
  EXPECT(p.kv_b.dim(0) == H * per_head && p.kv_b.dim(1) == rank, "mla_absorb_v: kv_b {}", p.kv_b.shape.str());
  const bf16* w = p.kv_b.as<const bf16>();
  parallel_for(n * H, [&](int64_t b, int64_t e) {
    std::vector<float> of(static_cast<size_t>(rank));
    for (int64_t job = b; job < e; ++job) {
      const int64_t t = job / H, h = job % H;
      const bf16* orow = p.o_latent.as<const bf16>() + (t * H + h) * rank;
      for (int64_t c = 0; c < rank; ++c) of[c] = bf16_to_f32(orow[c]);
      bf16* o = p.out.as<bf16>() + (t * H + h) * vd;
      for (int64_t d = 0; d < vd; ++d) {
        const bf16* wr = w + (h * per_head + nope + d) * rank;
        o[d].bits = ref::f32_to_bf16(ref::dot(&wr[0].bits, of.data(), rank));
      }
    }
  });
}

}  // namespace dsv3
