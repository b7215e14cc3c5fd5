// py_repr.h: Python's repr() of a str, for output lines that match the recipe's `!r` formatting (tools/common).
#pragma once

#include <string>
#include <string_view>

namespace dsv3 {

// Quotes with ' unless the text contains ' and no ", escapes \\, the quote, \n \r \t and other control characters
// (\xNN), keeps printable UTF-8 as it is — what CPython does for str.
std::string py_repr(std::string_view s);

}  // namespace dsv3
