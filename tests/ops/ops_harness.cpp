// ops_harness.cpp: random inputs, guarded device tensors and diagnosing comparisons for tests/ops.
#include "ops_harness.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

namespace dsv3::ops_test {
namespace {

std::string coords(const Shape& s, int64_t flat) {
  std::string out = "[";
  int64_t rem = flat;
  std::vector<int64_t> idx(static_cast<size_t>(s.ndim));
  for (int d = s.ndim - 1; d >= 0; --d) {
    idx[static_cast<size_t>(d)] = s.dims[d] ? rem % s.dims[d] : 0;
    rem = s.dims[d] ? rem / s.dims[d] : 0;
  }
  for (int d = 0; d < s.ndim; ++d) out += fmt::format("{}{}", d ? ", " : "", idx[static_cast<size_t>(d)]);
  return out + "]";
}

double value(const TensorView& t, int64_t i) {
  if (t.dtype == DType::kI32) return t.as<const int32_t>()[i];
  return load_float(t, i);
}

}  // namespace

Tensor rand_bf16(Rng& rng, Shape shape, float stddev) {
  std::vector<float> v(static_cast<size_t>(shape.numel()));
  for (auto& x : v) {
    x = rng.normal(stddev);
    if (round_bf16(x) == 0.f) x = (rng.uniform(0, 1) < 0.5f ? -0.5f : 0.5f) * stddev;
  }
  return make_host_tensor(DType::kBF16, shape, v.data());
}

Tensor tiled_bf16(Rng& rng, Shape shape, float stddev) {
  Tensor t(DType::kBF16, shape);
  const int64_t n = t.numel(), block = std::min<int64_t>(n, 4 << 20);
  Tensor src = rand_bf16(rng, {block}, stddev);
  for (int64_t off = 0; off < n; off += block)
    std::memcpy(t.as<bf16>() + off, src.as<bf16>(), static_cast<size_t>(std::min(block, n - off)) * 2);
  return t;
}

Tensor rand_f32(Rng& rng, Shape shape, float lo, float hi) {
  std::vector<float> v(static_cast<size_t>(shape.numel()));
  for (auto& x : v) {
    x = rng.uniform(lo, hi);
    if (x == 0.f) x = hi;
  }
  return make_host_tensor(DType::kF32, shape, v.data());
}

Tensor host_i32(Shape shape, const std::vector<int32_t>& values) {
  Tensor t(DType::kI32, shape);
  CHECK(static_cast<int64_t>(values.size()) == t.numel(), "host_i32: {} values for {}", values.size(), shape.str());
  std::memcpy(t.as<uint8_t>(), values.data(), values.size() * 4);
  return t;
}

HostLinear rand_fp8_weight(Rng& rng, int64_t m, int64_t k, bool tiled) {
  HostLinear w;
  w.weight = Tensor(DType::kFP8E4M3, {m, k});
  auto* codes = w.weight.as<uint8_t>();
  const int64_t n = m * k, block = tiled ? std::min<int64_t>(n, 4 << 20) : n;
  for (int64_t i = 0; i < block; ++i) {
    uint8_t c = f32_to_fp8e4m3(rng.normal(60.f));
    if ((c & 0x7f) == 0) c = 0x38;  // never zero (0x38 = 1.0)
    codes[i] = c;
  }
  for (int64_t off = block; off < n; off += block)  // tiled: repeat the first block
    std::memcpy(codes + off, codes, static_cast<size_t>(std::min(block, n - off)));
  w.scale_inv = rand_f32(rng, {(m + 127) / 128, (k + 127) / 128}, 2e-4f, 6e-4f);
  return w;
}

HostLinear rand_bf16_weight(Rng& rng, int64_t m, int64_t k, float stddev) {
  HostLinear w;
  w.weight = rand_bf16(rng, {m, k}, stddev);
  return w;
}

DevTensor upload(Backend& gpu, const TensorView& host, const std::string& name) {
  const size_t n = host.nbytes();
  DevTensor t;
  t.name = name;
  t.raw = Tensor(DType::kU8, {static_cast<int64_t>(n + 2 * kGuard)}, gpu.allocator());
  std::vector<uint8_t> staging(n + 2 * kGuard, 0xA5);
  if (host.data) std::memcpy(staging.data() + kGuard, host.data, n);
  else std::memset(staging.data() + kGuard, 0xFF, n);
  gpu.copy(t.raw.view(), TensorView{staging.data(), DType::kU8, t.raw.shape(), Device::kCpu});
  gpu.synchronize();
  t.view = TensorView{static_cast<uint8_t*>(t.raw.view().data) + kGuard, host.dtype, host.shape, Device::kCuda};
  return t;
}

DevTensor poisoned(Backend& gpu, DType dtype, Shape shape, const std::string& name) {
  return upload(gpu, TensorView{nullptr, dtype, shape, Device::kCpu}, name);
}

Tensor download(Backend& gpu, const DevTensor& t, bool* guards_ok) {
  const size_t n = t.view.nbytes();
  std::vector<uint8_t> staging(n + 2 * kGuard);
  gpu.synchronize();
  gpu.copy(TensorView{staging.data(), DType::kU8, t.raw.shape(), Device::kCpu}, t.raw.view());
  gpu.synchronize();
  for (size_t i = 0; i < kGuard; ++i) {
    const bool before = staging[i] != 0xA5, after = staging[kGuard + n + i] != 0xA5;
    if (before || after) {
      fmt::print("    OUT-OF-BOUNDS WRITE: guard {} {} modified at byte {} (value 0x{:02x})\n",
                 before ? "before" : "after", t.name, before ? static_cast<int64_t>(i) - static_cast<int64_t>(kGuard)
                                                             : static_cast<int64_t>(n + i),
                 before ? staging[i] : staging[kGuard + n + i]);
      *guards_ok = false;
      break;
    }
  }
  Tensor out(t.view.dtype, t.view.shape);
  std::memcpy(out.as<uint8_t>(), staging.data() + kGuard, n);
  return out;
}

LinearWeight upload_weight(Backend& gpu, const HostLinear& w, std::vector<DevTensor>& keep) {
  keep.push_back(upload(gpu, w.weight.view(), "weight"));
  LinearWeight lw{keep.back().view, {}};
  if (!w.scale_inv.empty()) {
    keep.push_back(upload(gpu, w.scale_inv.view(), "scale_inv"));
    lw.scale_inv = keep.back().view;
  }
  return lw;
}

bool compare(const std::string& what, const TensorView& ref, const TensorView& got, const Tol& tol) {
  CHECK(ref.numel() == got.numel() && ref.dtype == got.dtype, "compare {}: {} {} vs {} {}", what, ref.shape.str(),
        dtype_name(ref.dtype), got.shape.str(), dtype_name(got.dtype));
  const int64_t n = ref.numel();
  double ss_ref = 0, ss_diff = 0, dot = 0, ss_got = 0;
  int64_t finite = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double r = value(ref, i), g = value(got, i);
    if (std::isfinite(r) && std::isfinite(g)) {
      ss_ref += r * r, ss_got += g * g, dot += r * g, ss_diff += (g - r) * (g - r);
      ++finite;
    }
  }
  const double rms = finite ? std::sqrt(ss_ref / static_cast<double>(finite)) : 0;
  const double atol = tol.atol + tol.atol_rms * rms;
  int64_t bad = 0, first = -1, worst = -1;
  double worst_ratio = 0;
  int64_t nan_mismatch = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double r = value(ref, i), g = value(got, i);
    bool ok;
    double ratio = 0;
    if (tol.bitwise) {
      const size_t es = dtype_size(ref.dtype);
      ok = std::memcmp(static_cast<const char*>(ref.data) + i * es, static_cast<const char*>(got.data) + i * es, es) == 0;
      ratio = ok ? 0 : std::fabs(g - r) + 1;
    } else if (!std::isfinite(r) || !std::isfinite(g)) {
      ok = (std::isnan(r) && std::isnan(g)) || (std::isinf(r) && r == g);  // NaN/Inf positions must match
      if (!ok) ++nan_mismatch;
      ratio = ok ? 0 : 1e30;
    } else {
      const double lim = atol + tol.rtol * std::fabs(r);
      ratio = std::fabs(g - r) / (lim > 0 ? lim : 1e-300);
      ok = std::fabs(g - r) <= lim;
    }
    if (!ok) {
      ++bad;
      if (first < 0) first = i;
      if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
    }
  }
  const double cos = (ss_ref > 0 && ss_got > 0) ? dot / std::sqrt(ss_ref * ss_got) : (ss_ref == ss_got ? 1 : 0);
  const double nmse = ss_ref > 0 ? ss_diff / ss_ref : ss_diff;
  const bool cos_ok = tol.bitwise || tol.min_cos <= 0 || cos >= tol.min_cos;
  const bool nmse_ok = tol.bitwise || nmse <= tol.max_nmse;
  if (bad == 0 && cos_ok && nmse_ok) return true;
  fmt::print("    {} {} {}: {} of {} elements outside tolerance (pass {:.4f}%), cosine {:.8f}, NMSE {:.3e}, rms {:.4g}\n",
             what, ref.shape.str(), dtype_name(ref.dtype), bad, n, 100.0 * static_cast<double>(n - bad) / static_cast<double>(n ? n : 1),
             cos, nmse, rms);
  if (nan_mismatch) fmt::print("    {} NaN/Inf position mismatches\n", nan_mismatch);
  if (!cos_ok) fmt::print("    cosine {:.8f} < {:.8f}\n", cos, tol.min_cos);
  if (!nmse_ok) fmt::print("    NMSE {:.3e} > {:.3e}\n", nmse, tol.max_nmse);
  if (first >= 0)
    fmt::print("    first mismatch at {}: ref {:.8g} got {:.8g}\n", coords(ref.shape, first), value(ref, first),
               value(got, first));
  if (worst >= 0)
    fmt::print("    worst mismatch at {}: ref {:.8g} got {:.8g} (|diff| {:.3g}, {:.3g}x the tolerance)\n",
               coords(ref.shape, worst), value(ref, worst), value(got, worst),
               std::fabs(value(got, worst) - value(ref, worst)), worst_ratio);
  return false;
}

}  // namespace dsv3::ops_test
