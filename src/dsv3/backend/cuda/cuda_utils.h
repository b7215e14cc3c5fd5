// cuda_utils.h: CUDA_CHECK / CUBLAS_CHECK and the RAII owners of every CUDA handle (backend/cuda).
// Host-only header (compiled by the C++ compiler); kernels never include it. CUDA errors abort (they are sticky, so
// recovery is meaningless); the one exception, allocation failure, is reported by DeviceAllocator as dsv3::Error.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "dsv3/backend/staged_upload.h"
#include "dsv3/tensor/tensor.h"

namespace dsv3::cuda {
namespace detail {
[[noreturn]] void cuda_failed(const char* expr, cudaError_t err, const char* file, int line);
[[noreturn]] void cublas_failed(const char* expr, cublasStatus_t st, const char* file, int line);
}  // namespace detail
}  // namespace dsv3::cuda

#ifndef CUDA_CHECK
#define CUDA_CHECK(expr)                                                                      \
  do {                                                                                        \
    cudaError_t dsv3_err_ = (expr);                                                           \
    if (dsv3_err_ != cudaSuccess) [[unlikely]]                                                \
      ::dsv3::cuda::detail::cuda_failed(#expr, dsv3_err_, __FILE__, __LINE__);                \
  } while (0)
#endif

#ifndef CUBLAS_CHECK
#define CUBLAS_CHECK(expr)                                                                    \
  do {                                                                                        \
    cublasStatus_t dsv3_st_ = (expr);                                                         \
    if (dsv3_st_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                       \
      ::dsv3::cuda::detail::cublas_failed(#expr, dsv3_st_, __FILE__, __LINE__);               \
  } while (0)
#endif

namespace dsv3::cuda {

// A move-only owner of one handle: Traits::destroy(h) runs once, when the owner dies holding a handle.
template <typename H, typename Traits>
class Handle {
 public:
  Handle() = default;
  explicit Handle(H h) : h_(h) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : h_(std::exchange(o.h_, H{})) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, H{});
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  H get() const { return h_; }
  explicit operator bool() const { return h_ != H{}; }
  void reset() {
    if (h_ != H{}) Traits::destroy(h_);
    h_ = H{};
  }

 private:
  H h_{};
};

struct StreamTraits { static void destroy(cudaStream_t s) { CUDA_CHECK(cudaStreamDestroy(s)); } };
struct EventTraits { static void destroy(cudaEvent_t e) { CUDA_CHECK(cudaEventDestroy(e)); } };
struct GraphTraits { static void destroy(cudaGraph_t g) { CUDA_CHECK(cudaGraphDestroy(g)); } };
struct GraphExecTraits { static void destroy(cudaGraphExec_t g) { CUDA_CHECK(cudaGraphExecDestroy(g)); } };
struct LtTraits { static void destroy(cublasLtHandle_t h) { CUBLAS_CHECK(cublasLtDestroy(h)); } };
struct LtDescTraits { static void destroy(cublasLtMatmulDesc_t d) { CUBLAS_CHECK(cublasLtMatmulDescDestroy(d)); } };
struct LtLayoutTraits {
  static void destroy(cublasLtMatrixLayout_t l) { CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(l)); }
};
struct LtPrefTraits {
  static void destroy(cublasLtMatmulPreference_t p) { CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(p)); }
};

using Stream = Handle<cudaStream_t, StreamTraits>;
using Event = Handle<cudaEvent_t, EventTraits>;
using Graph = Handle<cudaGraph_t, GraphTraits>;
using GraphExec = Handle<cudaGraphExec_t, GraphExecTraits>;
using LtHandle = Handle<cublasLtHandle_t, LtTraits>;
using LtMatmulDesc = Handle<cublasLtMatmulDesc_t, LtDescTraits>;
using LtLayout = Handle<cublasLtMatrixLayout_t, LtLayoutTraits>;
using LtPreference = Handle<cublasLtMatmulPreference_t, LtPrefTraits>;

Stream make_stream();  // non-blocking with respect to the legacy default stream
Event make_event();
LtHandle make_lt_handle();

// Device memory from cudaMalloc; out of memory throws dsv3::Error with the request, what it was for
// (AllocationPurpose) and the free/total numbers of that moment.
class DeviceAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override;
  void deallocate(void* p, size_t bytes) override;
  Device device() const override { return Device::kCuda; }
};
DeviceAllocator& device_allocator();

// Page-locked host memory (cudaMallocHost) for staging copies that must be asynchronous.
class PinnedAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override;  // throws dsv3::Error when out of pinned memory
  void deallocate(void* p, size_t bytes) override;
  Device device() const override { return Device::kCpu; }
};
PinnedAllocator& pinned_allocator();

// An owning, move-only raw buffer from an allocator (scratch space that is not a Tensor).
class RawBuffer {
 public:
  RawBuffer() = default;
  RawBuffer(size_t bytes, Allocator& alloc) : alloc_(&alloc), data_(alloc.allocate(bytes)), bytes_(bytes) {}
  ~RawBuffer() { reset(); }
  RawBuffer(RawBuffer&& o) noexcept { *this = std::move(o); }
  RawBuffer& operator=(RawBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      std::swap(alloc_, o.alloc_);
      std::swap(data_, o.data_);
      std::swap(bytes_, o.bytes_);
    }
    return *this;
  }
  RawBuffer(const RawBuffer&) = delete;
  RawBuffer& operator=(const RawBuffer&) = delete;
  void* data() const { return data_; }
  size_t size() const { return bytes_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  void reset() {
    if (data_) alloc_->deallocate(data_, bytes_);
    data_ = nullptr;
    bytes_ = 0;
  }
  Allocator* alloc_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Device memory (cudaMalloc).
struct DeviceBuffer : RawBuffer {
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : RawBuffer(bytes, device_allocator()) {}
};

// Pinned host memory (cudaMallocHost).
struct PinnedBuffer : RawBuffer {
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes) : RawBuffer(bytes, pinned_allocator()) {}
};

// The CUDA side of a staged upload (backend/staged_upload.h): n_slots pinned buffers of slot_bytes, one non-blocking
// stream of cudaMemcpyAsync host -> device, one event per slot recorded after the slot's transfers. The current
// device is the destination. Its destructor waits for the stream before the pinned memory is freed.
std::unique_ptr<StagingSink> make_pinned_staging_sink(int n_slots, size_t slot_bytes);

// True when p points to device (or managed) memory that kernels can dereference.
bool is_device_pointer(const void* p);

}  // namespace dsv3::cuda
