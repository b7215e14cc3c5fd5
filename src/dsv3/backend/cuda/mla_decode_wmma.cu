// mla_decode_wmma.cu: absorbed-MLA decode attention on the tensor cores (WMMA bf16 16x16x16) (backend/cuda).
// Parallelisation: grid = (head groups of 32, KV splits, rows); 8 warps. Per chunk of 128 keys: the chunk
// (latent ‖ k_pe, 128 x 576 bf16) is staged in shared memory once; pass 1: S[32 heads x 128 keys] = Q·Kᵀ (each warp
// 2 of the 16 tiles); softmax update per head (8 threads per head), P split into bf16 hi = bf16(P) and lo =
// bf16(P - hi); pass 2: O[32 x 512] += P·V with V = the first 512 columns of the same staged chunk (warp = 16 heads x
// 128 columns, 8 accumulator tiles in registers), two mma (hi, lo) per V fragment. The running-max correction of O
// goes through a per-warp 16x16 scratch tile (WMMA's accumulator layout is opaque). Splits write partials that
// mla_decode_combine merges.
// Precision: bf16 inputs, fp32 scores / softmax / sums / accumulators, P enters P·V as hi + lo = P (1 + d) with
// |d| <= 2^-16, one bf16 rounding of the output. kSplitP = false (DSV3_MLA_P_BF16=1) is the former kernel: P rounded
// to bf16 for one mma (|d| <= 2^-8), the softmax sum over the same rounded values (docs/numerics.md).
// Supported: entry 576, rank 512 (DeepSeek MLA); other shapes take the CUDA-core kernel in mla_decode.cu.
// Reference: CpuBackend::mla_decode; checked by tests/ops case "mla_decode" (both kernels).
#include <mma.h>

#include "dsv3/backend/cuda/mla_decode_common.cuh"

