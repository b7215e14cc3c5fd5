// mla_decode.cu: absorbed-MLA decode attention over the paged latent cache, split along the sequence (backend/cuda).
// Parallelisation: grid = (head groups of 16, KV splits, rows); 256 threads = 16 heads x 16 lanes. Each block
// stages 32-key tiles of the cache (latent ‖ k_pe) in shared memory, keeps an online softmax per head and owns
// rank/16 output columns per lane. With several splits, each writes an unnormalised partial (O, max, sum) and
// mla_decode_combine merges them (one block per (row, head)).
// Precision: bf16 q/cache in, fp32 scores, softmax and accumulators, one bf16 rounding of the output.
// Reference: CpuBackend::mla_decode (model-spec §3.8); checked by tests/ops case "mla_decode".
// NOTE: the simple CUDA-core path; mla_decode_mma.cu and mla_decode_mma16.cu (the defaults, by batch size) and
// mla_decode_wmma.cu are the tensor-core paths.
#include <cfloat>

#include "dsv3/backend/cuda/common.cuh"
#include "dsv3/backend/cuda/mla_decode_common.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kHeads = 16, kLanes = 16, kKeys = 32, kThreads = kHeads * kLanes, kMaxCols = 32;  // rank <= 512

__global__ void __launch_bounds__(kThreads) mla_decode_simple_kernel(const MlaDecodeArgs a) {
  extern __shared__ float sm[];
  const int kstride = a.entry + 2;  // bf16 elements per staged key row; +2 keeps lanes on distinct banks
  float* qs = sm;                                                     // [kHeads][entry]
  bf16_t* ks = reinterpret_cast<bf16_t*>(sm + kHeads * a.entry);      // [kKeys][kstride]
  float* ps = sm + kHeads * a.entry + (kKeys * kstride + 1) / 2;      // [kHeads][kKeys]
  const int hg = blockIdx.x, sp = blockIdx.y, t = blockIdx.z;
  const int hl = threadIdx.x / kLanes, lane = threadIdx.x % kLanes, h = hg * kHeads + hl;
  const DecodeRow row = decode_row(a, t, sp);
  for (int e = threadIdx.x; e < kHeads * a.entry; e += kThreads) {
    const int r = e / a.entry, c = e % a.entry, hh = hg * kHeads + r;
    qs[e] = hh < a.heads ? ld_bf16(a.q + (static_cast<int64_t>(t) * a.heads + hh) * a.entry + c) : 0.f;
  }
  float m = -FLT_MAX, l = 0.f;
  float o[kMaxCols];
#pragma unroll
  for (int q = 0; q < kMaxCols; ++q) o[q] = 0.f;
  for (int k0 = row.begin; k0 < row.end; k0 += kKeys) {
    __syncthreads();
    // Stage keys [k0, k0 + kKeys) (zeros past the end or for a bad block id).
    for (int e = threadIdx.x; e < kKeys * (a.entry / 2); e += kThreads) {
      const int kr = e / (a.entry / 2), c2 = e % (a.entry / 2);
      const bf16_t* src = cache_row(a, t, k0 + kr, row.end);
      __nv_bfloat162 v = __floats2bfloat162_rn(0.f, 0.f);
      if (src) v = reinterpret_cast<const __nv_bfloat162*>(src)[c2];
      ks[kr * kstride + 2 * c2] = v.x;
      ks[kr * kstride + 2 * c2 + 1] = v.y;
    }
    __syncthreads();
    float s[kKeys / kLanes];
    float tmax = -FLT_MAX;
#pragma unroll
    for (int jj = 0; jj < kKeys / kLanes; ++jj) {
      const int kr = lane + kLanes * jj;
      const float* qr = qs + hl * a.entry;
      const bf16_t* kr_ = ks + kr * kstride;
      float d = 0.f;
      for (int c = 0; c < a.entry; ++c) d = fmaf(qr[c], __bfloat162float(kr_[c]), d);
      s[jj] = (k0 + kr < row.end) ? d * a.softmax_scale : -FLT_MAX;
      tmax = fmaxf(tmax, s[jj]);
    }
#pragma unroll
    for (int off = kLanes / 2; off > 0; off >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, off));
    const float m_new = fmaxf(m, tmax);  // tile has >= 1 valid key, so m_new is finite
    const float corr = expf(m - m_new);  // m = -FLT_MAX at first: corr = 0
    float psum = 0.f;
#pragma unroll
    for (int jj = 0; jj < kKeys / kLanes; ++jj) {
      const float p = s[jj] > -FLT_MAX ? expf(s[jj] - m_new) : 0.f;
      ps[hl * kKeys + lane + kLanes * jj] = p;
      psum += p;
    }
#pragma unroll
    for (int off = kLanes / 2; off > 0; off >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, off);
    l = l * corr + psum;
    m = m_new;
    __syncwarp();
#pragma unroll
    for (int q = 0; q < kMaxCols; ++q) {
      const int c = lane + kLanes * q;
      if (c >= a.rank) break;
      float acc = o[q] * corr;
      for (int kr = 0; kr < kKeys; ++kr) acc = fmaf(ps[hl * kKeys + kr], __bfloat162float(ks[kr * kstride + c]), acc);
      o[q] = acc;
    }
  }
  if (h >= a.heads) return;
  if (lane == 0) store_decode_ml(a, t, sp, h, m, l);
