#include "policy/smtp_screen.hpp"

#include <algorithm>
#include <array>

#include <fmt/format.h>

namespace geomx::policy {
namespace {

using conf::ScreenTest;

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The verb of a command line and what follows it.
std::pair<std::string, std::string_view> split(std::string_view line) {
  line = trim(line);
  const auto space = line.find_first_of(" \t");
  if (space == std::string_view::npos) return {upper(line), {}};
  return {upper(line.substr(0, space)), trim(line.substr(space + 1))};
}

// Capabilities a client must not see: we do not pipeline, and the XCLIENT
// family is for geomx (an authorized host), not for the client.
bool hidden(std::string_view keyword) {
  return keyword == "PIPELINING" || keyword == "XCLIENT" || keyword == "XFORWARD";
}

// An HTTP, proxy or POP request, or a header line ("Host: ..."), as
// postscreen_forbidden_commands has them; and the pool's own verbs (a
// trailing '*' matches any verb it begins).
bool non_smtp(const std::string& verb, const std::vector<std::string>& extra) {
  static constexpr std::array builtin{"CONNECT", "GET", "POST", "HEAD", "PUT", "USER", "PASS"};
  if (std::find(builtin.begin(), builtin.end(), verb) != builtin.end()) return true;
  if (!verb.empty() && verb.back() == ':') return true;
  return std::any_of(extra.begin(), extra.end(), [&](const std::string& p) {
    if (!p.empty() && p.back() == '*')
      return verb.compare(0, p.size() - 1, upper(p.substr(0, p.size() - 1))) == 0;
    return verb == upper(p);
  });
}

// The reply before closing when a test's action is "reject".
std::string reject_reply(ScreenTest t, std::string_view hostname) {
  switch (t) {
    case ScreenTest::too_many_commands:
      return fmt::format("421 4.7.0 {} Error: too many commands\r\n", hostname);
    case ScreenTest::long_line:
      return "500 5.5.2 Error: line too long\r\n";
    case ScreenTest::non_smtp:
      return "521 5.7.0 Error: not an SMTP command\r\n";
    case ScreenTest::pipelining:
    case ScreenTest::bare_newline:
    case ScreenTest::no_helo:
      break;
  }
  return "550 5.5.1 Protocol error\r\n";
}

}  // namespace

SmtpScreen::SmtpScreen(const conf::Screen& rules, std::string_view hostname,
                       std::string_view capabilities)
    : rules_(rules), hostname_(hostname) {
  // Each line after the first ("250-name") is one capability.
  bool first = true;
  for (std::string_view rest = capabilities; !rest.empty();) {
    const auto end = rest.find("\r\n");
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 2);
    if (first || line.size() <= 4 || line.compare(0, 3, "250") != 0) {
      first = false;
      continue;
    }
    const std::string_view cap = trim(line.substr(4));
    if (cap.empty() || hidden(upper(cap.substr(0, cap.find(' '))))) continue;
    capabilities_.push_back(std::string(cap));
  }
  if (capabilities.empty()) capabilities_ = {"SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"};
}

std::string SmtpScreen::banner() const {
  return fmt::format("220 {} ESMTP\r\n", hostname_);
}

std::string SmtpScreen::ehlo_reply() const {
  if (capabilities_.empty()) return fmt::format("250 {}\r\n", hostname_);
  std::string out = fmt::format("250-{}\r\n", hostname_);
  for (std::size_t i = 0; i < capabilities_.size(); ++i)
    out += fmt::format("250{}{}\r\n", i + 1 == capabilities_.size() ? ' ' : '-', capabilities_[i]);
  return out;
}

std::optional<SmtpScreen::Step> SmtpScreen::fail(ScreenTest t) {
  const auto i = static_cast<std::size_t>(t);
  failed_.set(i);
  switch (rules_.actions[i]) {
    case conf::ScreenAction::drop:
      return Step{Next::drop, {}, t};
    case conf::ScreenAction::reject:
      return Step{Next::close, reject_reply(t, hostname_), t};
    case conf::ScreenAction::log:
      break;
  }
  return std::nullopt;
}

