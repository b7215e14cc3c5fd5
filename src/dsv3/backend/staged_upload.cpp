// staged_upload.cpp: packing tensors into staging chunks and the slot rotation of StagedUploader (backend).
#include "dsv3/backend/staged_upload.h"

#include <algorithm>
#include <cstring>

#include "dsv3/base/error.h"

namespace dsv3 {

StagedUploader::StagedUploader(std::unique_ptr<StagingSink> sink, int n_threads)
    : sink_(std::move(sink)), pool_(std::max(1, n_threads)) {
  CHECK(sink_ && sink_->n_slots() >= 1 && sink_->slot_bytes() >= kAlign, "staged upload: a sink without slots");
  slot_bytes_ = sink_->slot_bytes() / kAlign * kAlign;
}

StagedUploader::~StagedUploader() = default;

void StagedUploader::add(void* dst, const void* src, size_t bytes, Tensor keep_alive) {
  if (bytes == 0) return;
  CHECK(dst && src, "staged upload: null pointer for {} bytes", bytes);
  auto* d = static_cast<char*>(dst);
  auto* s = static_cast<const char*>(src);
  // Greedy packing: the tensor fills what is left of the current chunk, the rest continues in the next ones.
  for (size_t done = 0; done < bytes;) {
    if (fill_ == slot_bytes_) dispatch();
    const size_t n = std::min(bytes - done, slot_bytes_ - fill_);
    pieces_.push_back({d + done, s + done, fill_, n});
    fill_ += n;
    done += n;
  }
  fill_ = std::min((fill_ + kAlign - 1) / kAlign * kAlign, slot_bytes_);
  if (!keep_alive.empty()) keep_.push_back(std::move(keep_alive));
  stats_.bytes += bytes;
  ++stats_.tensors;
}

void StagedUploader::dispatch() {
  if (pieces_.empty()) return;
  const int slot = next_slot_;
  next_slot_ = (next_slot_ + 1) % sink_->n_slots();
  sink_->wait(slot);  // the DMA of the chunk that used this slot n_slots chunks ago has finished
  char* base = static_cast<char*>(sink_->slot_data(slot));
  struct Segment {
    char* to;
    const char* from;
    size_t n;
  };
  std::vector<Segment> segs;
  for (const Piece& p : pieces_)
    for (size_t off = 0; off < p.bytes; off += kCopyGrain)
      segs.push_back({base + p.slot_offset + off, p.src + off, std::min(kCopyGrain, p.bytes - off)});
  pool_.parallel_for(static_cast<int64_t>(segs.size()), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(segs[i].to, segs[i].from, segs[i].n);
  });
  for (const Piece& p : pieces_) sink_->transfer(slot, p.slot_offset, p.dst, p.bytes);
  sink_->submitted(slot);
  stats_.transfers += static_cast<int64_t>(pieces_.size());
  ++stats_.chunks;
  pieces_.clear();
  keep_.clear();  // staged: the host copies are no longer needed
  fill_ = 0;
}

void StagedUploader::flush() {
  dispatch();
  sink_->drain();
}

}  // namespace dsv3
