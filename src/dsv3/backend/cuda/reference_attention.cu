// reference_attention.cu: reference-numerics MLA attention — naive prefill and absorbed paged decode (backend/cuda;
// DSV3_NUMERICS=reference). Each (query, head) computes what CpuBackend::mla_prefill / mla_decode compute for it,
// with backend/ref_math.h's functions in the same order, so the output is the CPU's bit for bit.
// Parallelisation: one block of 128 threads per (query row, head). The keys go in chunks of kChunk: the threads
// compute the chunk's scores (each a sequential dot product, a pure function of its inputs), thread 0 folds them into
// the running max (pass 1) and the sum of exp(s - max) (pass 2) in key order, and in pass 3 each thread accumulates
// its output columns over the chunk's weights in key order. Scores are recomputed per pass (identical bits); no
// scratch memory, any context length. Slow by design (tiny models); built with --fmad=false as well.
// Reference: CpuBackend::mla_prefill / mla_decode (cpu_attention.cpp); tests/ops cases "refnum mla_prefill|decode".
#include "dsv3/backend/cuda/common.cuh"
#include "dsv3/backend/ref_math.h"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 128, kChunk = 256, kMaxColsPerThread = kRefAttnMaxCols / kThreads;
static_assert(kRefAttnMaxCols % kThreads == 0, "whole columns per thread");

__device__ __forceinline__ const uint16_t* u16(const bf16_t* p) { return reinterpret_cast<const uint16_t*>(p); }

