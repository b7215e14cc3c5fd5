// cuda_utils.cpp: error reporting, handle factories, the device allocator and buffers (backend/cuda).
#include "dsv3/backend/cuda/cuda_utils.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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
    int dev = 0;
    (void)cudaGetDevice(&dev);
    FAIL("{}", out_of_memory_message("CUDA out of memory on device " + std::to_string(dev), bytes,
                                     AllocationPurpose::current(), static_cast<int64_t>(free_b),
                                     static_cast<int64_t>(total_b)));
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
    FAIL("{}", out_of_memory_message("out of pinned host memory", bytes, AllocationPurpose::current(), -1, -1));
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

namespace {

class PinnedStagingSink final : public StagingSink {
 public:
  PinnedStagingSink(int n_slots, size_t slot_bytes) : stream_(make_stream()), slot_bytes_(slot_bytes) {
    AllocationPurpose why(fmt::format("{} pinned staging buffers of {} MB (weight loading)", n_slots, slot_bytes >> 20));
    for (int i = 0; i < n_slots; ++i) {
      slots_.emplace_back(slot_bytes);
      done_.push_back(make_event());
      pending_.push_back(false);
    }
  }
  // NOTE: members die after this body, the stream last (declared first): no DMA reads a freed pinned slot.
  ~PinnedStagingSink() override { (void)cudaStreamSynchronize(stream_.get()); }

  int n_slots() const override { return static_cast<int>(slots_.size()); }
  size_t slot_bytes() const override { return slot_bytes_; }
  void* slot_data(int slot) override { return slots_.at(slot).data(); }
  void wait(int slot) override {
    if (!pending_.at(slot)) return;
    CUDA_CHECK(cudaEventSynchronize(done_[slot].get()));
    pending_[slot] = false;
  }
  void transfer(int slot, size_t offset, void* dst, size_t bytes) override {
    CHECK(offset + bytes <= slot_bytes_, "staging transfer [{}, {}) outside a slot of {}", offset, offset + bytes,
          slot_bytes_);
    CUDA_CHECK(cudaMemcpyAsync(dst, static_cast<const char*>(slots_.at(slot).data()) + offset, bytes,
                               cudaMemcpyHostToDevice, stream_.get()));
  }
  void submitted(int slot) override {
    CUDA_CHECK(cudaEventRecord(done_.at(slot).get(), stream_.get()));
    pending_[slot] = true;
  }
  void drain() override {
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    std::fill(pending_.begin(), pending_.end(), false);
  }

 private:
  Stream stream_;
  size_t slot_bytes_;
  std::vector<PinnedBuffer> slots_;
  std::vector<Event> done_;
  std::vector<bool> pending_;
};

}  // namespace

std::unique_ptr<StagingSink> make_pinned_staging_sink(int n_slots, size_t slot_bytes) {
  CHECK(n_slots >= 1 && slot_bytes > 0, "staging sink of {} slots of {} bytes", n_slots, slot_bytes);
  return std::make_unique<PinnedStagingSink>(n_slots, slot_bytes);
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
