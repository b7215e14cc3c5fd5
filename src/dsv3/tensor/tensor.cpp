// tensor.cpp: shapes, views, the host allocator and owning tensors (tensor).
#include "dsv3/tensor/tensor.h"

#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace dsv3 {

size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kFP8E4M3: return 1;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kU8: return 1;
  }
  CHECK(false, "bad dtype {}", static_cast<int>(dt));
  return 0;
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kFP8E4M3: return "F8_E4M3";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kU8: return "U8";
  }
  return "?";
}

Shape::Shape(std::initializer_list<int64_t> d) {
  CHECK(d.size() <= kMaxDims, "shape with {} dims", d.size());
  for (int64_t v : d) dims[ndim++] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (dims[i] != o.dims[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += fmt::format("{}{}", i ? ", " : "", dims[i]);
  return s + "]";
}

TensorView TensorView::rows(int64_t begin, int64_t end) const {
  CHECK(shape.ndim >= 1 && begin >= 0 && begin <= end && end <= shape[0], "rows [{}, {}) of {}", begin, end,
        shape.str());
  TensorView v = *this;
  const int64_t row = shape[0] ? numel() / shape[0] : 0;
  v.data = static_cast<char*>(data) + static_cast<size_t>(begin * row) * dtype_size(dtype);
  v.shape.dims[0] = end - begin;
  return v;
}

TensorView TensorView::reshape(Shape s) const {
  CHECK(s.numel() == numel(), "reshape {} -> {}", shape.str(), s.str());
  TensorView v = *this;
  v.shape = s;
  return v;
}

namespace {
class HostAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!p) {
      FAIL("{}", out_of_memory_message("out of host memory", bytes, AllocationPurpose::current(), -1, -1));
    }
    return p;
  }
  void deallocate(void* p, size_t) override { std::free(p); }
  Device device() const override { return Device::kCpu; }
};
}  // namespace

Allocator& host_allocator() {
  static HostAllocator a;
  return a;
}

namespace {
thread_local std::vector<std::string> t_purposes;
}  // namespace

AllocationPurpose::AllocationPurpose(std::string what) { t_purposes.push_back(std::move(what)); }
AllocationPurpose::~AllocationPurpose() { t_purposes.pop_back(); }
std::string AllocationPurpose::current() { return t_purposes.empty() ? std::string() : t_purposes.back(); }

std::string out_of_memory_message(const std::string& what, size_t bytes, const std::string& purpose, int64_t free_b,
                                  int64_t total_b) {
  std::string msg = fmt::format("{}: cannot allocate {:.2f} GB ({} bytes)", what, static_cast<double>(bytes) / 1e9,
                                bytes);
  if (!purpose.empty()) msg += " for " + purpose;
  if (free_b >= 0)
    msg += fmt::format("; {:.2f} GB ({} bytes) free of {:.2f} GB", static_cast<double>(free_b) / 1e9, free_b,
                       static_cast<double>(total_b) / 1e9);
  return msg;
}

Tensor::Tensor(DType dtype, Shape shape, Allocator& alloc) : alloc_(&alloc) {
  view_.dtype = dtype;
  view_.shape = shape;
  view_.device = alloc.device();
  bytes_ = view_.nbytes();
  view_.data = alloc.allocate(bytes_ ? bytes_ : 1);
}

Tensor::~Tensor() {
  if (alloc_ && view_.data) alloc_->deallocate(view_.data, bytes_);
}

Tensor::Tensor(Tensor&& o) noexcept : view_(o.view_), alloc_(o.alloc_), bytes_(o.bytes_) {
  o.view_.data = nullptr;
  o.alloc_ = nullptr;
}

Tensor& Tensor::operator=(Tensor&& o) noexcept {
  if (this != &o) {
    if (alloc_ && view_.data) alloc_->deallocate(view_.data, bytes_);
    view_ = o.view_;
    alloc_ = o.alloc_;
    bytes_ = o.bytes_;
    o.view_.data = nullptr;
    o.alloc_ = nullptr;
  }
  return *this;
}

Tensor make_host_tensor(DType dtype, Shape shape, const float* values) {
  Tensor t(dtype, shape);
  const int64_t n = t.numel();
  if (dtype == DType::kF32) {
    for (int64_t i = 0; i < n; ++i) t.as<float>()[i] = values[i];
  } else {
    CHECK(dtype == DType::kBF16, "make_host_tensor: dtype {}", dtype_name(dtype));
    for (int64_t i = 0; i < n; ++i) t.as<bf16>()[i] = f32_to_bf16(values[i]);
  }
  return t;
}

float load_float(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32: return t.as<const float>()[i];
    case DType::kBF16: return bf16_to_f32(t.as<const bf16>()[i]);
    case DType::kFP8E4M3: return fp8e4m3_to_f32(t.as<const uint8_t>()[i]);
    default: CHECK(false, "load_float on {}", dtype_name(t.dtype));
  }
  return 0;
}

}  // namespace dsv3
