// npy.cpp: minimal .npy reader/writer (io).
#include "dsv3/io/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "dsv3/base/error.h"

namespace dsv3 {

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::string dims;
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += fmt::format("{}{}", i ? ", " : "", shape[i]);
    n *= shape[i];
  }
  if (shape.size() == 1) dims += ",";
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims);
  while ((10 + header.size() + 1) % 64) header.push_back(' ');
  header.push_back('\n');
  std::FILE* f = std::fopen(path.c_str(), "wb");
  EXPECT(f != nullptr, "{}: cannot create: {}", path, std::strerror(errno));
  const unsigned char magic[] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  std::fwrite(magic, 1, 8, f);
  uint16_t hl = static_cast<uint16_t>(header.size());
  std::fwrite(&hl, 2, 1, f);
  std::fwrite(header.data(), 1, header.size(), f);
  const size_t wrote = std::fwrite(data, 4, static_cast<size_t>(n), f);
  const bool ok = std::fclose(f) == 0 && wrote == static_cast<size_t>(n);
  EXPECT(ok, "{}: write failed", path);
}

NpyArray read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT(f.good(), "{}: cannot open", path);
  char magic[8];
  f.read(magic, 8);
  EXPECT(f.good() && std::memcmp(magic + 1, "NUMPY", 5) == 0, "{}: not a .npy file", path);
  uint32_t hl = 0;
  if (magic[6] == 1) {
    uint16_t h16;
    f.read(reinterpret_cast<char*>(&h16), 2);
    hl = h16;
  } else {
    f.read(reinterpret_cast<char*>(&hl), 4);
  }
  std::string header(hl, ' ');
  f.read(header.data(), hl);
  EXPECT(header.find("'fortran_order': False") != std::string::npos, "{}: fortran order not supported", path);
  auto dpos = header.find("'descr': '");
  EXPECT(dpos != std::string::npos, "{}: no descr", path);
  std::string descr = header.substr(dpos + 10, 3);
  auto spos = header.find("'shape': (");
  EXPECT(spos != std::string::npos, "{}: no shape", path);
  auto send = header.find(')', spos);
  std::string dims = header.substr(spos + 10, send - spos - 10);
  NpyArray a;
  int64_t n = 1;
  size_t p = 0;
  while (p < dims.size()) {
    while (p < dims.size() && (dims[p] == ' ' || dims[p] == ',')) ++p;
    if (p >= dims.size()) break;
    size_t q = p;
    while (q < dims.size() && dims[q] != ',') ++q;
    int64_t d = std::stoll(dims.substr(p, q - p));
    a.shape.push_back(d);
    n *= d;
    p = q;
  }
  a.data.resize(static_cast<size_t>(n));
  auto read_as = [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> tmp(static_cast<size_t>(n));
    f.read(reinterpret_cast<char*>(tmp.data()), static_cast<std::streamsize>(n * sizeof(T)));
    EXPECT(f.good() || n == 0, "{}: truncated data", path);
    for (int64_t i = 0; i < n; ++i) a.data[i] = static_cast<float>(tmp[i]);
  };
  if (descr == "<f4") read_as(float{});
  else if (descr == "<f8") read_as(double{});
  else if (descr == "<i4") read_as(int32_t{});
  else if (descr == "<i8") read_as(int64_t{});
  else FAIL("{}: dtype '{}' not supported", path, descr);
  return a;
}

}  // namespace dsv3
