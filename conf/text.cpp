#include "conf/text.hpp"

namespace geomx::conf {

CodePoint utf8_at(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return {1, lead};
  std::size_t n = 0;
  char32_t c = 0, min = 0;
  if ((lead & 0xe0) == 0xc0) {
    n = 2, c = lead & 0x1f, min = 0x80;
  } else if ((lead & 0xf0) == 0xe0) {
    n = 3, c = lead & 0x0f, min = 0x800;
  } else if ((lead & 0xf8) == 0xf0) {
    n = 4, c = lead & 0x07, min = 0x10000;
  } else {
    return {};  // a continuation byte, or 0xf8 and above
  }
  if (s.size() - i < n) return {};
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return {};
    c = (c << 6) | (byte(i + k) & 0x3f);
  }
  if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return {};
  return {n, c};
}

bool printable_line(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto cp = utf8_at(s, i);
    if (cp.length == 0 || is_control(cp.value)) return false;
    i += cp.length;
  }
  return true;
}

}  // namespace geomx::conf
