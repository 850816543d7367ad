#include "geo/address.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>

namespace geomx::geo {
namespace {

bool is_mapped(u128 bits) {
  return (bits >> 32) == 0xffff;
}

std::optional<std::uint32_t> parse_v4(std::string_view text) {
  std::array<char, INET_ADDRSTRLEN> buf{};
  if (text.size() >= buf.size()) return std::nullopt;
  std::copy(text.begin(), text.end(), buf.begin());
  in_addr a{};
  if (inet_pton(AF_INET, buf.data(), &a) != 1) return std::nullopt;
  return ntohl(a.s_addr);
}

std::optional<u128> parse_v6(std::string_view text) {
  std::array<char, INET6_ADDRSTRLEN + 1> buf{};
  if (text.size() >= buf.size()) return std::nullopt;
  std::copy(text.begin(), text.end(), buf.begin());
  in6_addr a{};
  if (inet_pton(AF_INET6, buf.data(), &a) != 1) return std::nullopt;
  u128 bits = 0;
  for (auto byte : a.s6_addr) bits = (bits << 8) | byte;
  return bits;
}

}  // namespace

Address Address::v6(u128 bits) {
  if (is_mapped(bits)) return v4(static_cast<std::uint32_t>(bits));
  return Address(Family::v6, bits);
}

std::string Address::to_string() const {
  if (is_v4()) {
    auto b = v4_bits();
    return fmt::format("{}.{}.{}.{}", b >> 24, (b >> 16) & 255, (b >> 8) & 255, b & 255);
  }
  in6_addr a{};
  for (int i = 15; i >= 0; --i) a.s6_addr[i] = static_cast<std::uint8_t>(bits_ >> (8 * (15 - i)));
  std::array<char, INET6_ADDRSTRLEN> buf{};
  inet_ntop(AF_INET6, &a, buf.data(), buf.size());
  return buf.data();
}

std::optional<Address> try_parse_address(std::string_view text) {
  if (text.find(':') == std::string_view::npos) {
    if (auto v4 = parse_v4(text)) return Address::v4(*v4);
    return std::nullopt;
  }
  if (auto v6 = parse_v6(text)) return Address::v6(*v6);
  return std::nullopt;
}

Address parse_address(std::string_view text) {
  if (auto a = try_parse_address(text)) return *a;
  if (text.empty()) throw ParseError("empty address");
  if (text.find(':') == std::string_view::npos)
    throw ParseError(
        fmt::format("'{}' is not an IPv4 address (expected four decimal octets 0-255)", text));
  throw ParseError(fmt::format("'{}' is not an IPv6 address", text));
}

Prefix::Prefix(Address network, unsigned length) : network_(network), length_(length) {
  const unsigned width = network.width();
  if (length > width)
    throw ParseError(fmt::format("prefix length {} is longer than {} bits", length, width));
  const u128 host = low_mask(width - length, width);
  const u128 bits = network.is_v4() ? network.v4_bits() : network.v6_bits();
  if ((bits & host) != 0) {
    auto canonical = containing(network, length);
    throw ParseError(fmt::format("{}/{} has host bits set; the network is {}", network.to_string(),
                                 length, canonical.to_string()));
  }
}

Prefix Prefix::containing(Address address, unsigned length) {
  Prefix p;
  const unsigned width = address.width();
  length = std::min(length, width);
  const u128 host = low_mask(width - length, width);
  p.network_ = address.is_v4() ? Address::v4(static_cast<std::uint32_t>(address.v4_bits() & ~host))
                               : Address::v6_raw(address.v6_bits() & ~host);
  p.length_ = length;
  return p;
}

Address Prefix::last() const {
  const unsigned width = network_.width();
  const u128 host = low_mask(width - length_, width);
  return network_.is_v4() ? Address::v4(static_cast<std::uint32_t>(network_.v4_bits() | host))
                          : Address::v6_raw(network_.v6_bits() | host);
}

bool Prefix::contains(const Address& a) const {
  if (a.family() != family()) return false;
  return network_ <= a && a <= last();
}

std::string Prefix::to_string() const {
  return fmt::format("{}/{}", network_.to_string(), length_);
}

Prefix parse_prefix(std::string_view text) {
  const auto slash = text.find('/');
  const auto addr_text = text.substr(0, slash);
  Address a = parse_address(addr_text);
  // ::ffff:a.b.c.d/N is the IPv4 prefix a.b.c.d/(N-96).
  const bool mapped = a.is_v4() && addr_text.find(':') != std::string_view::npos;
  if (slash == std::string_view::npos) return Prefix(a, a.width());
  const auto len_text = text.substr(slash + 1);
  unsigned length = 0;
  const bool digits =
      !len_text.empty() && len_text.size() <= 3 &&
      std::all_of(len_text.begin(), len_text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (digits) length = static_cast<unsigned>(std::stoul(std::string(len_text)));
  const unsigned max = mapped ? 128 : a.width();
  if (!digits || length > max)
    throw ParseError(fmt::format("'{}': prefix length must be 0-{}", text, max));
  if (mapped) {
    if (length < 96)
      throw ParseError(fmt::format("'{}': mapped IPv4 prefix shorter than /96", text));
    length -= 96;
  }
  return Prefix(a, length);
}

std::string u128_to_decimal(u128 v) {
  if (v == 0) return "0";
  std::string s;
  while (v != 0) {
    s.push_back(static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  std::reverse(s.begin(), s.end());
  return s;
}

}  // namespace geomx::geo
