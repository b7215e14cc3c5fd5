// safetensors.cpp: mmap reader with validation, and the writer used by make-tiny-model (io).
#include "dsv3/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

namespace dsv3 {

DType parse_safetensors_dtype(const std::string& s, const std::string& tensor, const std::string& file) {
  if (s == "F32") return DType::kF32;
  if (s == "BF16") return DType::kBF16;
  if (s == "F8_E4M3") return DType::kFP8E4M3;
  if (s == "I32") return DType::kI32;
  if (s == "I64") return DType::kI64;
  if (s == "U8") return DType::kU8;
  FAIL("{}: tensor '{}' has unsupported dtype '{}' (supported: F32, BF16, F8_E4M3, I32, I64, U8)", file, tensor, s);
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY);
  EXPECT(fd_ >= 0, "{}: cannot open safetensors file: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    ::close(fd_);
    FAIL("{}: cannot stat: {}", path, std::strerror(errno));
  }
  size_ = static_cast<size_t>(st.st_size);
  auto fail = [&](const std::string& msg) {
    if (map_) ::munmap(map_, size_);
    ::close(fd_);
    map_ = nullptr;
    fd_ = -1;
    throw Error(msg);
  };
  if (size_ < 8) fail(fmt::format("{}: truncated safetensors file ({} bytes, no header)", path, size_));
  map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail(fmt::format("{}: mmap failed: {}", path, std::strerror(errno)));
  }
  uint64_t n = 0;
  std::memcpy(&n, map_, 8);
  if (n > size_ - 8) fail(fmt::format("{}: header size {} exceeds the file ({} bytes): truncated or not safetensors",
                                      path, n, size_));
  data_offset_ = 8 + n;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(static_cast<const char*>(map_) + 8, static_cast<const char*>(map_) + 8 + n);
  } catch (const std::exception& e) {
    fail(fmt::format("{}: header is not valid JSON: {}", path, e.what()));
  }
  if (!header.is_object()) fail(fmt::format("{}: header is not a JSON object", path));
  const uint64_t data_size = size_ - data_offset_;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const auto& v = it.value();
    const std::string& name = it.key();
    try {
      if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
        fail(fmt::format("{}: tensor '{}': header entry needs dtype, shape and data_offsets", path, name));
      SafetensorsEntry e;
      e.dtype = parse_safetensors_dtype(v["dtype"].get<std::string>(), name, path);
      const auto& shape = v["shape"];
      if (!shape.is_array() || shape.size() > Shape::kMaxDims)
        fail(fmt::format("{}: tensor '{}': bad shape {}", path, name, shape.dump()));
      for (const auto& d : shape) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0)
          fail(fmt::format("{}: tensor '{}': bad shape {}", path, name, shape.dump()));
        e.shape.dims[e.shape.ndim++] = d.get<int64_t>();
      }
      const auto& off = v["data_offsets"];
      if (!off.is_array() || off.size() != 2)
        fail(fmt::format("{}: tensor '{}': bad data_offsets {}", path, name, off.dump()));
      e.begin = off[0].get<uint64_t>();
      e.end = off[1].get<uint64_t>();
      if (e.begin > e.end || e.end > data_size)
        fail(fmt::format("{}: tensor '{}': data_offsets [{}, {}] outside the data section of {} bytes (truncated "
                         "file?)",
                         path, name, e.begin, e.end, data_size));
      const uint64_t want = static_cast<uint64_t>(e.shape.numel()) * dtype_size(e.dtype);
      if (e.end - e.begin != want)
        fail(fmt::format("{}: tensor '{}': {} bytes stored but shape {} of {} needs {}", path, name, e.end - e.begin,
                         e.shape.str(), dtype_name(e.dtype), want));
      entries_.emplace(name, e);
    } catch (const nlohmann::json::exception& ex) {
      fail(fmt::format("{}: tensor '{}': malformed header entry: {}", path, name, ex.what()));
    } catch (const Error& ex) {
      if (map_) fail(ex.what());
      throw;
    }
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
  if (fd_ >= 0) ::close(fd_);
}

TensorView SafetensorsFile::view(const std::string& name) const {
  auto it = entries_.find(name);
  EXPECT(it != entries_.end(), "{}: no tensor '{}'", path_, name);
  TensorView v;
  v.data = static_cast<char*>(map_) + data_offset_ + it->second.begin;
  v.dtype = it->second.dtype;
  v.shape = it->second.shape;
  v.device = Device::kCpu;
  return v;
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, const std::vector<Decl>& decls)
    : path_(path), decls_(decls) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t off = 0;
  for (const auto& d : decls_) {
    const uint64_t bytes = static_cast<uint64_t>(d.shape.numel()) * dtype_size(d.dtype);
    std::vector<int64_t> shape(d.shape.dims.begin(), d.shape.dims.begin() + d.shape.ndim);
    header[d.name] = {{"dtype", dtype_name(d.dtype)}, {"shape", shape}, {"data_offsets", {off, off + bytes}}};
    off += bytes;
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8) h.push_back(' ');  // align the data section to 8 bytes
  f_ = std::fopen(path.c_str(), "wb");
  EXPECT(f_ != nullptr, "{}: cannot create: {}", path, std::strerror(errno));
  uint64_t n = h.size();
  std::fwrite(&n, 8, 1, f_);
  std::fwrite(h.data(), 1, h.size(), f_);
}

void SafetensorsWriter::write(const std::string& name, const void* data, size_t bytes) {
  CHECK(next_ < decls_.size() && decls_[next_].name == name, "write of '{}' out of declaration order", name);
  const auto& d = decls_[next_];
  CHECK(bytes == static_cast<size_t>(d.shape.numel()) * dtype_size(d.dtype), "'{}': {} bytes", name, bytes);
  EXPECT(std::fwrite(data, 1, bytes, f_) == bytes, "{}: write failed: {}", path_, std::strerror(errno));
  total_ += bytes;
  ++next_;
}

void SafetensorsWriter::close() {
  if (!f_) return;
  CHECK(next_ == decls_.size(), "{}: {} of {} tensors written", path_, next_, decls_.size());
  EXPECT(std::fclose(f_) == 0, "{}: close failed: {}", path_, std::strerror(errno));
  f_ = nullptr;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (f_) std::fclose(f_);
}

}  // namespace dsv3
