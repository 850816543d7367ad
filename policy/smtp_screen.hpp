#pragma once
// The SMTP screen's protocol half (a pool's screen = "smtp"): postscreen's
// deep protocol tests over the client's bytes, as a pure state machine.
// The session (proxy/screen.cpp) reads, feeds what it read and writes the
// replies; at the first MAIL, STARTTLS or AUTH the screen hands the session
// off to a member, which gets the client's EHLO replayed and then the
// pending command. No I/O here, no clock: fuzzed and unit-tested alone.
#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"

namespace geomx::policy {

class SmtpScreen {
 public:
  // rules: the pool's; hostname: our 220 and 250 name; capabilities: the
  // member's EHLO reply as its probe last saw it ("250-name\r\n250-SIZE
  // ...\r\n250 SMTPUTF8\r\n"), empty when unknown (a few safe ones then).
  SmtpScreen(const conf::Screen& rules, std::string_view hostname, std::string_view capabilities);

  // The banner the client is sent first.
  std::string banner() const;

  enum class Next : std::uint8_t {
    read,     // send `reply` (if any), then read more and feed it
    handoff,  // send nothing more: connect to a member, replay, relay pending()
    close,    // send `reply` (if any), then close (QUIT, or a test's reject)
    drop,     // close at once, no reply (a test's drop)
  };
  struct Step {
    Next next = Next::read;
    std::string reply;  // for the client, CRLF-terminated lines
    // The test that ended the session (drop or reject), if one did.
    std::optional<conf::ScreenTest> failed;
  };
  // The client's bytes. `more_waiting`: the socket has bytes beyond these
  // (so a command the client sent was not waiting for our reply to the one
  // before it: pipelining). Lines are taken up to the first that ends the
  // screen; bytes after it are kept in pending().
  Step feed(std::string_view bytes, bool more_waiting);

  // The tests failed so far (each once), whatever their action.
  const std::bitset<conf::screen_tests>& failed() const { return failed_; }
  // The client's HELO/EHLO, as it will be replayed: "EHLO name\r\n", or
  // empty when it gave none; and the name alone.
  const std::string& helo_line() const { return helo_line_; }
  const std::string& helo_name() const { return helo_name_; }
  bool esmtp() const { return esmtp_; }
  // After Next::handoff: the hand-off command and every byte after it.
  const std::string& pending() const { return buf_; }

 private:
  // One complete line (without its line ending); `waiting`: bytes followed it.
  Step command(std::string_view line, bool waiting);
  // Records a failed test; the Step that ends the session, or nullopt (log).
  std::optional<Step> fail(conf::ScreenTest t);
  std::string ehlo_reply() const;

  const conf::Screen& rules_;
  std::string hostname_;
  std::vector<std::string> capabilities_;  // after the name, PIPELINING and XCLIENT gone
  std::string buf_;                        // bytes not yet taken as lines
  std::string helo_line_, helo_name_;
  bool esmtp_ = false;
  bool skipping_ = false;  // inside an over-long line whose test only logs: up to its LF
  std::uint32_t commands_ = 0;
  std::bitset<conf::screen_tests> failed_;
};

}  // namespace geomx::policy