#pragma unroll
  for (int q = 0; q < kMaxCols; ++q) {
    const int c = lane + kLanes * q;
    if (c < a.rank) store_decode_col(a, t, sp, h, c, o[q], l);
  }
}

// Merges the splits' partials of one (head, row): w_sp = exp(m_sp - M) over the splits that saw keys (l_sp > 0),
// out = Σ w_sp O_sp / Σ w_sp l_sp. One block per (head, row). Warp 0 reads the (m, l) pairs, one split per lane
// (two at most), so the block waits one memory round trip for them instead of 2 n_splits in a row (the old thread-0
// loop: ~10 µs of a 27 µs batch-1 call at 16 splits); each thread then owns 4 columns (float4) and issues the
// splits' loads kCombineBatch at a time before summing them in split order (deterministic).
constexpr int kCombineThreads = 128, kCombineBatch = 8;
static_assert(kMlaDecodeMaxSplits <= 64, "combine: two splits per lane of one warp");

template <int kVec>
__device__ __forceinline__ void combine_columns(const MlaDecodeArgs& a, const float* po, int64_t split_stride,
                                                const float* w, float inv_l, bf16_t* out) {
  for (int c = kVec * threadIdx.x; c < a.rank; c += kVec * kCombineThreads) {
    float acc[kVec] = {};
    for (int s0 = 0; s0 < a.n_splits; s0 += kCombineBatch) {
      float ws[kCombineBatch], v[kCombineBatch][kVec];
#pragma unroll
      for (int j = 0; j < kCombineBatch; ++j) {  // empty splits' partials are never written: not read either
        ws[j] = s0 + j < a.n_splits ? w[s0 + j] : 0.f;
        const float* src = po + (s0 + j) * split_stride + c;
        if constexpr (kVec == 4) {
          const float4 x = ws[j] > 0.f ? *reinterpret_cast<const float4*>(src) : make_float4(0.f, 0.f, 0.f, 0.f);
          v[j][0] = x.x, v[j][1] = x.y, v[j][2] = x.z, v[j][3] = x.w;
        } else {
          v[j][0] = ws[j] > 0.f ? *src : 0.f;
        }
      }
#pragma unroll
      for (int j = 0; j < kCombineBatch; ++j)
        if (ws[j] > 0.f)
#pragma unroll
          for (int e = 0; e < kVec; ++e) acc[e] += ws[j] * v[j][e];
    }
#pragma unroll
    for (int e = 0; e < kVec; ++e) out[c + e] = to_bf16(acc[e] * inv_l);
  }
}

