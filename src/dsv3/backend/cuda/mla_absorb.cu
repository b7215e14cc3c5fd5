// mla_absorb.cu: the data-movement half of mla_absorb_q — copying q_pe behind the absorbed latent query
// (backend/cuda). The GEMM halves of mla_absorb_q / mla_absorb_v run as cuBLASLt strided-batched bf16 GEMMs (one
// batch entry per head; gemm.cpp), with launch_batched_gemm_fallback (linear.cu) for strides cuBLASLt rejects.
// Parallelisation: one block per row. Precision: bitwise copy.
// Reference: CpuBackend::mla_absorb_q; checked by tests/ops case "mla_absorb_q".
#include "dsv3/backend/cuda/common.cuh"

namespace dsv3::cuda {
namespace {

__global__ void copy_rows_kernel(const CopyRowsArgs a) {
  const int r = blockIdx.x;
  const bf16_t* src = a.src + static_cast<int64_t>(r) * a.src_stride;
  bf16_t* dst = a.dst + static_cast<int64_t>(r) * a.dst_stride;
  for (int c = threadIdx.x; c < a.width; c += blockDim.x) dst[c] = src[c];
}

}  // namespace

void launch_copy_rows(const CopyRowsArgs& a, cudaStream_t s) {
  if (a.rows == 0 || a.width == 0) return;
  copy_rows_kernel<<<a.rows, 64, 0, s>>>(a);
}

}  // namespace dsv3::cuda
