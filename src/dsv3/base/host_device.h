// host_device.h: DSV3_HD marks the few base functions that CUDA kernels share with host code (base).
// Expands to __host__ __device__ under nvcc and to nothing elsewhere, so base stays free of CUDA headers.
#pragma once

#if defined(__CUDACC__)
#define DSV3_HD __host__ __device__
#else
#define DSV3_HD
#endif
