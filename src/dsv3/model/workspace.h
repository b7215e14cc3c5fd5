// workspace.h: the activation memory of a forward step — a bump allocator over chunks of backend memory (model).
// Why: a step allocates dozens of temporaries; cudaMalloc/cudaFree per tensor would synchronize the device on every
// free, and CUDA graphs need every temporary at the same address on each replay. So the model allocates from a
// Workspace that it rewinds: reset() at the start of a step, Scope marks around each layer. The same sequence of
// allocations after a reset always yields the same addresses; chunks are only ever added (when a larger step needs
// more), never freed before the Workspace dies, so addresses a captured graph holds stay valid.
#pragma once

#include <cstddef>
#include <vector>

#include "dsv3/tensor/tensor.h"

namespace dsv3 {

class Workspace final : public Allocator {
 public:
  // chunk_bytes: the size of each chunk added when the current ones are full (a larger request gets its own size).
  Workspace(Allocator& base, size_t chunk_bytes);
  ~Workspace() override;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  void* allocate(size_t bytes) override;
  void deallocate(void*, size_t) override {}  // memory returns by reset() or a Scope
  Device device() const override { return base_.device(); }

  struct Mark {
    size_t chunk = 0, offset = 0;
  };
  Mark mark() const { return {cur_, offset_}; }
  void release(Mark m);  // rewinds to m: everything allocated since is dead
  void reset() { release({}); }

  // Rewinds to the mark taken at construction when the scope ends.
  class Scope {
   public:
    explicit Scope(Workspace& ws) : ws_(ws), mark_(ws.mark()) {}
    ~Scope() { ws_.release(mark_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Workspace& ws_;
    Mark mark_;
  };

  size_t capacity() const;                        // bytes held in all chunks
  size_t high_water() const { return high_water_; }  // most bytes live at once since construction
  size_t n_chunks() const { return chunks_.size(); }

  static constexpr size_t kAlign = 256;

 private:
  struct Chunk {
    void* raw;     // from the base allocator (raw_bytes = bytes + kAlign)
    void* data;    // raw rounded up to kAlign (host allocators align less than cudaMalloc's 256 bytes)
    size_t bytes;  // usable from data
  };
  size_t live_bytes() const;

  Allocator& base_;
  size_t chunk_bytes_;
  std::vector<Chunk> chunks_;
  size_t cur_ = 0, offset_ = 0;  // the next allocation starts at chunks_[cur_] + offset_
  size_t high_water_ = 0;
};

}  // namespace dsv3
