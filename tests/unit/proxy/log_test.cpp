// The log line of a session whose peer sent anything at all: one line,
// quoted where it must be, valid JSON in JSON mode.
#include <doctest/doctest.h>

#include <string>

#include "proxy/log.hpp"

namespace geomx::proxy {
namespace {

SessionRecord hostile() {
  SessionRecord r;
  r.conn = 7;
  r.client = conf::parse_endpoint("127.1.0.9:4000");
  r.peer = conf::parse_endpoint("127.0.0.1:5000");
  r.listener = "mx";
  r.country = geo::Country::parse("GB");
  r.rule = "english";
  r.action = "route";
  r.pool = "primary";
  r.member = "127.0.0.1:2525";
  r.end = EndReason::proxy_header_error;
  // What a peer controls: bytes it sent, echoed in the error.
  r.error = "bad \"PROXY\" \\ line\r\nevent=forged \x01\x7f\xc3\xa9";
  return r;
}

TEST_CASE("append_quoted: quotes, backslashes and control characters escaped, UTF-8 kept") {
  const auto quoted = [](std::string_view v) {
    std::string out;
    append_quoted(out, v);
    return out;
  };
  CHECK(quoted(std::string("a\"b\\c\nd\x01\x7f", 9)) == "\"a\\\"b\\\\c\\u000ad\\u0001\\u007f\"");
  CHECK(quoted("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7") ==
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7\"");
  // Not UTF-8: each such byte on its own (a stray continuation, a lead
  // without its tail, an overlong '/', a surrogate, beyond U+10FFFF).
  CHECK(quoted("\xff\x80") == "\"\\u00ff\\u0080\"");
  CHECK(quoted("\xc3") == "\"\\u00c3\"");
  CHECK(quoted("\xc0\xaf") == "\"\\u00c0\\u00af\"");
  CHECK(quoted("\xed\xa0\x80") == "\"\\u00ed\\u00a0\\u0080\"");
  CHECK(quoted("\xf4\x90\x80\x80") == "\"\\u00f4\\u0090\\u0080\\u0080\"");
  // C1 controls and the JavaScript line separators, though valid UTF-8.
  CHECK(quoted("\xc2\x85\xe2\x80\xa8") == "\"\\u0085\\u2028\"");
}

TEST_CASE("session line, logfmt: one line, the peer's bytes quoted and escaped") {
  const Log log(conf::LogFormat::logfmt);
  const auto line = log.session_line(hostile(), "2026-12-01T10:00:00.000Z");
  CHECK(line.find('\n') == std::string::npos);
  CHECK(line.find('\r') == std::string::npos);
  CHECK(
      line.starts_with("ts=2026-12-01T10:00:00.000Z event=session conn=7 client=127.1.0.9:4000 "
                       "peer=127.0.0.1:5000 listener=mx country=GB rule=english action=route "
                       "pool=primary member=127.0.0.1:2525 pregreet=no bytes_in=0 bytes_out=0 "
                       "ms=0 end=proxy_header_error error=\""));
  CHECK(
      line.ends_with("error=\"bad \\\"PROXY\\\" \\\\ line\\u000d\\u000aevent=forged "
                     "\\u0001\\u007f\xc3\xa9\""));
  for (const char c : line) CHECK((static_cast<unsigned char>(c) >= 0x20 && c != 0x7f));
  CHECK(line.find("\xc3\xa9") != std::string::npos);  // é, as it came
}

TEST_CASE("session line, JSON: every value quoted, the line an object") {
  const Log log(conf::LogFormat::json);
  auto r = hostile();
  r.peer = r.client;  // no peer key when they are the same
  const auto line = log.session_line(r, "T");
  CHECK(line.starts_with("{\"ts\":\"T\",\"event\":\"session\",\"conn\":\"7\","));
  CHECK(line.find("\"peer\"") == std::string::npos);
  CHECK(line.ends_with("\\u007f\xc3\xa9\"}"));
  CHECK(line.find('\n') == std::string::npos);
}

TEST_CASE("event line: plain values bare, others quoted") {
  const Log log(conf::LogFormat::logfmt);
  CHECK(log.event_line(
            "T", "block",
            {{"cidr", "192.0.2.0/24"}, {"comment", "two words"}, {"empty", ""}, {"eq", "a=b"}}) ==
        "ts=T event=block cidr=192.0.2.0/24 comment=\"two words\" empty=\"\" eq=\"a=b\"");
}

}  // namespace
}  // namespace geomx::proxy