__global__ void __launch_bounds__(kCombineThreads) mla_decode_combine_kernel(const MlaDecodeArgs a) {
  const int h = blockIdx.x, t = blockIdx.y;
  __shared__ float w[kMlaDecodeMaxSplits];
  __shared__ float inv_l;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    const float* ml = a.part_ml + (static_cast<int64_t>(t) * a.n_splits * a.heads + h) * 2;  // split sp: + 2 H sp
    float m[2], l[2], M = -FLT_MAX;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int sp = lane + 32 * i;
      m[i] = sp < a.n_splits ? ml[static_cast<int64_t>(sp) * a.heads * 2] : -FLT_MAX;
      l[i] = sp < a.n_splits ? ml[static_cast<int64_t>(sp) * a.heads * 2 + 1] : 0.f;
      if (l[i] > 0.f) M = fmaxf(M, m[i]);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
    float L = 0.f;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int sp = lane + 32 * i;
      const float wi = l[i] > 0.f ? expf(m[i] - M) : 0.f;
      if (sp < a.n_splits) w[sp] = wi;
      L += l[i] * wi;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) L += __shfl_xor_sync(0xffffffffu, L, off);
    if (lane == 0) inv_l = L > 0.f ? 1.f / L : 0.f;
  }
  __syncthreads();
  const float* po = a.part_o + (static_cast<int64_t>(t) * a.n_splits * a.heads + h) * a.rank;
  const int64_t split_stride = static_cast<int64_t>(a.heads) * a.rank;
  bf16_t* out = a.out + (static_cast<int64_t>(t) * a.heads + h) * a.rank;
  if (a.rank % 4 == 0) {  // part_o is 256-byte aligned (the backend's scratch): rows of rank floats stay 16-byte aligned
    combine_columns<4>(a, po, split_stride, w, inv_l, out);
  } else {
    combine_columns<1>(a, po, split_stride, w, inv_l, out);
  }
}

size_t simple_smem_bytes(int entry) {
  const int kstride = entry + 2;
  return (static_cast<size_t>(kHeads) * entry + (kKeys * kstride + 1) / 2 + kHeads * kKeys) * sizeof(float);
}

}  // namespace

size_t mla_decode_part_o_floats(int n, int heads, int rank, int n_splits) {
  return static_cast<size_t>(n) * n_splits * heads * rank;
}
size_t mla_decode_part_ml_floats(int n, int heads, int n_splits) {
  return static_cast<size_t>(n) * n_splits * heads * 2;
}

void launch_mla_decode_combine(const MlaDecodeArgs& a, cudaStream_t s) {
  mla_decode_combine_kernel<<<dim3(a.heads, a.n), kCombineThreads, 0, s>>>(a);
}

int mla_decode_head_group(MlaDecodeKernel kernel) {
  return kernel == MlaDecodeKernel::kMma     ? 64
         : kernel == MlaDecodeKernel::kWmma  ? 32
         : kernel == MlaDecodeKernel::kMma16 ? 16
                                             : kHeads;
}

void launch_mla_decode(const MlaDecodeArgs& a, MlaDecodeKernel kernel, bool p_bf16, cudaStream_t s) {
  if (a.n == 0 || a.heads == 0) return;
  if (kernel == MlaDecodeKernel::kMma) {  // the caller checked mla_decode_mma_supported
    launch_mla_decode_mma(a, p_bf16, s);
  } else if (kernel == MlaDecodeKernel::kMma16) {  // ... or mla_decode_mma16_supported
    launch_mla_decode_mma16(a, p_bf16, s);
  } else if (kernel == MlaDecodeKernel::kWmma) {  // ... and mla_decode_wmma_supported
    launch_mla_decode_wmma(a, p_bf16, s);
  } else {
    const size_t smem = simple_smem_bytes(a.entry);
    cudaFuncSetAttribute(mla_decode_simple_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         static_cast<int>(smem));
    const dim3 grid((a.heads + kHeads - 1) / kHeads, a.n_splits, a.n);
    mla_decode_simple_kernel<<<grid, kThreads, smem, s>>>(a);
  }
  if (a.n_splits > 1) launch_mla_decode_combine(a, s);
}

}  // namespace dsv3::cuda