namespace dsv3::cuda {
namespace {

using namespace nvcuda;

constexpr int kEntry = 576, kRank = 512, kHeads = 32, kChunk = 128, kWarps = 8, kThreads = kWarps * 32;
constexpr int kLdK = kEntry + 8;   // bf16 elements per staged key / query row (16-byte multiple, skews banks)
constexpr int kLdS = kChunk + 4;   // floats per score row
constexpr int kLdP = kChunk + 8;   // bf16 per probability row
constexpr size_t kSmemK = size_t(kChunk) * kLdK * 2;
constexpr size_t kSmemQ = size_t(kHeads) * kLdK * 2;
constexpr size_t kSmemS = size_t(kHeads) * kLdS * 4;
constexpr size_t kSmemP = size_t(kHeads) * kLdP * 2;  // one of P hi, P lo
constexpr size_t kSmemStats = size_t(kHeads) * 3 * 4;
constexpr size_t kSmemTotal = kSmemK + kSmemQ + kSmemS + 2 * kSmemP + kSmemStats;
static_assert(kSmemTotal <= 227 * 1024, "mla_decode_wmma: shared memory");
static_assert(size_t(kWarps) * 256 * 4 <= kSmemS, "per-warp scratch tiles overlay the score buffer");

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

template <bool kSplitP>
__global__ void __launch_bounds__(kThreads, 1) mla_decode_wmma_kernel(const MlaDecodeArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* ks = reinterpret_cast<bf16_t*>(smem);                                   // [kChunk][kLdK]
  bf16_t* qs = reinterpret_cast<bf16_t*>(smem + kSmemK);                          // [kHeads][kLdK]
  float* ss = reinterpret_cast<float*>(smem + kSmemK + kSmemQ);                   // [kHeads][kLdS]
  bf16_t* ps = reinterpret_cast<bf16_t*>(smem + kSmemK + kSmemQ + kSmemS);        // [kHeads][kLdP] P hi
  bf16_t* ps_lo = ps + kHeads * kLdP;                                             // [kHeads][kLdP] P lo (kSplitP)
  float* corr_s = reinterpret_cast<float*>(smem + kSmemK + kSmemQ + kSmemS + 2 * kSmemP);  // [kHeads]
  float* l_s = corr_s + kHeads;
  float* m_s = l_s + kHeads;
  const int hg = blockIdx.x, sp = blockIdx.y, t = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const DecodeRow row = decode_row(a, t, sp);

  // Q of the 32 heads (zeros for heads past H).
  for (int e = threadIdx.x; e < kHeads * (kEntry / 8); e += kThreads) {
    const int r = e / (kEntry / 8), c8 = e % (kEntry / 8), h = hg * kHeads + r;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (h < a.heads) v = reinterpret_cast<const uint4*>(a.q + (static_cast<int64_t>(t) * a.heads + h) * kEntry)[c8];
    reinterpret_cast<uint4*>(qs + r * kLdK)[c8] = v;
  }
  // Softmax state: thread (head sr, lane sl) — 8 threads per head hold identical m, l.
  const int sr = threadIdx.x / 8, sl = threadIdx.x % 8;
  float m = -FLT_MAX, l = 0.f;
  // Output tiles: warp = (16-head half mi, 128-column slice ds).
  const int mi = warp / 4, ds = warp % 4;
  FragC o[8];
#pragma unroll
  for (int f = 0; f < 8; ++f) wmma::fill_fragment(o[f], 0.f);
  float* scratch = ss + warp * 256;  // per-warp 16x16 tile (overlays the scores once they are consumed)

  for (int c0 = row.begin; c0 < row.end; c0 += kChunk) {
    const int valid = min(kChunk, row.end - c0);
    __syncthreads();  // previous chunk's readers of ks / ps / ss are done
    for (int e = threadIdx.x; e < kChunk * (kEntry / 8); e += kThreads) {
      const int kr = e / (kEntry / 8), c8 = e % (kEntry / 8);
      const bf16_t* src = kr < valid ? cache_row(a, t, c0 + kr, row.end) : nullptr;
      uint4 v = make_uint4(0, 0, 0, 0);  // zero rows: 0·garbage could be NaN
      if (src) v = reinterpret_cast<const uint4*>(src)[c8];
      reinterpret_cast<uint4*>(ks + kr * kLdK)[c8] = v;
    }
    __syncthreads();
    // Pass 1: S = Q·Kᵀ; warp computes tiles (mi, 2*(warp%4)) and (mi, 2*(warp%4)+1).
    {
      FragC s0, s1;
      wmma::fill_fragment(s0, 0.f);
      wmma::fill_fragment(s1, 0.f);
      const int n0 = (warp % 4) * 2;
      for (int kk = 0; kk < kEntry / 16; ++kk) {
        FragA qa;
        FragBCol kb0, kb1;
        wmma::load_matrix_sync(qa, qs + mi * 16 * kLdK + kk * 16, kLdK);
        wmma::load_matrix_sync(kb0, ks + (n0 * 16) * kLdK + kk * 16, kLdK);
        wmma::load_matrix_sync(kb1, ks + ((n0 + 1) * 16) * kLdK + kk * 16, kLdK);
        wmma::mma_sync(s0, qa, kb0, s0);
        wmma::mma_sync(s1, qa, kb1, s1);
      }
      wmma::store_matrix_sync(ss + mi * 16 * kLdS + n0 * 16, s0, kLdS, wmma::mem_row_major);
      wmma::store_matrix_sync(ss + mi * 16 * kLdS + (n0 + 1) * 16, s1, kLdS, wmma::mem_row_major);
    }
    __syncthreads();
    // Softmax update for head sr over this chunk's keys sl, sl+8, ...
    float sv[kChunk / 8];
    float cmax = -FLT_MAX;
#pragma unroll
    for (int j = 0; j < kChunk / 8; ++j) {
      const int kr = sl + 8 * j;
      sv[j] = kr < valid ? ss[sr * kLdS + kr] * a.softmax_scale : -FLT_MAX;
      cmax = fmaxf(cmax, sv[j]);
    }
#pragma unroll
    for (int off = 4; off > 0; off >>= 1) cmax = fmaxf(cmax, __shfl_xor_sync(0xffffffffu, cmax, off));
    const float m_new = fmaxf(m, cmax);  // finite: the chunk has >= 1 valid key
    const float corr = expf(m - m_new);  // 0 on the first chunk (m = -FLT_MAX)
    float psum = 0.f;
#pragma unroll
    for (int j = 0; j < kChunk / 8; ++j) {
      const int kr = sl + 8 * j;
      const float pf = sv[j] > -FLT_MAX ? expf(sv[j] - m_new) : 0.f;
      const bf16_t p = to_bf16(pf);
      ps[sr * kLdP + kr] = p;
      if constexpr (kSplitP) {
        ps_lo[sr * kLdP + kr] = to_bf16(pf - __bfloat162float(p));  // exact difference: mma_sm80.cuh split_bf16x2
        psum += pf;
      } else {
        psum += __bfloat162float(p);
      }
    }
#pragma unroll
    for (int off = 4; off > 0; off >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, off);
    l = l * corr + psum;
    m = m_new;
    if (sl == 0) corr_s[sr] = corr;
    const int rescale = __syncthreads_or(c0 != row.begin && corr != 1.f);
    if (rescale) {  // O[head, :] *= corr[head] through the per-warp scratch tile
#pragma unroll
      for (int f = 0; f < 8; ++f) {
        wmma::store_matrix_sync(scratch, o[f], 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) scratch[e] *= corr_s[mi * 16 + e / 16];
        __syncwarp();
        wmma::load_matrix_sync(o[f], scratch, 16, wmma::mem_row_major);
        __syncwarp();
      }
    }
    // Pass 2: O += P·V, V = columns [ds*128, ds*128 + 128) of the staged latent.
    for (int kk = 0; kk < kChunk / 16; ++kk) {
      FragA pa, pl;
      wmma::load_matrix_sync(pa, ps + mi * 16 * kLdP + kk * 16, kLdP);
      if constexpr (kSplitP) wmma::load_matrix_sync(pl, ps_lo + mi * 16 * kLdP + kk * 16, kLdP);
#pragma unroll
      for (int f = 0; f < 8; ++f) {
        FragBRow vb;
        wmma::load_matrix_sync(vb, ks + kk * 16 * kLdK + ds * 128 + f * 16, kLdK);
        wmma::mma_sync(o[f], pa, vb, o[f]);
        if constexpr (kSplitP) wmma::mma_sync(o[f], pl, vb, o[f]);
      }
    }
  }
  if (sl == 0) {
    l_s[sr] = l;
    m_s[sr] = m;
  }
  __syncthreads();  // l_s visible; every warp is past its last use of ss
  if (threadIdx.x < kHeads) {
    const int h = hg * kHeads + threadIdx.x;
    if (h < a.heads) store_decode_ml(a, t, sp, h, m_s[threadIdx.x], l_s[threadIdx.x]);
  }
#pragma unroll
  for (int f = 0; f < 8; ++f) {
    wmma::store_matrix_sync(scratch, o[f], 16, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 256; e += 32) {
      const int hr = mi * 16 + e / 16, h = hg * kHeads + hr, c = ds * 128 + f * 16 + e % 16;
      if (h < a.heads) store_decode_col(a, t, sp, h, c, scratch[e], l_s[hr]);
    }
    __syncwarp();
  }
}

}  // namespace

bool mla_decode_wmma_supported(int entry, int rank) { return entry == kEntry && rank == kRank; }

void launch_mla_decode_wmma(const MlaDecodeArgs& a, bool p_bf16, cudaStream_t s) {
  auto* kernel = p_bf16 ? mla_decode_wmma_kernel<false> : mla_decode_wmma_kernel<true>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmemTotal));
  const dim3 grid((a.heads + kHeads - 1) / kHeads, a.n_splits, a.n);
  kernel<<<grid, kThreads, kSmemTotal, s>>>(a);
}

}  // namespace dsv3::cuda