SmtpScreen::Step SmtpScreen::feed(std::string_view bytes, bool more_waiting) {
  buf_.append(bytes);
  std::string replies;  // to the lines before the one that ends this feed
  auto ending = [&](Step s) {
    if (s.next != Next::drop) s.reply = replies + s.reply;
    return s;
  };
  for (;;) {
    const auto lf = buf_.find('\n');
    if (skipping_) {  // the rest of an over-long line: thrown away
      buf_.erase(0, lf == std::string::npos ? buf_.size() : lf + 1);
      if (lf == std::string::npos) break;
      skipping_ = false;
      replies += "500 5.5.2 Error: line too long\r\n";
      continue;
    }
    // max_line counts the CRLF (RFC 5321's 512); a line without its LF yet
    // is too long once the LF can no longer fit.
    const bool too_long =
        lf == std::string::npos ? buf_.size() >= rules_.max_line : lf + 1 > rules_.max_line;
    if (too_long) {
      if (auto end = fail(ScreenTest::long_line)) return ending(*end);
      skipping_ = true;
      continue;
    }
    if (lf == std::string::npos) break;
    const bool bare = lf == 0 || buf_[lf - 1] != '\r';
    if (bare)
      if (auto end = fail(ScreenTest::bare_newline)) return ending(*end);
    const std::string line = buf_.substr(0, bare ? lf : lf - 1);
    const bool waiting = buf_.size() > lf + 1 || more_waiting;
    Step s = command(line, waiting);
    if (s.next == Next::handoff) {  // the command stays in pending() for the member
      s.reply = replies + s.reply;
      return s;
    }
    buf_.erase(0, lf + 1);
    if (s.next != Next::read) return ending(s);
    replies += s.reply;
  }
  return Step{Next::read, replies, std::nullopt};
}

SmtpScreen::Step SmtpScreen::command(std::string_view line, bool waiting) {
  const auto [verb, args] = split(line);
  if (non_smtp(verb, rules_.non_smtp)) {
    if (auto end = fail(ScreenTest::non_smtp)) return *end;
    return Step{Next::read, "502 5.5.2 Error: command not recognized\r\n", std::nullopt};
  }
  if (verb == "QUIT") return Step{Next::close, "221 2.0.0 Bye\r\n", std::nullopt};
  if (waiting)
    if (auto end = fail(ScreenTest::pipelining)) return *end;
  const bool greeted = !helo_line_.empty();
  const bool anytime = verb == "EHLO" || verb == "HELO" || verb == "NOOP" || verb == "RSET";
  if (!greeted && !anytime)
    if (auto end = fail(ScreenTest::no_helo)) return *end;
  if (verb == "MAIL" || verb == "STARTTLS" || verb == "AUTH")
    return Step{Next::handoff, {}, std::nullopt};
  if (++commands_ > rules_.max_commands)
    if (auto end = fail(ScreenTest::too_many_commands)) return *end;
  std::string reply;
  if (verb == "EHLO" || verb == "HELO") {
    const std::string_view name = args.substr(0, args.find_first_of(" \t"));
    // Replayed to the member as it came: no stray CR or NUL inside.
    if (name.empty() || args.find_first_of(std::string_view("\r\0", 2)) != std::string_view::npos)
      return Step{Next::read, fmt::format("501 5.5.4 Syntax: {} hostname\r\n", verb), std::nullopt};
    helo_name_ = std::string(name);
    helo_line_ = fmt::format("{} {}\r\n", verb, args);
    esmtp_ = verb == "EHLO";
    reply = esmtp_ ? ehlo_reply() : fmt::format("250 {}\r\n", hostname_);
  } else if (verb == "NOOP" || verb == "RSET") {
    reply = "250 2.0.0 Ok\r\n";
  } else if (verb == "HELP") {
    reply = "214 2.0.0 See RFC 5321\r\n";
  } else if (verb == "VRFY") {
    reply = "252 2.0.0 Send some mail, I'll try my best\r\n";
  } else if (verb == "RCPT" || verb == "DATA" || verb == "BDAT") {
    reply = "503 5.5.1 Error: need MAIL command\r\n";
  } else if (verb.empty()) {
    reply = "500 5.5.2 Error: bad syntax\r\n";
  } else {
    reply = "502 5.5.2 Error: command not recognized\r\n";
  }
  return Step{Next::read, std::move(reply), std::nullopt};
}

}  // namespace geomx::policy
