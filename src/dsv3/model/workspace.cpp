// workspace.cpp: Workspace — bump allocation over chunks, marks and rewinding (model).
#include "dsv3/model/workspace.h"

#include <cstdint>

namespace dsv3 {

namespace {
size_t align_up(size_t v) { return (v + Workspace::kAlign - 1) / Workspace::kAlign * Workspace::kAlign; }
}  // namespace

Workspace::Workspace(Allocator& base, size_t chunk_bytes) : base_(base), chunk_bytes_(align_up(chunk_bytes)) {
  CHECK(chunk_bytes_ > 0, "workspace: chunk size 0");
}

Workspace::~Workspace() {
  for (const Chunk& c : chunks_) base_.deallocate(c.raw, c.bytes + kAlign);
}

void* Workspace::allocate(size_t bytes) {
  const size_t need = align_up(bytes ? bytes : 1);
  // First fit from the current chunk on: a chunk that is too small is skipped (and stays for later steps), so the
  // addresses depend only on the sequence of requests since the last rewind.
  while (cur_ < chunks_.size() && offset_ + need > chunks_[cur_].bytes) {
    ++cur_;
    offset_ = 0;
  }
  if (cur_ == chunks_.size()) {
    const size_t size = std::max(need, chunk_bytes_);
    void* raw = base_.allocate(size + kAlign);  // throws dsv3::Error when the backend is out of memory
    const auto a = reinterpret_cast<uintptr_t>(raw);
    chunks_.push_back({raw, reinterpret_cast<void*>(align_up(a)), size});
    offset_ = 0;
  }
  void* p = static_cast<char*>(chunks_[cur_].data) + offset_;
  offset_ += need;
  high_water_ = std::max(high_water_, live_bytes());
  return p;
}

void Workspace::release(Mark m) {
  CHECK(m.chunk < chunks_.size() || (m.chunk == 0 && m.offset == 0) || (m.chunk == chunks_.size() && m.offset == 0),
        "workspace: release to chunk {} of {}", m.chunk, chunks_.size());
  CHECK(m.chunk < cur_ || (m.chunk == cur_ && m.offset <= offset_), "workspace: release to a mark ahead of the top");
  cur_ = m.chunk;
  offset_ = m.offset;
}

size_t Workspace::capacity() const {
  size_t s = 0;
  for (const Chunk& c : chunks_) s += c.bytes;
  return s;
}

size_t Workspace::live_bytes() const {
  size_t s = offset_;
  for (size_t i = 0; i < cur_ && i < chunks_.size(); ++i) s += chunks_[i].bytes;
  return s;
}

}  // namespace dsv3
