#include <doctest/doctest.h>

#include <string>

#include "proxy/proxy_protocol.hpp"

using namespace geomx;
using namespace geomx::proxy;
using conf::ProxyProtocol;

namespace {

ParseResult parse(const std::string& bytes, ProxyProtocol accepted = ProxyProtocol::any) {
  return parse_proxy_header(
      std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), accepted);
}

const std::string sig("\r\n\r\n\0\r\nQUIT\n", 12);

std::string v2(std::uint8_t ver_cmd, std::uint8_t fam, const std::string& body) {
  std::string h = sig;
  h.push_back(static_cast<char>(ver_cmd));
  h.push_back(static_cast<char>(fam));
  h.push_back(static_cast<char>(body.size() >> 8));
  h.push_back(static_cast<char>(body.size() & 0xff));
  return h + body;
}

const std::string inet_body("\xc0\x00\x02\x01\xc6\x33\x64\x07\x30\x39\x00\x19", 12);

}  // namespace

TEST_CASE("v1: the spec's examples and the client's bytes after the header") {
  auto r = parse("PROXY TCP4 192.0.2.1 198.51.100.7 56324 25\r\nEHLO x\r\n");
  REQUIRE(r.status == ParseStatus::complete);
  CHECK(r.header.length == 44);
  CHECK(r.header.source->to_string() == "192.0.2.1:56324");
  CHECK(r.header.destination->to_string() == "198.51.100.7:25");
  r = parse("PROXY TCP6 2001:db8::1 2001:db8::2 4444 25\r\n");
  REQUIRE(r.status == ParseStatus::complete);
  CHECK(r.header.source->to_string() == "[2001:db8::1]:4444");
  r = parse("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n");
  REQUIRE(r.status == ParseStatus::complete);
  CHECK(r.header.source->address.is_v4());
  r = parse("PROXY UNKNOWN\r\n");
  REQUIRE(r.status == ParseStatus::complete);
  CHECK_FALSE(r.header.source);
  r = parse("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n");
  CHECK(r.status == ParseStatus::complete);
  // The longest addresses and ports the spec allows (104 bytes), and the
  // 107-byte limit itself (UNKNOWN lines may carry anything up to it).
  const std::string longest =
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 65535\r\n";
  REQUIRE(longest.size() == 104);
  CHECK(parse(longest).status == ParseStatus::complete);
  const std::string at_limit = "PROXY UNKNOWN " + std::string(107 - 16, 'x') + "\r\n";
  REQUIRE(at_limit.size() == 107);
  CHECK(parse(at_limit).status == ParseStatus::complete);
  const std::string over_limit = "PROXY UNKNOWN " + std::string(108 - 16, 'x') + "\r\n";
  REQUIRE(over_limit.size() == 108);
  CHECK(parse(over_limit).error == "v1 line longer than 107 bytes");
  // Without a CRLF yet: 106 bytes may still end well, 107 cannot.
  CHECK(parse(at_limit.substr(0, 106)).status == ParseStatus::incomplete);
  CHECK(parse(over_limit.substr(0, 107)).error == "v1 line longer than 107 bytes");
}

