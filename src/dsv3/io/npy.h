// npy.h: NumPy .npy v1.0 files, float32/int32, C order (io). Written by `dsv3 forward`, read by tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv3 {

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // converted to float32 (from <f4, <f8, <i4, <i8)
};
NpyArray read_npy(const std::string& path);

}  // namespace dsv3
