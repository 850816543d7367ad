#include <doctest/doctest.h>

#include "policy/smtp_screen.hpp"

using namespace geomx;
using policy::SmtpScreen;
using Next = SmtpScreen::Next;
using conf::ScreenAction;
using conf::ScreenTest;

namespace {

constexpr std::string_view postfix_ehlo =
    "250-mx1.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n"
    "250-XCLIENT NAME ADDR PROTO HELO\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n";

conf::Screen rules() {
  conf::Screen r;
  r.mode = conf::ScreenMode::smtp;
  return r;
}

bool failed(const SmtpScreen& s, ScreenTest t) {
  return s.failed()[static_cast<std::size_t>(t)];
}

}  // namespace

TEST_CASE(
    "EHLO gets the member's capabilities without PIPELINING and XCLIENT, then MAIL hands off") {
  const auto r = rules();
  SmtpScreen s(r, "mx.test", postfix_ehlo);
  CHECK(s.banner() == "220 mx.test ESMTP\r\n");
  auto step = s.feed("EHLO client.example\r\n", false);
  CHECK(step.next == Next::read);
  CHECK(step.reply ==
        "250-mx.test\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n"
        "250 SMTPUTF8\r\n");
  CHECK(s.helo_line() == "EHLO client.example\r\n");
  CHECK(s.helo_name() == "client.example");
  CHECK(s.esmtp());
  step = s.feed("NOOP\r\n", false);
  CHECK(step.reply == "250 2.0.0 Ok\r\n");
  step = s.feed("VRFY postmaster\r\n", false);
  CHECK(step.reply.starts_with("252 "));
  step = s.feed("MAIL FROM:<a@example.org>\r\n", false);
  CHECK(step.next == Next::handoff);
  CHECK(step.reply.empty());
  CHECK(s.pending() == "MAIL FROM:<a@example.org>\r\n");
  CHECK(s.failed().none());
}

TEST_CASE("lines split across reads are joined; STARTTLS and AUTH hand off too") {
  const auto r = rules();
  for (const char* cmd : {"STARTTLS", "AUTH PLAIN AGFAAGI=", "mail from:<>"}) {
    SmtpScreen s(r, "mx.test", "");
    CHECK(s.feed("HE", false).reply.empty());
    CHECK(s.feed("LO a.example\r", false).reply.empty());
    CHECK(s.feed("\n", false).reply == "250 mx.test\r\n");
    CHECK_FALSE(s.esmtp());
    const std::string line = std::string(cmd) + "\r\n";
    CHECK(s.feed(line.substr(0, 3), false).next == Next::read);
    CHECK(s.feed(line.substr(3), false).next == Next::handoff);
    CHECK(s.pending() == line);
  }
}

TEST_CASE("pipelining: a command with bytes behind it, in the buffer or on the socket") {
  const auto r = rules();  // pipelining: reject
  SmtpScreen s(r, "mx.test", postfix_ehlo);
  auto step = s.feed("EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.test>\r\n", false);
  CHECK(step.next == Next::close);
  CHECK(step.failed == ScreenTest::pipelining);
  CHECK(step.reply == "550 5.5.1 Protocol error\r\n");

  SmtpScreen t(r, "mx.test", postfix_ehlo);
  step = t.feed("EHLO a\r\n", true);  // the next command already waits on the socket
  CHECK(step.failed == ScreenTest::pipelining);

  auto logged = rules();
  logged.actions[static_cast<std::size_t>(ScreenTest::pipelining)] = ScreenAction::log;
  SmtpScreen u(logged, "mx.test", "");
  step = u.feed("EHLO a\r\nNOOP\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.test>\r\n", false);
  CHECK(step.next == Next::handoff);
  CHECK(step.reply.starts_with("250-mx.test\r\n"));
  CHECK(step.reply.ends_with("250 2.0.0 Ok\r\n"));  // sent before the hand-off
  CHECK(u.pending() == "MAIL FROM:<>\r\nRCPT TO:<b@example.test>\r\n");
  CHECK(failed(u, ScreenTest::pipelining));
}

TEST_CASE("non-SMTP commands: HTTP, proxy, POP, header lines and the pool's own") {
  auto r = rules();  // non_smtp: drop
  for (const char* line : {"GET / HTTP/1.1\r\n", "CONNECT 10.0.0.1:25 HTTP/1.0\r\n", "user bob\r\n",
                           "Host: example.test\r\n"}) {
    SmtpScreen s(r, "mx.test", "");
    const auto step = s.feed(line, false);
    CHECK(step.next == Next::drop);
    CHECK(step.failed == ScreenTest::non_smtp);
    CHECK(step.reply.empty());
  }
  r.non_smtp = {"xyz*", "FOO"};
  SmtpScreen s(r, "mx.test", "");
  CHECK(s.feed("EHLO a\r\n", false).next == Next::read);
  CHECK(s.feed("XYZZY\r\n", false).next == Next::drop);
  SmtpScreen t(r, "mx.test", "");
  CHECK(t.feed("foo\r\nEHLO a\r\n", false).failed == ScreenTest::non_smtp);  // before pipelining
  SmtpScreen u(r, "mx.test", "");
  CHECK(u.feed("BAR\r\n", false).next == Next::read);  // unknown, not forbidden: 502
}

