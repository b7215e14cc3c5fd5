// mla_prefill.cu: naive-form (MHA) MLA attention for prompt chunks, causal with the chunk offset (backend/cuda).
// Parallelisation: grid = (query tiles of 16 rows of one sequence, heads); 128 threads = 16 rows x 8 lanes; keys in
// tiles of 64 staged in shared memory as fp32; online softmax per row; each lane owns v/8 output columns.
// Precision: bf16 q/k/v in, fp32 scores, softmax and accumulators, one bf16 rounding of the output.
// Reference: CpuBackend::mla_prefill (model-spec §3.5); checked by tests/ops case "mla_prefill".
// NOTE: a CUDA-core kernel: correct and simple first; the tensor-core version belongs in dev/kernels then sm90/.
#include <cfloat>

#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kQTile = 16, kKTile = 64, kThreads = 128, kLanesPerRow = 8, kMaxVCols = 16;  // v <= 128

struct Smem {  // offsets in floats of the dynamic shared memory
  int q, k, v, p, total;
};
__host__ __device__ inline Smem smem_layout(int qd, int vd) {
  Smem s;
  s.q = 0;
  s.k = s.q + kQTile * qd;
  s.v = s.k + kKTile * (qd + 1);  // +1: conflict-free column reads
  s.p = s.v + kKTile * vd;
  s.total = s.p + kQTile * kKTile;
  return s;
}

