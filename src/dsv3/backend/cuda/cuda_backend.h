// cuda_backend.h: the public entry points of the CUDA backend (backend/cuda).
// Deliberately free of CUDA headers, so that host code (factory.cpp, tools, tests) stays CUDA-free; everything that
// needs the toolkit lives behind these two functions.
#pragma once

#include <memory>

#include "dsv3/backend/backend.h"

namespace dsv3 {

// Number of visible CUDA devices; 0 when there is no driver or no device (never throws).
int cuda_device_count();

struct CudaBackendOptions {
  bool sync_each_op = false;        // DSV3_CUDA_SYNC=1: synchronize after every op and name the op that failed
  bool force_gemm_fallback = false; // DSV3_CUDA_GEMM=fallback: own GEMM kernels instead of cuBLASLt (tests)
  bool fp8_gemm_fallback = false;   // DSV3_CUDA_FP8_GEMM=fallback: own FP8 kernel, cuBLASLt for bf16 only
  bool no_fp8_gemv = false;         // DSV3_CUDA_FP8_GEMV=0: no decode GEMV; 1..16 rows go to cuBLASLt/fallback
  bool simple_mla_decode = false;   // DSV3_MLA_DECODE=simple: the CUDA-core decode kernel instead of WMMA (tests)
  // DSV3_MLA_PREFILL=simple: the CUDA-core prefill kernel instead of the tensor-core one (tests); =mma64: the
  // tensor-core kernel with 64 query rows per CTA instead of 128 (=mma, the default).
  bool simple_mla_prefill = false;
  int mla_prefill_q_rows = 128;     // 128 or 64
  static CudaBackendOptions from_env();
};

// A backend on the current device with its own stream, cuBLASLt handle and workspace; options from the environment.
std::unique_ptr<Backend> make_cuda_backend();
std::unique_ptr<Backend> make_cuda_backend(const CudaBackendOptions& options);

}  // namespace dsv3
