// mla_decode_common.cuh: what the mla_decode kernels share: a row's key range for one split, the paged lookup of
// one cached key, and the output / partial-result stores (backend/cuda).
#pragma once

#include <cfloat>

#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {

struct DecodeRow {
  int begin, end;  // keys [begin, end) of this split; empty when begin >= end
};

// Keys of row t that split sp covers. A bad seq_len (< 1 or beyond the block table) flags kErrDecodeLen and gives
// an empty range (the output becomes zeros). NOTE: the host fixes n_splits and a split_len that covers the block
// table's width (all it knows in a captured graph, where the width is max_seq_len / block_size); each row then cuts
// its own length into n_splits pieces of whole split_align keys, so a 1K-token row in a 160K-wide table still spreads
// over all its splits instead of filling the first one. n_splits x piece >= len, and piece <= split_len.
__device__ __forceinline__ DecodeRow decode_row(const MlaDecodeArgs& a, int t, int sp) {
  const int len = a.seq_lens[t];
  DecodeRow r{0, 0};
  if (len < 1 || (static_cast<int64_t>(len) + a.block_size - 1) / a.block_size > a.max_blocks) {
    if (threadIdx.x == 0 && sp == 0 && blockIdx.x == 0) set_error(a.err, kErrDecodeLen);
    return r;
  }
  int piece = a.split_len;
  if (a.n_splits > 1) {
    const int per = (len + a.n_splits - 1) / a.n_splits;
    piece = min(piece, (per + a.split_align - 1) / a.split_align * a.split_align);
  }
  r.begin = sp * piece;
  r.end = min(len, r.begin + piece);
  return r;
}

// The cache entry of key `pos` of row t, or nullptr past `end` or for a block id outside the pool (flagged).
__device__ __forceinline__ const bf16_t* cache_row(const MlaDecodeArgs& a, int t, int pos, int end) {
  if (pos >= end) return nullptr;
  const int block = a.block_table[static_cast<int64_t>(t) * a.max_blocks + pos / a.block_size];
  if (block < 0 || block >= a.n_blocks) {
    set_error(a.err, kErrDecodeLen);
    return nullptr;
  }
  return a.cache + (static_cast<int64_t>(block) * a.block_size + pos % a.block_size) * a.entry;
}

// Final output (one split) or partial output (several): column c of head h of row t, o unnormalised.
__device__ __forceinline__ void store_decode_col(const MlaDecodeArgs& a, int t, int sp, int h, int c, float o,
                                                 float l) {
  if (a.n_splits == 1) {
    a.out[(static_cast<int64_t>(t) * a.heads + h) * a.rank + c] = to_bf16(l > 0.f ? o / l : 0.f);
  } else {
    a.part_o[((static_cast<int64_t>(t) * a.n_splits + sp) * a.heads + h) * a.rank + c] = o;
  }
}

__device__ __forceinline__ void store_decode_ml(const MlaDecodeArgs& a, int t, int sp, int h, float m, float l) {
  if (a.n_splits == 1) return;
  float* ml = a.part_ml + ((static_cast<int64_t>(t) * a.n_splits + sp) * a.heads + h) * 2;
  ml[0] = m;
  ml[1] = l;
}

// p_bf16: P rounded to bf16 for P·V (one mma) instead of the hi + lo split (two mma); kernels.h.
void launch_mla_decode_wmma(const MlaDecodeArgs& a, bool p_bf16, cudaStream_t s);
void launch_mla_decode_mma(const MlaDecodeArgs& a, bool p_bf16, cudaStream_t s);
void launch_mla_decode_mma16(const MlaDecodeArgs& a, bool p_bf16, cudaStream_t s);

}  // namespace dsv3::cuda
