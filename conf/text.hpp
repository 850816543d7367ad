#pragma once
// Text that comes from outside (an operator's comment, what a peer sends),
// read by UTF-8 code point, so that logs and JSON keep it as it was written
// and a control character cannot start a line of its own.
#include <cstddef>
#include <string_view>

namespace geomx::conf {

struct CodePoint {
  std::size_t length = 0;  // bytes; 0: s[i] starts no valid UTF-8 sequence
  char32_t value = 0;
};

// The code point whose encoding starts at s[i]. A stray continuation byte,
// an overlong form, a surrogate, a code point beyond U+10FFFF or a sequence
// cut short gives length 0.
CodePoint utf8_at(std::string_view s, std::size_t i);

// A control character: C0 (below U+0020), DEL, or C1 (U+0080 to U+009F).
inline bool is_control(char32_t c) {
  return c < 0x20 || (c >= 0x7f && c <= 0x9f);
}

// One line of text: valid UTF-8 with no control character (tab included).
bool printable_line(std::string_view s);

}  // namespace geomx::conf