__global__ void __launch_bounds__(kThreads) mla_prefill_kernel(const MlaPrefillArgs a) {
  extern __shared__ float sm[];
  __shared__ int tile_info[2];
  const int qd = a.nope + a.rope, kvd = a.nope + a.v, H = a.heads, h = blockIdx.y;
  if (threadIdx.x == 0) {  // which (sequence, query tile) this block is
    int acc = 0, seq = -1, tile = 0;
    for (int s = 0; s < a.n_seqs; ++s) {
      const int nq = a.cu_q[s + 1] - a.cu_q[s];
      const int tiles = (nq + kQTile - 1) / kQTile;
      if (static_cast<int>(blockIdx.x) < acc + tiles) {
        seq = s;
        tile = blockIdx.x - acc;
        break;
      }
      acc += tiles;
    }
    tile_info[0] = seq;
    tile_info[1] = tile;
  }
  __syncthreads();
  const int seq = tile_info[0];
  if (seq < 0) return;
  const int q0 = a.cu_q[seq], nq = a.cu_q[seq + 1] - q0, k0 = a.cu_kv[seq], nk = a.cu_kv[seq + 1] - k0;
  // More queries than keys, or cu_q / cu_kv that point past q / kv (they are not prefix sums of the inputs).
  if (q0 < 0 || q0 + nq > a.n_q || k0 < 0 || nk < 0 || k0 + nk > a.n_kv || nk < nq) {
    if (threadIdx.x == 0 && h == 0) set_error(a.err, kErrPrefillLen);
    return;
  }
  const int i0 = tile_info[1] * kQTile;           // first query of the tile (within the sequence)
  const int rows = min(kQTile, nq - i0);
  const Smem L = smem_layout(qd, a.v);
  float* qs = sm + L.q;
  float* ks = sm + L.k;
  float* vs = sm + L.v;
  float* ps = sm + L.p;
  for (int e = threadIdx.x; e < kQTile * qd; e += kThreads) {
    const int r = e / qd, c = e % qd;
    qs[e] = r < rows ? ld_bf16(a.q + (static_cast<int64_t>(q0 + i0 + r) * H + h) * qd + c) : 0.f;
  }
  const int r = threadIdx.x / kLanesPerRow, lane = threadIdx.x % kLanesPerRow;
  const int last = nk - nq + i0 + r;  // absolute position of this row's query: keys t <= last are visible
  const int tile_last = nk - nq + i0 + rows - 1;
  float m = -FLT_MAX, l = 0.f;
  bool any = false;
  float o[kMaxVCols];
#pragma unroll
  for (int q = 0; q < kMaxVCols; ++q) o[q] = 0.f;

  for (int t0 = 0; t0 <= tile_last; t0 += kKTile) {
    __syncthreads();
    for (int e = threadIdx.x; e < kKTile * qd; e += kThreads) {
      const int kr = e / qd, c = e % qd, t = t0 + kr;
      float val = 0.f;
      if (t < nk) {
        val = c < a.nope ? ld_bf16(a.kv + (static_cast<int64_t>(k0 + t) * H + h) * kvd + c)
                         : ld_bf16(a.k_pe + static_cast<int64_t>(k0 + t) * a.rope + (c - a.nope));
      }
      ks[kr * (qd + 1) + c] = val;
    }
    for (int e = threadIdx.x; e < kKTile * a.v; e += kThreads) {
      const int kr = e / a.v, c = e % a.v, t = t0 + kr;
      vs[e] = t < nk ? ld_bf16(a.kv + (static_cast<int64_t>(k0 + t) * H + h) * kvd + a.nope + c) : 0.f;
    }
    __syncthreads();
    float s[kKTile / kLanesPerRow];
    float tmax = -FLT_MAX;
#pragma unroll
    for (int jj = 0; jj < kKTile / kLanesPerRow; ++jj) {
      const int kr = lane + kLanesPerRow * jj, t = t0 + kr;
      float d = 0.f;
      const float* qr = qs + r * qd;
      const float* kr_ = ks + kr * (qd + 1);
      for (int c = 0; c < qd; ++c) d = fmaf(qr[c], kr_[c], d);
      const bool visible = r < rows && t <= last;
      s[jj] = visible ? d * a.softmax_scale : -FLT_MAX;
      if (visible) tmax = fmaxf(tmax, s[jj]);
    }
#pragma unroll
    for (int off = kLanesPerRow / 2; off > 0; off >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, off));
    const bool tile_any = tmax > -FLT_MAX;
    const float m_new = tile_any ? fmaxf(m, tmax) : m;
    const float corr = (any && tile_any) ? expf(m - m_new) : (any ? 1.f : 0.f);
    float psum = 0.f;
#pragma unroll
    for (int jj = 0; jj < kKTile / kLanesPerRow; ++jj) {
      const int kr = lane + kLanesPerRow * jj;
      const float p = (s[jj] > -FLT_MAX) ? expf(s[jj] - m_new) : 0.f;
      ps[r * kKTile + kr] = p;
      psum += p;
    }
#pragma unroll
    for (int off = kLanesPerRow / 2; off > 0; off >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, off);
    if (tile_any) {
      l = l * corr + psum;
      m = m_new;
#pragma unroll
      for (int q = 0; q < kMaxVCols; ++q) o[q] *= corr;
      any = true;
    }
    __syncwarp();  // the 8 lanes of a row are in one warp: their p values are visible to each other
#pragma unroll
    for (int q = 0; q < kMaxVCols; ++q) {
      const int c = lane + kLanesPerRow * q;
      if (c >= a.v) break;
      float acc = o[q];
      for (int kr = 0; kr < kKTile; ++kr) acc = fmaf(ps[r * kKTile + kr], vs[kr * a.v + c], acc);
      o[q] = acc;
    }
  }
  if (r >= rows) return;
  const float inv = l > 0.f ? 1.f / l : 0.f;
  bf16_t* out = a.out + (static_cast<int64_t>(q0 + i0 + r) * H + h) * a.v;
#pragma unroll
  for (int q = 0; q < kMaxVCols; ++q) {
    const int c = lane + kLanesPerRow * q;
    if (c < a.v) out[c] = to_bf16(o[q] * inv);
  }
}

}  // namespace

size_t mla_prefill_smem_bytes(int nope, int rope, int v) {
  return static_cast<size_t>(smem_layout(nope + rope, v).total) * sizeof(float);
}

void launch_mla_prefill(const MlaPrefillArgs& a, cudaStream_t s) {
  if (a.n_q == 0 || a.n_seqs == 0 || a.heads == 0) return;
  const size_t smem = mla_prefill_smem_bytes(a.nope, a.rope, a.v);
  cudaFuncSetAttribute(mla_prefill_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  // Σ ceil(nq_s / 16) <= n_q / 16 + n_seqs: an upper bound on the tiles; surplus blocks exit at once.
  const dim3 grid(static_cast<unsigned>((a.n_q + kQTile - 1) / kQTile + a.n_seqs), static_cast<unsigned>(a.heads));
  mla_prefill_kernel<<<grid, kThreads, smem, s>>>(a);
}

}  // namespace dsv3::cuda
