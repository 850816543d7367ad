#include "proxy/proxy_protocol.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace geomx::proxy {
namespace {

constexpr std::array<std::uint8_t, 12> v2_signature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::string_view v1_prefix = "PROXY ";

ParseResult invalid(std::string_view why) {
  return {ParseStatus::invalid, {}, why};
}
ParseResult incomplete() {
  return {};
}

// True while `data` could still become `prefix` (or already starts with it).
bool prefix_of(std::span<const std::uint8_t> data, std::span<const std::uint8_t> prefix) {
  const std::size_t n = std::min(data.size(), prefix.size());
  return std::equal(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n), prefix.begin());
}

std::optional<std::uint16_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  unsigned v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

ParseResult parse_v1(std::string_view text) {
  const auto crlf = text.find("\r\n");
  const std::string_view head = text.substr(0, crlf);
  // A CR or LF anywhere but in the final CRLF is an error, however the
  // bytes were split across reads (only a CR at the very end may still be
  // waiting for its LF).
  for (std::size_t i = 0; i < head.size(); ++i)
    if (head[i] == '\n' ||
        (head[i] == '\r' && (crlf != std::string_view::npos || i + 1 < head.size())))
      return invalid("v1 line has a stray CR or LF");
  if (crlf == std::string_view::npos) {
    if (text.size() >= max_proxy_v1_line) return invalid("v1 line longer than 107 bytes");
    return incomplete();
  }
  if (crlf + 2 > max_proxy_v1_line) return invalid("v1 line longer than 107 bytes");
  ParseResult r{ParseStatus::complete, {}, {}};
  r.header.length = crlf + 2;
  std::string_view line = text.substr(v1_prefix.size(), crlf - v1_prefix.size());
  if (line == "UNKNOWN" || line.starts_with("UNKNOWN ")) return r;  // the rest is ignored
  if (!line.starts_with("TCP4 ") && !line.starts_with("TCP6 "))
    return invalid("v1 protocol is not TCP4, TCP6 or UNKNOWN");
  if (line.find('\0') != std::string_view::npos) return invalid("v1 line has a NUL byte");
  std::string_view fields[5];
  bool more = true;
  for (auto& f : fields) {
    if (!more) return invalid("v1 line has too few fields or double spaces");
    const auto space = line.find(' ');
    f = line.substr(0, space);
    more = space != std::string_view::npos;
    line = more ? line.substr(space + 1) : std::string_view{};
    if (f.empty()) return invalid("v1 line has too few fields or double spaces");
  }
  if (more) return invalid("v1 line has too many fields or a trailing space");
  const bool tcp4 = fields[0] == "TCP4";
  auto src = geo::try_parse_address(fields[1]);
  auto dst = geo::try_parse_address(fields[2]);
  // TCP4 wants dotted quads; TCP6 wants IPv6 text (a mapped address is fine).
  auto family_ok = [&](std::string_view text, const std::optional<geo::Address>& a) {
    return a && (tcp4 ? text.find(':') == std::string_view::npos
                      : text.find(':') != std::string_view::npos);
  };
  if (!family_ok(fields[1], src) || !family_ok(fields[2], dst))
    return invalid("v1 address does not match its protocol");
  auto sport = parse_port(fields[3]), dport = parse_port(fields[4]);
  if (!sport || !dport) return invalid("v1 port is not a number 0-65535");
  r.header.source = conf::Endpoint{*src, *sport};
  r.header.destination = conf::Endpoint{*dst, *dport};
  return r;
}

std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

geo::Address address_at(const std::uint8_t* p, bool v6) {
  if (!v6) return geo::Address::v4(std::uint32_t{p[0]} << 24 | p[1] << 16 | p[2] << 8 | p[3]);
  geo::u128 bits = 0;
  for (int i = 0; i < 16; ++i) bits = bits << 8 | p[i];
  return geo::Address::v6(bits);
}

