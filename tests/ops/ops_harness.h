// ops_harness.h: helpers of the CPU-vs-CUDA op tests (tests/ops): seeded random inputs that are never zero, device
// tensors with guard regions (sentinels) and poisoned outputs, and comparisons that diagnose (shape, first and worst
// mismatch with coordinates, pass %, cosine, NMSE, NaN/Inf positions). In the style of ggml's test-backend-ops.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "dsv3/backend/backend.h"

namespace dsv3::ops_test {

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  float normal(float stddev = 1.f) { return std::normal_distribution<float>(0.f, stddev)(gen_); }
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen_); }
  int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen_); }  // [lo, hi]
  std::mt19937_64& gen() { return gen_; }

 private:
  std::mt19937_64 gen_;
};

// Host tensors. bf16 and f32 values are drawn from N(0, stddev²) and never zero (a zero is replaced by ±stddev/2).
Tensor rand_bf16(Rng& rng, Shape shape, float stddev = 1.f);
Tensor rand_f32(Rng& rng, Shape shape, float lo, float hi);
// Large random-looking tensors for the perf mode: a random block of at most 4M elements, repeated.
Tensor tiled_bf16(Rng& rng, Shape shape, float stddev);
Tensor host_i32(Shape shape, const std::vector<int32_t>& values);
// An FP8 weight [m, k] with random e4m3 codes (no NaN codes) and random positive 128x128 scale_inv.
struct HostLinear {
  Tensor weight, scale_inv;
  LinearWeight view() const { return {weight.view(), scale_inv.view()}; }
};
HostLinear rand_fp8_weight(Rng& rng, int64_t m, int64_t k, bool tiled = false);
HostLinear rand_bf16_weight(Rng& rng, int64_t m, int64_t k, float stddev);

// A device tensor inside a larger allocation: kGuard bytes of 0xA5 on each side catch out-of-bounds writes.
constexpr size_t kGuard = 512;
struct DevTensor {
  Tensor raw;        // [kGuard + nbytes + kGuard] U8 on the device
  TensorView view;   // the tensor itself
  std::string name;
};
// Uploads `host` (or, with poison, fills the tensor with 0xFF bytes: NaN for bf16/f32, -1 for i32).
DevTensor upload(Backend& gpu, const TensorView& host, const std::string& name);
DevTensor poisoned(Backend& gpu, DType dtype, Shape shape, const std::string& name);
// Copies the tensor back (synchronizing) and checks both guards; a guard hit is reported and fails the case.
Tensor download(Backend& gpu, const DevTensor& t, bool* guards_ok);
LinearWeight upload_weight(Backend& gpu, const HostLinear& w, std::vector<DevTensor>& keep);

struct Tol {
  bool bitwise = false;
  double atol = 0, rtol = 0;  // per element: |got - ref| <= atol + rtol·|ref|
  double atol_rms = 0;        // atol += atol_rms · rms(ref) (scale-free absolute slack for values near zero)
  double min_cos = 0;         // cosine similarity of got and ref over the whole tensor
  double max_nmse = 1;        // Σ(got-ref)² / Σref²
};
// Compares element by element (f32, bf16, fp8 as values; i32 exactly); prints a diagnosis on failure.
bool compare(const std::string& what, const TensorView& ref, const TensorView& got, const Tol& tol);

}  // namespace dsv3::ops_test
