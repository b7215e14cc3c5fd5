// gemm.h: cuBLASLt matmuls for the CUDA backend — bf16 (strided-batched) and DeepSeek block-scaled FP8 (backend/cuda).
// Problems are stated in cuBLASLt's column-major terms: D[m x n] = op(A)[m x k] · op(B)[k x n]. Plans (descriptors
// and the heuristic's algorithm) are cached per shape, strides and pointer alignment. run() returns false when
// cuBLASLt offers no algorithm, so the caller can take its own fallback kernel.
#pragma once

#include <cstdint>
#include <map>
#include <tuple>

#include "dsv3/backend/cuda/cuda_utils.h"

namespace dsv3::cuda {

struct GemmProblem {
  cudaDataType_t ab_type = CUDA_R_16BF;  // CUDA_R_16BF or CUDA_R_8F_E4M3
  cudaDataType_t d_type = CUDA_R_16BF;   // CUDA_R_16BF or CUDA_R_32F
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldd = 0;
  int batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_d = 0;  // elements
  // FP8 only: A (weights) has one fp32 scale per 128x128 block (scale_inv layout [ceil(m/128), k/128]); B
  // (activations) one per 128 K-elements of each column, stored [k/128][n] (outer-dimension major).
  bool block_scaled = false;
};

class LtGemm {
 public:
  LtGemm();
  // Enqueues D = op(A)·op(B) on `stream`. Returns false (and enqueues nothing) if cuBLASLt has no algorithm.
  bool run(const GemmProblem& p, const void* a, const void* b, void* d, const float* a_scale, const float* b_scale,
           cudaStream_t stream);

 private:
  struct Plan {
    LtMatmulDesc op;
    LtLayout a, b, d;
    cublasLtMatmulAlgo_t algo{};
    bool ok = false;
  };
  using Key = std::tuple<int, int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int64_t,
                         int64_t, int64_t, bool, int, int, int>;
  Plan& plan(const GemmProblem& p, int align_a, int align_b, int align_d, const float* a_scale, const float* b_scale);

  LtHandle handle_;
  DeviceBuffer workspace_;
  std::map<Key, Plan> plans_;
};

}  // namespace dsv3::cuda
