// bpe.cpp: the BPE model of tokenizer.json over raw bytes (tokenizer): vocabulary, ranked merges, merging.
// Merging always applies the lowest-rank adjacent pair, leftmost first on ties (HF's Word::merge_all); short
// pieces use a flat scan over cached pair ranks, long ones a heap over a linked list, both O(n log n) or better
// in practice and identical in result.
#include <algorithm>
#include <queue>

#include "dsv3/base/error.h"
#include "dsv3/tokenizer/tokenizer_impl.h"
#include "dsv3/tokenizer/utf8.h"

namespace dsv3::detail {
namespace {

struct ByteTables {
  uint32_t to_cp[256];
  int16_t from_cp[324];  // code points of the alphabet are < 324
  ByteTables() {
    std::fill(std::begin(from_cp), std::end(from_cp), int16_t(-1));
    uint32_t extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? uint32_t(b) : extra++;
      from_cp[to_cp[b]] = int16_t(b);
    }
  }
};
const ByteTables& byte_tables() {
  static const ByteTables t;
  return t;
}

constexpr int kSmallPiece = 128;  // pieces up to this many bytes merge by scanning

}  // namespace

uint32_t byte_to_unicode(uint8_t b) { return byte_tables().to_cp[b]; }
int unicode_to_byte(uint32_t cp) { return cp < 324 ? byte_tables().from_cp[cp] : -1; }

std::optional<std::string> byte_level_to_bytes(std::string_view token) {
  if (utf8_find_invalid(token) != kValidUtf8) return std::nullopt;
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    uint32_t cp;
    i += utf8_next(token, i, &cp);
    const int b = unicode_to_byte(cp);
    if (b < 0) return std::nullopt;
    out += static_cast<char>(b);
  }
  return out;
}

void MergeMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  size_ = 0;
}

bool MergeMap::insert(int32_t a, int32_t b, Merge m) {
  CHECK(size_ * 2 < slots_.size(), "MergeMap over capacity");
  const uint64_t key = pack(a, b);
  for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key == key) {  // a repeated pair: the later entry wins, as in HF's HashMap collect
      s.merge = m;
      return false;
    }
    if (s.key == kEmpty) {
      s.key = key;
      s.merge = m;
      ++size_;
      return true;
    }
  }
}