TEST_CASE("bare newlines are logged by default and the line still counts") {
  const auto r = rules();
  SmtpScreen s(r, "mx.test", "");
  auto step = s.feed("EHLO a.example\n", false);
  CHECK(step.next == Next::read);
  CHECK(s.helo_line() == "EHLO a.example\r\n");
  CHECK(failed(s, ScreenTest::bare_newline));
  step = s.feed("MAIL FROM:<>\n", false);
  CHECK(step.next == Next::handoff);
  CHECK(s.pending() == "MAIL FROM:<>\n");  // the member judges its own bytes

  auto strict = rules();
  strict.actions[static_cast<std::size_t>(ScreenTest::bare_newline)] = ScreenAction::reject;
  SmtpScreen t(strict, "mx.test", "");
  CHECK(t.feed("EHLO a\r\n", false).next == Next::read);
  step = t.feed("NOOP\n", false);
  CHECK(step.next == Next::close);
  CHECK(step.reply == "550 5.5.1 Protocol error\r\n");
}

TEST_CASE("a command before EHLO/HELO, and QUIT") {
  auto r = rules();  // no_helo: log
  SmtpScreen s(r, "mx.test", "");
  CHECK(s.feed("NOOP\r\n", false).reply == "250 2.0.0 Ok\r\n");
  CHECK(s.failed().none());
  CHECK(s.feed("MAIL FROM:<>\r\n", false).next == Next::handoff);
  CHECK(failed(s, ScreenTest::no_helo));
  CHECK(s.helo_line().empty());

  r.actions[static_cast<std::size_t>(ScreenTest::no_helo)] = ScreenAction::reject;
  SmtpScreen t(r, "mx.test", "");
  CHECK(t.feed("RCPT TO:<a@b>\r\n", false).next == Next::close);
  SmtpScreen u(r, "mx.test", "");
  const auto quit = u.feed("QUIT\r\nGARBAGE", false);
  CHECK(quit.next == Next::close);
  CHECK(quit.reply == "221 2.0.0 Bye\r\n");
  CHECK_FALSE(quit.failed);
}

TEST_CASE("over-long lines: rejected, or answered 500 and skipped when only logged") {
  auto r = rules();  // long_line: reject, max_line 512
  SmtpScreen s(r, "mx.test", "");
  auto step = s.feed(std::string(513, 'x'), false);  // no line end yet: already too long
  CHECK(step.next == Next::close);
  CHECK(step.failed == ScreenTest::long_line);
  SmtpScreen ok(r, "mx.test", "");
  CHECK(ok.feed("EHLO " + std::string(505, 'a') + "\r\n", false).next == Next::read);  // 510

  r.actions[static_cast<std::size_t>(ScreenTest::long_line)] = ScreenAction::log;
  SmtpScreen t(r, "mx.test", "");
  CHECK(t.feed(std::string(600, 'x'), false).reply.empty());
  CHECK(t.feed(std::string(100000, 'y'), false).reply.empty());  // not buffered
  CHECK(t.pending().size() <= r.max_line + 1);
  step = t.feed("zz\r\nEHLO a\r\n", false);
  CHECK(step.reply ==
        "500 5.5.2 Error: line too long\r\n250-mx.test\r\n250-SIZE\r\n"
        "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n");
  CHECK(failed(t, ScreenTest::long_line));
}

TEST_CASE("too many commands before MAIL") {
  auto r = rules();
  r.max_commands = 3;
  SmtpScreen s(r, "mx.test", "");
  for (int i = 0; i < 3; ++i) CHECK(s.feed("NOOP\r\n", false).next == Next::read);
  const auto step = s.feed("NOOP\r\n", false);
  CHECK(step.next == Next::close);
  CHECK(step.failed == ScreenTest::too_many_commands);
  CHECK(step.reply.starts_with("421 4.7.0 mx.test "));
}

TEST_CASE("EHLO without a name, or with a stray CR, is answered 501 and not kept") {
  const auto r = rules();
  SmtpScreen s(r, "mx.test", "");
  CHECK(s.feed("EHLO\r\n", false).reply.starts_with("501 "));
  CHECK(s.feed("EHLO a\rMAIL FROM:<>\r\n", false).reply.starts_with("501 "));
  CHECK(s.helo_line().empty());
}