ParseResult parse_v2(std::span<const std::uint8_t> data) {
  if (data.size() < 16) return incomplete();
  const std::uint8_t version = data[12] >> 4, command = data[12] & 0x0F;
  if (version != 2) return invalid("v2 version is not 2");
  if (command > 1) return invalid("v2 command is neither LOCAL nor PROXY");
  const std::size_t length = be16(&data[14]);
  if (16 + length > max_proxy_header) return invalid("v2 header longer than 536 bytes");
  if (data.size() < 16 + length) return incomplete();
  ParseResult r{ParseStatus::complete, {}, {}};
  r.header.length = 16 + length;
  if (command == 0) return r;  // LOCAL: the connection's own endpoints; the block is discarded
  const std::uint8_t family = data[13] >> 4, transport = data[13] & 0x0F;
  if (family > 3 || transport > 2) return invalid("v2 family or transport unknown");
  if (family == 0) return r;  // UNSPEC: the receiver ignores the addresses
  if (family == 3) return invalid("v2 AF_UNIX addresses are not for SMTP clients");
  if (transport != 1) return invalid("v2 transport is not STREAM");
  const bool v6 = family == 2;
  const std::size_t addresses = v6 ? 36 : 12;
  if (length < addresses) return invalid("v2 length too short for its addresses");
  const std::uint8_t* p = data.data() + 16;
  const std::size_t a = v6 ? 16 : 4;
  r.header.source = conf::Endpoint{address_at(p, v6), be16(p + 2 * a)};
  r.header.destination = conf::Endpoint{address_at(p + a, v6), be16(p + 2 * a + 2)};
  // TLVs: each must fit in what is left of the header.
  for (std::size_t off = 16 + addresses; off < r.header.length;) {
    if (off + 3 > r.header.length) return invalid("v2 TLV header overruns the header");
    const std::size_t tlv = be16(&data[off + 1]);
    if (off + 3 + tlv > r.header.length) return invalid("v2 TLV value overruns the header");
    off += 3 + tlv;
  }
  return r;
}

void put16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xFF));
}

void put_address(std::string& out, const geo::Address& a, bool v6) {
  if (!v6) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>(a.v4_bits() >> s));
    return;
  }
  // An IPv4 address in a v6 header (mixed families) goes as ::ffff:a.b.c.d.
  const geo::u128 bits = a.is_v4() ? (geo::u128{0xffff} << 32 | a.v4_bits()) : a.v6_bits();
  for (int s = 120; s >= 0; s -= 8) out.push_back(static_cast<char>(bits >> s));
}

}  // namespace

ParseResult parse_proxy_header(std::span<const std::uint8_t> data, conf::ProxyProtocol accepted) {
  const bool v1_ok = accepted == conf::ProxyProtocol::v1 || accepted == conf::ProxyProtocol::any;
  const bool v2_ok = accepted == conf::ProxyProtocol::v2 || accepted == conf::ProxyProtocol::any;
  const auto v1_bytes =
      std::span(reinterpret_cast<const std::uint8_t*>(v1_prefix.data()), v1_prefix.size());
  if (data.empty()) return incomplete();
  if (v2_ok && prefix_of(data, v2_signature)) {
    if (data.size() < v2_signature.size()) return incomplete();
    return parse_v2(data);
  }
  if (v1_ok && prefix_of(data, v1_bytes)) {
    if (data.size() < v1_prefix.size()) return incomplete();
    return parse_v1({reinterpret_cast<const char*>(data.data()), data.size()});
  }
  return invalid(accepted == conf::ProxyProtocol::v1   ? "no PROXY v1 header"
                 : accepted == conf::ProxyProtocol::v2 ? "no PROXY v2 signature"
                                                       : "no PROXY header");
}

std::string make_proxy_header(conf::ProxyProtocol version, const conf::Endpoint* source,
                              const conf::Endpoint* destination) {
  const bool known = source && destination;
  if (version == conf::ProxyProtocol::v1) {
    if (!known) return "PROXY UNKNOWN\r\n";
    // A v1 line has one family: mixed families go as TCP6 with a mapped address.
    const bool v6 = !source->address.is_v4() || !destination->address.is_v4();
    auto text = [&](const geo::Address& a) {
      return v6 && a.is_v4() ? "::ffff:" + a.to_string() : a.to_string();
    };
    return "PROXY " + std::string(v6 ? "TCP6 " : "TCP4 ") + text(source->address) + " " +
           text(destination->address) + " " + std::to_string(source->port) + " " +
           std::to_string(destination->port) + "\r\n";
  }
  std::string out(v2_signature.begin(), v2_signature.end());
  if (!known) {
    out.push_back(0x20);  // version 2, LOCAL
    out.push_back(0x00);  // UNSPEC
    put16(out, 0);
    return out;
  }
  const bool v6 = !source->address.is_v4() || !destination->address.is_v4();
  out.push_back(0x21);              // version 2, PROXY
  out.push_back(v6 ? 0x21 : 0x11);  // INET6 or INET, STREAM
  put16(out, v6 ? 36 : 12);
  put_address(out, source->address, v6);
  put_address(out, destination->address, v6);
  put16(out, source->port);
  put16(out, destination->port);
  return out;
}

}  // namespace geomx::proxy
