// safetensors.h: read-only, mmap-backed safetensors files and a streaming writer (io).
// Format: u64 little-endian header size N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]}, __metadata__},
// then the data; offsets are relative to the end of the header. Every tensor is validated when the file opens:
// known dtype, offsets ordered and inside the file, byte length equal to numel * dtype size.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dsv3/tensor/tensor.h"

namespace dsv3 {

struct SafetensorsEntry {
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // relative to the data section
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws dsv3::Error naming the file and tensor
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  // A view into the mapping; throws if the name is absent.
  TensorView view(const std::string& name) const;
  size_t file_size() const { return size_; }

 private:
  std::string path_;
  int fd_ = -1;
  void* map_ = nullptr;
  size_t size_ = 0;
  size_t data_offset_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
};

// DType from the safetensors spelling; throws for unsupported ones (names the tensor and file).
DType parse_safetensors_dtype(const std::string& s, const std::string& tensor, const std::string& file);

// Writes tensors one at a time after a header computed up front from (name, dtype, shape) in the given order.
class SafetensorsWriter {
 public:
  struct Decl {
    std::string name;
    DType dtype;
    Shape shape;
  };
  SafetensorsWriter(const std::string& path, const std::vector<Decl>& decls);
  ~SafetensorsWriter();
  // Must be called once per declared tensor, in declaration order, with exactly its bytes.
  void write(const std::string& name, const void* data, size_t bytes);
  void close();
  uint64_t data_bytes() const { return total_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  std::vector<Decl> decls_;
  size_t next_ = 0;
  uint64_t total_ = 0;
};

}  // namespace dsv3
