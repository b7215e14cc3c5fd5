// moe.cu: routed-expert plumbing — count tokens per expert, permute rows by expert, weighted combine (backend/cuda).
// count and permute serve moe_experts' per-expert loop; combine serves it and the grouped path (moe_grouped.cu).
// Parallelisation: count and permute one thread per (token, k) entry (atomics; the permuted order inside an expert
// is arbitrary, nothing depends on it); combine one block per (token, 1024 columns), 8 columns per thread.
// Precision: combine sums w·y in fp32 in ascending expert id (then k) order, as the reference does, one bf16 rounding.
// Reference: CpuBackend::moe_experts (model-spec §4.3); checked by tests/ops case "moe_experts".
#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {
namespace {

__global__ void moe_count_kernel(const MoeCountArgs a) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= a.entries) return;
  const int e = a.ids[i];
  if (e < 0 || e >= a.n_experts) {
    set_error(a.err, kErrExpertId);
    return;
  }
  atomicAdd(&a.counts[e], 1);
}

// One block per entry (t, k): claims a row of its expert and copies x[t] there.
__global__ void moe_permute_kernel(const MoePermuteArgs a) {
  const int i = blockIdx.x, t = i / a.top_k;
  const int e = a.ids[i];
  __shared__ int row;
  if (threadIdx.x == 0) {
    row = (e < 0 || e >= a.n_experts) ? -1 : a.offsets[e] + atomicAdd(&a.cursor[e], 1);
    a.row_of[i] = row;
  }
  __syncthreads();
  if (row < 0) return;
  const bf16_t* src = a.x + static_cast<int64_t>(t) * a.d;
  bf16_t* dst = a.x_perm + static_cast<int64_t>(row) * a.d;
  for (int c = threadIdx.x; c < a.d; c += blockDim.x) dst[c] = src[c];
}

constexpr int kMaxTopK = 32;

// Grid (token, column chunk of kCombineCols). The token's entries are put in the reference's accumulation order
// (expert id, then k) with their rows and weights in shared memory once; then each thread owns 8 adjacent columns
// and issues the loads of all the token's rows (16 bytes each) before it adds: at one token this kernel is a few
// memory round trips, where a loop over columns with the row lookups inside was a chain of hundreds.
constexpr int kCombineThreads = 128, kCombineCols = 8 * kCombineThreads;

__global__ void moe_combine_kernel(const MoeCombineArgs a) {
  const int t = blockIdx.x;
  __shared__ int s_row[kMaxTopK];
  __shared__ float s_w[kMaxTopK];
  __shared__ int s_n;
  if (threadIdx.x == 0) {  // entries of token t by (expert id, k): the reference's accumulation order
    int order[kMaxTopK];
    int n = 0;
    for (int k = 0; k < a.top_k; ++k) {
      const int e = a.ids[t * a.top_k + k];
      if (e < 0 || e >= a.n_experts) continue;
      int pos = n++;
      while (pos > 0 && a.ids[t * a.top_k + order[pos - 1]] > e) {
        order[pos] = order[pos - 1];
        --pos;
      }
      order[pos] = k;
    }
    for (int q = 0; q < n; ++q) {
      s_row[q] = a.row_of[t * a.top_k + order[q]];
      s_w[q] = a.weights[t * a.top_k + order[q]];
    }
    s_n = n;
  }
  __syncthreads();
  const int n = s_n;
  const int c0 = blockIdx.y * kCombineCols + threadIdx.x * 8;
  if (c0 >= a.d) return;
  bf16_t* out = a.out + static_cast<int64_t>(t) * a.d;
  const bool vec = a.d % 8 == 0 && reinterpret_cast<uintptr_t>(a.y_perm) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(a.out) % 16 == 0;
  if (vec) {
    float acc[8] = {};
    for (int q0 = 0; q0 < n; q0 += 8) {  // 8 rows' loads in flight, then their adds in order
      uint4 y[8];
#pragma unroll
      for (int q = 0; q < 8; ++q)
        if (q0 + q < n) y[q] = *reinterpret_cast<const uint4*>(a.y_perm + static_cast<int64_t>(s_row[q0 + q]) * a.d + c0);
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        if (q0 + q >= n) break;
        const bf16_t* ye = reinterpret_cast<const bf16_t*>(&y[q]);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] = __fadd_rn(acc[e], __fmul_rn(s_w[q0 + q], __bfloat162float(ye[e])));
      }
    }
    uint4 ov;
    bf16_t* oe = reinterpret_cast<bf16_t*>(&ov);
#pragma unroll
    for (int e = 0; e < 8; ++e) oe[e] = to_bf16(acc[e]);
    *reinterpret_cast<uint4*>(out + c0) = ov;
    return;
  }
  for (int c = c0; c < min(c0 + 8, a.d); ++c) {
    float acc = 0.f;
    for (int q = 0; q < n; ++q)
      acc = __fadd_rn(acc, __fmul_rn(s_w[q], ld_bf16(a.y_perm + static_cast<int64_t>(s_row[q]) * a.d + c)));
    out[c] = to_bf16(acc);
  }
}

}  // namespace

void launch_moe_count(const MoeCountArgs& a, cudaStream_t s) {
  cudaMemsetAsync(a.counts, 0, sizeof(int32_t) * a.n_experts, s);
  if (a.entries == 0) return;
  moe_count_kernel<<<(a.entries + 255) / 256, 256, 0, s>>>(a);
}

void launch_moe_permute(const MoePermuteArgs& a, cudaStream_t s) {
  cudaMemsetAsync(a.cursor, 0, sizeof(int32_t) * a.n_experts, s);
  if (a.n * a.top_k == 0) return;
  moe_permute_kernel<<<a.n * a.top_k, 128, 0, s>>>(a);
}

void launch_moe_combine(const MoeCombineArgs& a, cudaStream_t s) {
  if (a.n == 0) return;
  moe_combine_kernel<<<dim3(a.n, (a.d + kCombineCols - 1) / kCombineCols), kCombineThreads, 0, s>>>(a);
}

}  // namespace dsv3::cuda
