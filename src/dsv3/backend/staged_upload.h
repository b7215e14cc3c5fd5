// staged_upload.h: host -> device upload of many tensors through a few pinned staging chunks, overlapped (backend).
// Weight loading for backends whose memory the host cannot see: tensors are packed back to back into chunks of
// slot_bytes (a large tensor spans several chunks, small ones share one, so a norm costs no synchronisation of its
// own); host threads memcpy a chunk from the source (the checkpoint's mmap) into a free staging slot while the DMA
// of the earlier chunks runs. The device side is a StagingSink (backend/cuda: pinned slots, one stream, an event
// per slot); tests use a fake sink on the CPU. CPU backends never stage: they use the mmap in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "dsv3/base/thread_pool.h"
#include "dsv3/tensor/tensor.h"

namespace dsv3 {

// The device side of a staged upload: n_slots() host buffers of slot_bytes() that the device reads asynchronously.
// A slot's transfers are queued with transfer(), closed with submitted(); wait(slot) blocks until they are done.
class StagingSink {
 public:
  virtual ~StagingSink() = default;  // implementations wait for their transfers before freeing the slots
  virtual int n_slots() const = 0;
  virtual size_t slot_bytes() const = 0;
  virtual void* slot_data(int slot) = 0;
  // Blocks until every transfer submitted from `slot` has completed (no-op for a slot never submitted).
  virtual void wait(int slot) = 0;
  // Queues an asynchronous copy of bytes [offset, offset + bytes) of `slot` to device address dst.
  virtual void transfer(int slot, size_t offset, void* dst, size_t bytes) = 0;
  // Closes the transfers queued from `slot` since the last wait(slot).
  virtual void submitted(int slot) = 0;
  // Blocks until every queued transfer has completed.
  virtual void drain() = 0;
};

struct StagedUploadStats {
  uint64_t bytes = 0;     // tensor bytes uploaded
  int64_t tensors = 0;    // add() calls with bytes > 0
  int64_t chunks = 0;     // slots filled and submitted
  int64_t transfers = 0;  // transfer() calls (one per piece: a tensor's part within one chunk)
};

class StagedUploader {
 public:
  // Piece offsets inside a chunk start on this boundary (aligned memcpy and DMA).
  static constexpr size_t kAlign = 256;
  // A chunk's memcpy is split into pieces of at most this size for the host threads.
  static constexpr size_t kCopyGrain = 2u << 20;

  StagedUploader(std::unique_ptr<StagingSink> sink, int n_threads);
  ~StagedUploader();  // the sink waits for transfers in flight; pieces never dispatched are dropped
  StagedUploader(const StagedUploader&) = delete;
  StagedUploader& operator=(const StagedUploader&) = delete;

  // Queues bytes from host src to device dst. src must stay valid until the chunk holding its last byte has been
  // staged (flush() at the latest); `keep_alive` (a host tensor owning src, may be empty) is released then.
  void add(void* dst, const void* src, size_t bytes, Tensor keep_alive = {});
  // Stages and transfers everything queued, then waits until the device has it all.
  void flush();
  const StagedUploadStats& stats() const { return stats_; }

 private:
  struct Piece {
    char* dst;
    const char* src;
    size_t slot_offset, bytes;
  };
  void dispatch();  // the current chunk -> the next slot (waiting for it), memcpy by the pool, transfers queued

  std::unique_ptr<StagingSink> sink_;
  ThreadPool pool_;
  size_t slot_bytes_;
  std::vector<Piece> pieces_;  // of the chunk being packed
  size_t fill_ = 0;            // bytes of the chunk being packed (incl. alignment gaps)
  std::vector<Tensor> keep_;   // sources whose last piece is in the chunk being packed
  int next_slot_ = 0;
  StagedUploadStats stats_;
};

}  // namespace dsv3