BpeModel BpeModel::from_json(const nlohmann::json& m) {
  BpeModel bpe;
  const std::string type = m.value("type", std::string("BPE"));
  EXPECT(type == "BPE", "tokenizer.json: model.type '{}' is not supported (only BPE)", type);
  auto null_or = [&](const char* key, auto ok) {
    return !m.contains(key) || m[key].is_null() || ok(m[key]);
  };
  EXPECT(null_or("dropout", [](const nlohmann::json& v) { return v.is_number() && v.get<double>() == 0.0; }),
         "tokenizer.json: model.dropout is not supported");
  EXPECT(null_or("continuing_subword_prefix", [](const nlohmann::json& v) { return v == ""; }),
         "tokenizer.json: model.continuing_subword_prefix is not supported");
  EXPECT(null_or("end_of_word_suffix", [](const nlohmann::json& v) { return v == ""; }),
         "tokenizer.json: model.end_of_word_suffix is not supported");
  EXPECT(null_or("byte_fallback", [](const nlohmann::json& v) { return v == false; }),
         "tokenizer.json: model.byte_fallback is not supported (byte-level BPE only)");
  bpe.ignore_merges = m.value("ignore_merges", false);
  bpe.fuse_unk = m.contains("fuse_unk") && m["fuse_unk"].is_boolean() && m["fuse_unk"].get<bool>();

  EXPECT(m.contains("vocab") && m["vocab"].is_object(), "tokenizer.json: model.vocab is missing or not an object");
  const auto& vocab = m["vocab"];
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    EXPECT(it.value().is_number_integer(), "tokenizer.json: model.vocab['{}'] is not an integer", it.key());
    const int64_t id = it.value().get<int64_t>();
    EXPECT(id >= 0 && id < (int64_t(1) << 31), "tokenizer.json: model.vocab['{}'] = {} is out of range", it.key(), id);
    max_id = std::max(max_id, id);
  }
  bpe.vocab.assign(static_cast<size_t>(max_id + 1), std::string());
  bpe.token_to_id.reserve(vocab.size());
  std::fill(std::begin(bpe.byte_id), std::end(bpe.byte_id), -1);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    bpe.vocab[id] = it.key();
    bpe.token_to_id.emplace(it.key(), id);
    if (auto bytes = byte_level_to_bytes(it.key())) {
      if (bytes->size() == 1) bpe.byte_id[static_cast<uint8_t>((*bytes)[0])] = id;
      bpe.bytes_to_id.emplace(std::move(*bytes), id);
    }
  }
  bpe.n_tokens = static_cast<int64_t>(bpe.token_to_id.size());

  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    const std::string unk = m["unk_token"];
    auto it = bpe.token_to_id.find(unk);
    EXPECT(it != bpe.token_to_id.end(), "tokenizer.json: model.unk_token '{}' is not in the vocabulary", unk);
    bpe.unk_id = it->second;
  }

  EXPECT(m.contains("merges") && m["merges"].is_array(), "tokenizer.json: model.merges is missing or not a list");
  const auto& merges = m["merges"];
  bpe.merges.reserve(merges.size());
  std::string left, right;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& e = merges[rank];
    if (e.is_string()) {  // "a b"
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      EXPECT(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
             "tokenizer.json: model.merges[{}] = '{}' is not two tokens separated by one space", rank, s);
      left.assign(s, 0, sp);
      right.assign(s, sp + 1);
    } else {  // ["a", "b"]
      EXPECT(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(),
             "tokenizer.json: model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]", rank);
      left = e[0].get<std::string>();
      right = e[1].get<std::string>();
    }
    auto a = bpe.token_to_id.find(left), b = bpe.token_to_id.find(right),
         c = bpe.token_to_id.find(left + right);
    EXPECT(a != bpe.token_to_id.end() && b != bpe.token_to_id.end(),
           "tokenizer.json: model.merges[{}] uses a token that is not in the vocabulary ('{}' '{}')", rank, left,
           right);
    EXPECT(c != bpe.token_to_id.end(), "tokenizer.json: model.merges[{}]: the merged token '{}{}' is not in the vocabulary",
           rank, left, right);
    bpe.merges.insert(a->second, b->second, {static_cast<int32_t>(rank), c->second});
  }
  return bpe;
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges) {
    auto it = bytes_to_id.find(piece);
    if (it != bytes_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Initial symbols: one per byte. A byte missing from the vocabulary becomes unk (or is dropped without unk),
  // as HF does; a byte-level vocabulary has all 256.
  int32_t small[kSmallPiece];
  std::vector<int32_t> big;
  int32_t* ids = small;
  if (piece.size() > static_cast<size_t>(kSmallPiece)) {
    big.resize(piece.size());
    ids = big.data();
  }
  int n = 0;
  bool missing = false;
  for (char ch : piece) {
    const int32_t id = byte_id[static_cast<uint8_t>(ch)];
    if (id < 0) missing = true;
    ids[n++] = id;
  }
  if (missing) {
    // Rare path (not byte-level complete): merge each run of known bytes separately, unk in between.
    int start = 0;
    for (int i = 0; i <= n; ++i) {
      if (i < n && ids[i] >= 0) continue;
      if (i > start) {
        std::vector<int32_t> run(ids + start, ids + i);
        merge_heap(run, out);
      }
      if (i < n && unk_id) {
        if (!(fuse_unk && !out.empty() && out.back() == *unk_id)) out.push_back(*unk_id);
      }
      start = i + 1;
    }
    return;
  }
  if (n <= kSmallPiece) {
    merge_small(ids, n, out);
  } else {
    big.resize(n);
    merge_heap(big, out);
  }
}

void BpeModel::merge_small(int32_t* ids, int n, std::vector<int32_t>& out) const {
  // ranks[i] is the merge of (ids[i], ids[i+1]); merged[i] its result.
  int32_t ranks[kSmallPiece], merged[kSmallPiece];
  constexpr int32_t kNone = INT32_MAX;
  for (int i = 0; i + 1 < n; ++i) {
    const MergeMap::Merge m = merges.find(ids[i], ids[i + 1]);
    ranks[i] = m.rank < 0 ? kNone : m.rank;
    merged[i] = m.id;
  }
  while (n > 1) {
    int best = -1;
    int32_t best_rank = kNone;
    for (int i = 0; i + 1 < n; ++i) {
      if (ranks[i] < best_rank) {
        best_rank = ranks[i];
        best = i;
      }
    }
    if (best < 0) break;
    ids[best] = merged[best];
    for (int i = best + 1; i + 1 < n; ++i) {
      ids[i] = ids[i + 1];
      ranks[i] = ranks[i + 1];
      merged[i] = merged[i + 1];
    }
    --n;
    for (int i : {best - 1, best}) {
      if (i < 0 || i + 1 >= n) continue;
      const MergeMap::Merge m = merges.find(ids[i], ids[i + 1]);
      ranks[i] = m.rank < 0 ? kNone : m.rank;
      merged[i] = m.id;
    }
  }
  out.insert(out.end(), ids, ids + n);
}

void BpeModel::merge_heap(std::vector<int32_t>& ids, std::vector<int32_t>& out) const {
  const int n = static_cast<int>(ids.size());
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Entry {
    int32_t rank;
    int pos;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;
  for (int i = 0; i + 1 < n; ++i) {
    const MergeMap::Merge m = merges.find(ids[i], ids[i + 1]);
    if (m.rank >= 0) heap.push({m.rank, i});
  }
  std::vector<uint8_t> alive(n, 1);
  while (!heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    // Stale entries: the left symbol was absorbed, or the pair at pos is no longer the one ranked e.rank.
    if (!alive[e.pos] || next[e.pos] < 0) continue;
    const int r = next[e.pos];
    const MergeMap::Merge m = merges.find(ids[e.pos], ids[r]);
    if (m.rank != e.rank) continue;
    ids[e.pos] = m.id;
    alive[r] = 0;
    next[e.pos] = next[r];
    if (next[r] >= 0) prev[next[r]] = e.pos;
    if (prev[e.pos] >= 0) {
      const MergeMap::Merge lm = merges.find(ids[prev[e.pos]], ids[e.pos]);
      if (lm.rank >= 0) heap.push({lm.rank, prev[e.pos]});
    }
    if (next[e.pos] >= 0) {
      const MergeMap::Merge rm = merges.find(ids[e.pos], ids[next[e.pos]]);
      if (rm.rank >= 0) heap.push({rm.rank, e.pos});
    }
  }
  for (int i = 0; i >= 0 && i < n; i = next[i]) out.push_back(ids[i]);
}

}  // namespace dsv3::detail
