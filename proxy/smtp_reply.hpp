#pragma once
// One line of a server's SMTP reply (RFC 5321 4.2: "250-..." up to
// "250 ..."), as the health probe and the screen's replay read them.
#include <cctype>
#include <string_view>

namespace geomx::proxy {

enum class ReplyLine {
  more,          // a "NNN-" line: the reply goes on
  last,          // "NNN" or "NNN ...": the reply ends here
  malformed,     // not three digits and a space or '-'
  code_changed,  // not the code of the reply's earlier lines
};

// `code`: the reply's code so far (its first line's three digits), empty
// on the first line.
inline ReplyLine reply_line(std::string_view line, std::string_view code) {
  const auto digit = [&](std::size_t i) {
    return std::isdigit(static_cast<unsigned char>(line[i])) != 0;
  };
  if (line.size() < 3 || !digit(0) || !digit(1) || !digit(2) ||
      (line.size() > 3 && line[3] != ' ' && line[3] != '-'))
    return ReplyLine::malformed;
  if (!code.empty() && line.substr(0, 3) != code.substr(0, 3)) return ReplyLine::code_changed;
  return line.size() == 3 || line[3] == ' ' ? ReplyLine::last : ReplyLine::more;
}

}  // namespace geomx::proxy
