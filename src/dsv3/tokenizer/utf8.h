// utf8.h: UTF-8 helpers for the tokenizer: validation, lossy decoding as HF/WHATWG do it, Unicode whitespace
// (tokenizer). Lossy decoding replaces each maximal invalid subpart with one U+FFFD (Unicode §3.9, the rule
// Rust's String::from_utf8_lossy, Python's errors="replace" and JS TextDecoder share).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3::detail {

inline constexpr size_t kValidUtf8 = static_cast<size_t>(-1);

// Byte offset of the first invalid sequence, or kValidUtf8.
size_t utf8_find_invalid(std::string_view s);

// Decodes the code point at s[i] of a VALID string; returns its byte length.
int utf8_next(std::string_view s, size_t i, uint32_t* cp);
// Decodes the code point that ends at s[end] (exclusive) of a VALID string; returns its byte length.
int utf8_prev(std::string_view s, size_t end, uint32_t* cp);
void utf8_append(std::string& out, uint32_t cp);

// Appends the lossy decoding of bytes to out. With final=false a trailing sequence that is incomplete but could
// still become valid is left undecoded. Returns the number of bytes consumed.
size_t utf8_lossy_append(std::string_view bytes, bool final, std::string& out);

// Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s test).
bool is_unicode_whitespace(uint32_t cp);

}  // namespace dsv3::detail
