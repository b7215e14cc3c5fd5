// cuda_utils.cpp: error reporting, handle factories, the device allocator and buffers (backend/cuda).
#include "dsv3/backend/cuda/cuda_utils.h"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace dsv3::cuda {
namespace detail {

void cuda_failed(const char* expr, cudaError_t err, const char* file, int line) {
  dsv3::detail::check_failed(file, line, expr,
                             fmt::format("CUDA error {} ({}): {}", static_cast<int>(err), cudaGetErrorName(err),
                                         cudaGetErrorString(err)));
}

void cublas_failed(const char* expr, cublasStatus_t st, const char* file, int line) {
  dsv3::detail::check_failed(file, line, expr, fmt::format("cuBLAS status {}", static_cast<int>(st)));
}

}  // namespace detail

Stream make_stream() {
  cudaStream_t s = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Stream(s);
}

Event make_event() {
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreate(&e));
  return Event(e);
}

LtHandle make_lt_handle() {
  cublasLtHandle_t h = nullptr;
  CUBLAS_CHECK(cublasLtCreate(&h));
  return LtHandle(h);
}

void* DeviceAllocator::allocate(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear the (non-sticky) allocation error
    size_t free_b = 0, total_b = 0;
    (void)cudaMemGetInfo(&free_b, &total_b);
    FAIL("CUDA out of memory: cannot allocate {:.3f} GiB ({} bytes); {:.3f} GiB free of {:.3f} GiB",
         static_cast<double>(bytes) / (1 << 30), bytes, static_cast<double>(free_b) / (1 << 30),
         static_cast<double>(total_b) / (1 << 30));
  }
  CUDA_CHECK(err);
  return p;
}

void DeviceAllocator::deallocate(void* p, size_t) {
  if (p) CUDA_CHECK(cudaFree(p));
}

DeviceAllocator& device_allocator() {
  static DeviceAllocator a;
  return a;
}

void* PinnedAllocator::allocate(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMallocHost(&p, bytes ? bytes : 1);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    FAIL("cannot allocate {} bytes of pinned host memory", bytes);
  }
  CUDA_CHECK(err);
  return p;
}

void PinnedAllocator::deallocate(void* p, size_t) {
  if (p) CUDA_CHECK(cudaFreeHost(p));
}

PinnedAllocator& pinned_allocator() {
  static PinnedAllocator a;
  return a;
}

bool is_device_pointer(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
}

}  // namespace dsv3::cuda
