// token_ids.cu: fill_token_ids — a step's input ids taken from the previous step's sampled ids on the device, the
// overlap scheduler's hand-off (backend/cuda).
// Parallelisation: one thread per (row, index) pair; rows are distinct, so no two threads write one id.
// Precision: i32 data movement, bitwise; a negative source (a sampler failure code) is written as 0.
// Reference: CpuBackend::fill_token_ids (cpu_sample.cpp); checked by tests/ops cases fill_token_ids.
#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {
namespace {

__global__ void fill_token_ids_kernel(const FillTokenIdsArgs a) {
  const int j = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (j >= a.m) return;
  const int row = a.map[2 * j], idx = a.map[2 * j + 1];
  if (row < 0 || row >= a.n || idx < 0 || idx >= a.k) {
    set_error(a.err, kErrFillTokens);
    return;
  }
  const int32_t v = a.src[idx];
  a.ids[row] = v < 0 ? 0 : v;
}

}  // namespace

void launch_fill_token_ids(const FillTokenIdsArgs& a, cudaStream_t s) {
  if (a.m == 0) return;
  constexpr int kThreads = 128;
  fill_token_ids_kernel<<<(a.m + kThreads - 1) / kThreads, kThreads, 0, s>>>(a);
}

}  // namespace dsv3::cuda
