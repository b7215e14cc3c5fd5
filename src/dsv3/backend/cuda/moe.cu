// moe.cu: routed-expert plumbing — count tokens per expert, permute rows by expert, weighted combine (backend/cuda).
// count and permute serve moe_experts' per-expert loop; combine serves it and the grouped path (moe_grouped.cu).
// Parallelisation: count and permute one thread per (token, k) entry (atomics; the permuted order inside an expert
// is arbitrary, nothing depends on it); combine one block per token.
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

__global__ void moe_combine_kernel(const MoeCombineArgs a) {
  const int t = blockIdx.x;
  __shared__ int order[kMaxTopK];
  if (threadIdx.x == 0) {  // entries of token t by (expert id, k): the reference's accumulation order
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
    for (int k = n; k < kMaxTopK; ++k) order[k] = -1;
  }
  __syncthreads();
  for (int c = threadIdx.x; c < a.d; c += blockDim.x) {
    float acc = 0.f;
    for (int q = 0; q < a.top_k && order[q] >= 0; ++q) {
      const int k = order[q];
      const int row = a.row_of[t * a.top_k + k];
      acc = __fadd_rn(acc, __fmul_rn(a.weights[t * a.top_k + k], ld_bf16(a.y_perm + static_cast<int64_t>(row) * a.d + c)));
    }
    a.out[static_cast<int64_t>(t) * a.d + c] = to_bf16(acc);
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
  moe_combine_kernel<<<a.n, 256, 0, s>>>(a);
}

}  // namespace dsv3::cuda
