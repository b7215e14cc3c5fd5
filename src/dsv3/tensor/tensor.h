// tensor.h: DType, Shape, TensorView (non-owning) and Tensor (owning) — the currency of every module (tensor).
// Views in, owners out: ops take TensorViews; loaders and backends return Tensors. Memory comes from an Allocator
// (host by default; backend/cuda registers a device allocator), so this module needs no CUDA headers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "dsv3/base/error.h"
#include "dsv3/base/numeric.h"

namespace dsv3 {

enum class DType : uint8_t { kF32, kBF16, kFP8E4M3, kI32, kI64, kU8 };
enum class Device : uint8_t { kCpu, kCuda };

size_t dtype_size(DType dt);
const char* dtype_name(DType dt);  // safetensors spelling: F32, BF16, F8_E4M3, I32, I64, U8

struct Shape {
  static constexpr int kMaxDims = 4;
  std::array<int64_t, kMaxDims> dims{};
  int ndim = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  int64_t operator[](int i) const { return dims[i < 0 ? ndim + i : i]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[a, b, c]"
};

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Shape shape;
  Device device = Device::kCpu;

  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const { return shape[i]; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  explicit operator bool() const { return data != nullptr; }
  // A view of rows [begin, end) of the first dimension.
  TensorView rows(int64_t begin, int64_t end) const;
  TensorView reshape(Shape s) const;
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;  // throws dsv3::Error when out of memory
  virtual void deallocate(void* p, size_t bytes) = 0;
  virtual Device device() const = 0;
};

Allocator& host_allocator();

// Names what this thread's allocations are for while it lives ("the KV cache pool", "weight lm_head.weight"), so an
// out-of-memory error can say so. Scopes nest; the innermost names the allocation.
class AllocationPurpose {
 public:
  explicit AllocationPurpose(std::string what);
  ~AllocationPurpose();
  AllocationPurpose(const AllocationPurpose&) = delete;
  AllocationPurpose& operator=(const AllocationPurpose&) = delete;
  static std::string current();  // "" outside every scope
};

// The text of every allocation failure: "CUDA out of memory on device 0: cannot allocate 1.20 GB (1200000000 bytes)
// for the KV cache pool; 0.50 GB (500000000 bytes) free of 150.11 GB". free_b < 0 leaves out the free/total part.
std::string out_of_memory_message(const std::string& what, size_t bytes, const std::string& purpose, int64_t free_b,
                                  int64_t total_b);

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Shape shape, Allocator& alloc = host_allocator());
  ~Tensor();
  Tensor(Tensor&& o) noexcept;
  Tensor& operator=(Tensor&& o) noexcept;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  const TensorView& view() const { return view_; }
  operator TensorView() const { return view_; }
  template <typename T>
  T* as() const {
    return view_.as<T>();
  }
  DType dtype() const { return view_.dtype; }
  const Shape& shape() const { return view_.shape; }
  int64_t numel() const { return view_.numel(); }
  size_t nbytes() const { return view_.nbytes(); }
  bool empty() const { return view_.data == nullptr; }

 private:
  TensorView view_;
  Allocator* alloc_ = nullptr;
  size_t bytes_ = 0;
};

// A linear layer's weight: FP8 e4m3 with 128x128 block scales, or BF16 (scale_inv empty). y = x · weightᵀ.
struct LinearWeight {
  TensorView weight;     // [out, in] FP8E4M3 or BF16
  TensorView scale_inv;  // [ceil(out/128), ceil(in/128)] F32 dequantization multipliers; empty for BF16
  bool fp8() const { return weight.dtype == DType::kFP8E4M3; }
};

// Host tensor filled with the given floats, converted to dtype (kF32 or kBF16).
Tensor make_host_tensor(DType dtype, Shape shape, const float* values);
// Element i of a host view as float (kF32, kBF16, kFP8E4M3).
float load_float(const TensorView& t, int64_t i);

}  // namespace dsv3
