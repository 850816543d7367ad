// libFuzzer target for the SMTP screen (policy/smtp_screen.hpp). The input's
// first byte picks the tests' actions and a chunk size; the rest is what a
// client sends, fed one line at a time (a client that waits for each
// reply) and then in chunks as a socket may deliver it. The two must end
// alike: the same outcome, replies, failed tests, HELO and hand-off bytes.
// Pipelining only logs here: it depends on how the bytes arrive, by design.
// The bytes held for a line being read stay bounded.
#include <algorithm>
#include <bitset>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "policy/smtp_screen.hpp"

using geomx::policy::SmtpScreen;
namespace conf = geomx::conf;

namespace {

struct Run {
  SmtpScreen::Next next = SmtpScreen::Next::read;
  std::string replies, helo, pending;
  std::bitset<conf::screen_tests> failed;
};

// step 0: one line per feed; else chunks of `step` bytes.
Run run(const conf::Screen& rules, std::string_view input, std::size_t step) {
  SmtpScreen s(rules, "mx.test", "250-mx1\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 SIZE 1000\r\n");
  Run r;
  std::size_t at = 0;  // bytes fed
  while (at < input.size() && r.next == SmtpScreen::Next::read) {
    const std::size_t lf = input.find('\n', at);
    const std::size_t n = step                           ? std::min(step, input.size() - at)
                          : lf == std::string_view::npos ? input.size() - at
                                                         : lf + 1 - at;
    const auto out = s.feed(input.substr(at, n), false);
    at += n;
    r.next = out.next;
    r.replies += out.reply;
    if (out.next == SmtpScreen::Next::read && s.pending().size() >= rules.max_line)
      std::abort();  // a line still being read is never longer than max_line
  }
  r.helo = s.helo_line();
  if (r.next == SmtpScreen::Next::handoff) r.pending = s.pending() + std::string(input.substr(at));
  r.failed = s.failed();
  r.failed.reset(static_cast<std::size_t>(conf::ScreenTest::pipelining));
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  conf::Screen rules;
  rules.mode = conf::ScreenMode::smtp;
  rules.max_line = 64;  // short enough for the fuzzer to reach
  rules.max_commands = 8;
  rules.non_smtp = {"XX*"};
  for (std::size_t i = 0; i < conf::screen_tests; ++i)
    rules.actions[i] = static_cast<conf::ScreenAction>((data[0] >> i) % 3);
  rules.actions[static_cast<std::size_t>(conf::ScreenTest::pipelining)] = conf::ScreenAction::log;
  const std::size_t step = 1 + data[0] % 13;
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const Run lines = run(rules, input, 0);
  const Run chunks = run(rules, input, step);
  // A drop sends nothing, not even the replies to lines read with it.
  const bool replies_differ =
      lines.next != SmtpScreen::Next::drop && lines.replies != chunks.replies;
  if (lines.next != chunks.next || replies_differ || lines.helo != chunks.helo ||
      lines.pending != chunks.pending || lines.failed != chunks.failed)
    std::abort();
  return 0;
}
