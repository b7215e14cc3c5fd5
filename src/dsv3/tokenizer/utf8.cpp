// utf8.cpp: UTF-8 validation and lossy decoding (tokenizer); see utf8.h.
#include "dsv3/tokenizer/utf8.h"

namespace dsv3::detail {
namespace {

// Expected length of a sequence and the allowed range of its second byte (Unicode Table 3-7); len 0 = bad lead.
struct Lead {
  int len;
  uint8_t lo, hi;
};

Lead lead_of(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Length of the valid sequence at s[i] (>0), or -(bytes in the maximal invalid subpart), or 0 when the input
// ends inside a sequence that is valid so far.
int probe(std::string_view s, size_t i) {
  const auto b = static_cast<uint8_t>(s[i]);
  const Lead l = lead_of(b);
  if (l.len == 1) return 1;
  if (l.len == 0) return -1;
  for (int k = 1; k < l.len; ++k) {
    if (i + k >= s.size()) return 0;
    const auto c = static_cast<uint8_t>(s[i + k]);
    const uint8_t lo = k == 1 ? l.lo : 0x80, hi = k == 1 ? l.hi : 0xBF;
    if (c < lo || c > hi) return -k;
  }
  return l.len;
}

}  // namespace

size_t utf8_find_invalid(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const int r = probe(s, i);
    if (r <= 0) return i;
    i += r;
  }
  return kValidUtf8;
}

int utf8_next(std::string_view s, size_t i, uint32_t* cp) {
  const auto b = static_cast<uint8_t>(s[i]);
  if (b < 0x80) {
    *cp = b;
    return 1;
  }
  const int len = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
  uint32_t v = b & (0x7F >> len);
  for (int k = 1; k < len; ++k) v = (v << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  *cp = v;
  return len;
}

int utf8_prev(std::string_view s, size_t end, uint32_t* cp) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
  return utf8_next(s, i, cp);
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t utf8_lossy_append(std::string_view bytes, bool final, std::string& out) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  size_t i = 0, run = 0;  // [run, i) is valid text not copied yet
  const size_t n = bytes.size();
  while (i < n) {
    if (static_cast<uint8_t>(bytes[i]) < 0x80) {
      ++i;
      continue;
    }
    const int r = probe(bytes, i);
    if (r > 0) {
      i += r;
      continue;
    }
    out.append(bytes.data() + run, i - run);
    if (r == 0) {  // truncated at the end
      if (!final) return i;
      out += kReplacement;
      return n;
    }
    out += kReplacement;
    i += static_cast<size_t>(-r);
    run = i;
  }
  out.append(bytes.data() + run, n - run);
  return n;
}

bool is_unicode_whitespace(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

}  // namespace dsv3::detail