// The three passes over keys 0..n_keys-1 of one (query, head). score(t) gives key t's scaled score, value(t) its
// value row (bf16 bits, `cols` wide). Writes out[0, cols).
template <class Score, class Value>
__device__ void softmax_pv(int n_keys, int cols, const Score& score, const Value& value, uint16_t* out) {
  __shared__ float w[kChunk];
  __shared__ float stat[2];
  const int tid = threadIdx.x;
  float mx = ref::bits_f32(0xff800000u);  // -inf, as the reference starts
  for (int c0 = 0; c0 < n_keys; c0 += kChunk) {
    const int len = min(kChunk, n_keys - c0);
    for (int j = tid; j < len; j += blockDim.x) w[j] = score(c0 + j);
    __syncthreads();
    if (tid == 0)
      for (int j = 0; j < len; ++j) mx = ref::max_f(mx, w[j]);
    __syncthreads();
  }
  if (tid == 0) stat[0] = mx;
  __syncthreads();
  mx = stat[0];
  float sum = 0.f;
  for (int c0 = 0; c0 < n_keys; c0 += kChunk) {
    const int len = min(kChunk, n_keys - c0);
    for (int j = tid; j < len; j += blockDim.x) w[j] = ref::exp_shifted(score(c0 + j), mx);
    __syncthreads();
    if (tid == 0)
      for (int j = 0; j < len; ++j) sum = ref::add(sum, w[j]);
    __syncthreads();
  }
  if (tid == 0) stat[1] = sum;
  __syncthreads();
  sum = stat[1];
  float acc[kMaxColsPerThread];
#pragma unroll
  for (int q = 0; q < kMaxColsPerThread; ++q) acc[q] = 0.f;
  for (int c0 = 0; c0 < n_keys; c0 += kChunk) {
    const int len = min(kChunk, n_keys - c0);
    for (int j = tid; j < len; j += blockDim.x) w[j] = ref::div(ref::exp_shifted(score(c0 + j), mx), sum);
    __syncthreads();
    for (int j = 0; j < len; ++j) {
      const uint16_t* v = value(c0 + j);
#pragma unroll
      for (int q = 0; q < kMaxColsPerThread; ++q) {
        const int c = tid + q * kThreads;
        if (c < cols) acc[q] = ref::mac(acc[q], w[j], ref::bf16_to_f32(v[c]));
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int q = 0; q < kMaxColsPerThread; ++q) {
    const int c = tid + q * kThreads;
    if (c < cols) out[c] = ref::f32_to_bf16(acc[q]);
  }
}

// grid (n_q, heads): query row qi of sequence s sits at position kv_len - q_len + i and sees keys 0..that position.
__global__ void __launch_bounds__(kThreads) ref_mla_prefill_kernel(const MlaPrefillArgs a) {
  __shared__ int seq_of_row;
  const int qi = blockIdx.x, h = blockIdx.y;
  if (threadIdx.x == 0) {
    int seq = -1;
    for (int s = 0; s < a.n_seqs && seq < 0; ++s)
      if (a.cu_q[s] <= qi && qi < a.cu_q[s + 1]) seq = s;
    seq_of_row = seq;
  }
  __syncthreads();
  const int s = seq_of_row;
  if (s < 0) return;  // a row of no sequence: untouched, as on the CPU
  const int q0 = a.cu_q[s], nq = a.cu_q[s + 1] - q0, k0 = a.cu_kv[s], nk = a.cu_kv[s + 1] - k0;
  if (q0 < 0 || q0 + nq > a.n_q || k0 < 0 || nk < 0 || k0 + nk > a.n_kv || nk < nq) {
    if (threadIdx.x == 0) set_error(a.err, kErrPrefillLen);
    return;
  }
  const int qd = a.nope + a.rope, kvd = a.nope + a.v;
  const uint16_t* q = u16(a.q) + (static_cast<int64_t>(qi) * a.heads + h) * qd;
  auto score = [&](int t) {
    const uint16_t* kr = u16(a.kv) + (static_cast<int64_t>(k0 + t) * a.heads + h) * kvd;
    const uint16_t* pr = u16(a.k_pe) + static_cast<int64_t>(k0 + t) * a.rope;
    return ref::mul(ref::dot(q + a.nope, pr, a.rope, ref::dot(q, kr, a.nope)), a.softmax_scale);
  };
  auto value = [&](int t) { return u16(a.kv) + (static_cast<int64_t>(k0 + t) * a.heads + h) * kvd + a.nope; };
  softmax_pv(nk - nq + (qi - q0) + 1, a.v, score, value,
             reinterpret_cast<uint16_t*>(a.out) + (static_cast<int64_t>(qi) * a.heads + h) * a.v);
}

// grid (n, heads): row t attends to the first seq_lens[t] entries of its paged cache.
__global__ void __launch_bounds__(kThreads) ref_mla_decode_kernel(const MlaDecodeArgs a) {
  __shared__ int bad;
  const int t = blockIdx.x, h = blockIdx.y;
  const int len = a.seq_lens[t];
  if (len < 1 || (len + a.block_size - 1) / a.block_size > a.max_blocks) {
    if (threadIdx.x == 0) set_error(a.err, kErrDecodeLen);
    return;
  }
  const int32_t* bt = a.block_table + static_cast<int64_t>(t) * a.max_blocks;
  if (threadIdx.x == 0) bad = 0;
  __syncthreads();
  for (int b = threadIdx.x; b < (len + a.block_size - 1) / a.block_size; b += blockDim.x)
    if (bt[b] < 0 || bt[b] >= a.n_blocks) bad = 1;
  __syncthreads();
  if (bad) {
    if (threadIdx.x == 0) set_error(a.err, kErrDecodeLen);
    return;
  }
  const uint16_t* q = u16(a.q) + (static_cast<int64_t>(t) * a.heads + h) * a.entry;
  auto key = [&](int k) {
    return u16(a.cache) + (static_cast<int64_t>(bt[k / a.block_size]) * a.block_size + k % a.block_size) * a.entry;
  };
  auto score = [&](int k) { return ref::mul(ref::dot(q, key(k), a.entry), a.softmax_scale); };
  softmax_pv(len, a.rank, score, key,
             reinterpret_cast<uint16_t*>(a.out) + (static_cast<int64_t>(t) * a.heads + h) * a.rank);
}

}  // namespace

void launch_ref_mla_prefill(const MlaPrefillArgs& a, cudaStream_t s) {
  if (a.n_q == 0 || a.heads == 0 || a.n_seqs == 0) return;
  ref_mla_prefill_kernel<<<dim3(a.n_q, a.heads), kThreads, 0, s>>>(a);
}

void launch_ref_mla_decode(const MlaDecodeArgs& a, cudaStream_t s) {
  if (a.n == 0 || a.heads == 0) return;
  ref_mla_decode_kernel<<<dim3(a.n, a.heads), kThreads, 0, s>>>(a);
}

}  // namespace dsv3::cuda