TEST_CASE("v1: truncated input is incomplete, malformed input is invalid") {
  for (const char* partial :
       {"P", "PROX", "PROXY ", "PROXY TCP4 1.2.3.4", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"}) {
    CAPTURE(partial);
    CHECK(parse(partial).status == ParseStatus::incomplete);
  }
  struct Case {
    std::string bytes;
    std::string_view error;
  };
  const Case cases[] = {
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1 line has a stray CR or LF"},
      {"PROXY UNKNOWN a\nb\r\n", "v1 line has a stray CR or LF"},
      {"PROXY UNKNOWN a\rb\r\n", "v1 line has a stray CR or LF"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "v1 line has a stray CR or LF"},
      {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "v1 protocol is not TCP4, TCP6 or UNKNOWN"},
      {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "v1 line has too few fields or double spaces"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1 line has too few fields or double spaces"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "v1 line has too many fields or a trailing space"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1 line has too many fields or a trailing space"},
      {std::string("PROXY TCP4 1.2.3.4\0x 5.6.7.8 1 2\r\n", 35), "v1 line has a NUL byte"},
      {"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "v1 address does not match its protocol"},
      {"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "v1 address does not match its protocol"},
      {"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "v1 address does not match its protocol"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "v1 port is not a number 0-65535"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "v1 port is not a number 0-65535"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "v1 port is not a number 0-65535"},
      {"PROXY UNKNOWNX\r\n", "v1 protocol is not TCP4, TCP6 or UNKNOWN"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2" + std::string(100, ' '), "v1 line longer than 107 bytes"},
      {"EHLO client.example\r\n", "no PROXY header"},
      {"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY header"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.bytes);
    const auto r = parse(c.bytes);
    CHECK(r.status == ParseStatus::invalid);
    CHECK(r.error == c.error);
  }
  // A listener that wants v2 refuses v1, and the other way round.
  CHECK(parse("PROXY UNKNOWN\r\n", ProxyProtocol::v2).error == "no PROXY v2 signature");
  CHECK(parse(v2(0x20, 0, ""), ProxyProtocol::v1).error == "no PROXY v1 header");
}

TEST_CASE("v2: PROXY over INET and INET6, LOCAL, UNSPEC, TLVs, trailing payload") {
  auto r = parse(v2(0x21, 0x11, inet_body) + "EHLO");
  REQUIRE(r.status == ParseStatus::complete);
  CHECK(r.header.length == 28);
  CHECK(r.header.source->to_string() == "192.0.2.1:12345");
  CHECK(r.header.destination->to_string() == "198.51.100.7:25");
  std::string six(36, '\0');
  six[15] = 1;                                                       // ::1
  six[16] = 0x20, six[17] = 0x01, six[18] = 0x0d, six[19] = '\xb8';  // 2001:db8::
  six[33] = 7, six[35] = 25;
  r = parse(v2(0x21, 0x21, six));
  REQUIRE(r.status == ParseStatus::complete);
  CHECK(r.header.source->to_string() == "[::1]:7");
  CHECK(r.header.destination->to_string() == "[2001:db8::]:25");
  // LOCAL (health checks): addresses ignored, whatever the family.
  r = parse(v2(0x20, 0x00, ""));
  REQUIRE(r.status == ParseStatus::complete);
  CHECK_FALSE(r.header.source);
  CHECK(parse(v2(0x20, 0x11, inet_body)).status == ParseStatus::complete);
  CHECK(parse(v2(0x20, 0xff, "junk")).status == ParseStatus::complete);  // LOCAL: block discarded
  // UNSPEC with PROXY: the receiver ignores the addresses.
  r = parse(v2(0x21, 0x00, "xyz"));
  REQUIRE(r.status == ParseStatus::complete);
  CHECK_FALSE(r.header.source);
  // TLVs within the length are skipped.
  r = parse(v2(0x21, 0x11,
               inet_body + std::string("\x04\x00\x03"
                                       "abc"
                                       "\xee\x00\x00",
                                       9)));
  REQUIRE(r.status == ParseStatus::complete);
  CHECK(r.header.length == 16 + 12 + 9);
}

TEST_CASE("v2: truncated, oversized, wrong signature/version/command/family/length, TLV overruns") {
  const std::string full = v2(0x21, 0x11, inet_body);
  for (std::size_t n = 1; n < full.size(); ++n) {
    CAPTURE(n);
    CHECK(parse(full.substr(0, n)).status == ParseStatus::incomplete);
  }
  struct Case {
    std::string bytes;
    std::string_view error;
  };
  std::string bad_sig = full;
  bad_sig[5] = 'X';
  const Case cases[] = {
      {bad_sig, "no PROXY header"},
      {v2(0x11, 0x11, inet_body), "v2 version is not 2"},
      {v2(0x22, 0x11, inet_body), "v2 command is neither LOCAL nor PROXY"},
      {v2(0x21, 0x41, inet_body), "v2 family or transport unknown"},
      {v2(0x21, 0x13, inet_body), "v2 family or transport unknown"},
      {v2(0x21, 0x12, inet_body), "v2 transport is not STREAM"},
      {v2(0x21, 0x31, std::string(216, 'x')), "v2 AF_UNIX addresses are not for SMTP clients"},
      {v2(0x21, 0x11, inet_body.substr(0, 11)), "v2 length too short for its addresses"},
      {v2(0x21, 0x21, std::string(35, '\0')), "v2 length too short for its addresses"},
      {v2(0x21, 0x11, inet_body + std::string("\x04\x00", 2)), "v2 TLV header overruns the header"},
      {v2(0x21, 0x11,
          inet_body + std::string("\x04\x00\x05"
                                  "abc",
                                  6)),
       "v2 TLV value overruns the header"},
      {v2(0x21, 0x11, inet_body + std::string(537 - 16 - 12, '\0')),
       "v2 header longer than 536 bytes"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.error);
    const auto r = parse(c.bytes);
    CHECK(r.status == ParseStatus::invalid);
    CHECK(r.error == c.error);
  }
}

TEST_CASE("v2: exactly 536 bytes is the largest header") {
  std::string tlv("\xee", 1);
  const std::size_t value = 536 - 16 - 12 - 3;
  tlv.push_back(static_cast<char>(value >> 8));
  tlv.push_back(static_cast<char>(value & 0xff));
  tlv += std::string(value, 'v');
  const auto r = parse(v2(0x21, 0x11, inet_body + tlv));
  REQUIRE(r.status == ParseStatus::complete);
  CHECK(r.header.length == 536);
}

TEST_CASE("headers geomx sends parse back to the same endpoints") {
  const conf::Endpoint src{geo::parse_address("203.0.113.9"), 4444};
  const conf::Endpoint dst{geo::parse_address("192.0.2.25"), 25};
  const conf::Endpoint src6{geo::parse_address("2001:db8::9"), 5555};
  CHECK(make_proxy_header(ProxyProtocol::v1, &src, &dst) ==
        "PROXY TCP4 203.0.113.9 192.0.2.25 4444 25\r\n");
  CHECK(make_proxy_header(ProxyProtocol::v1, &src6, &dst) ==
        "PROXY TCP6 2001:db8::9 ::ffff:192.0.2.25 5555 25\r\n");
  CHECK(make_proxy_header(ProxyProtocol::v1, nullptr, nullptr) == "PROXY UNKNOWN\r\n");
  for (auto version : {ProxyProtocol::v1, ProxyProtocol::v2}) {
    for (const auto* s : {&src, &src6}) {
      const auto bytes = make_proxy_header(version, s, &dst);
      const auto r = parse(bytes, version);
      REQUIRE(r.status == ParseStatus::complete);
      CHECK(r.header.length == bytes.size());
      CHECK(*r.header.source == *s);
      CHECK(*r.header.destination == dst);
    }
    const auto local = make_proxy_header(version, nullptr, nullptr);
    const auto r = parse(local, version);
    REQUIRE(r.status == ParseStatus::complete);
    CHECK_FALSE(r.header.source);
  }
}
