#pragma once
// IPv4/IPv6 addresses and prefixes as plain values. An IPv4-mapped IPv6
// address (::ffff:a.b.c.d) is the IPv4 address: it is normalised on parse.
#include <compare>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace geomx::geo {

using u128 = unsigned __int128;

enum class Family : std::uint8_t { v4, v6 };

// Thrown for malformed addresses, prefixes and ranges; the message says why.
class ParseError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class Address {
 public:
  Address() = default;
  static Address v4(std::uint32_t bits) { return Address(Family::v4, bits); }
  // Normalises IPv4-mapped addresses to IPv4.
  static Address v6(u128 bits);
  // Keeps the IPv6 form even for mapped bits: for ranges that span ::ffff:0:0/96.
  static Address v6_raw(u128 bits) { return Address(Family::v6, bits); }

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::v4; }
  // 127.0.0.0/8 or ::1.
  bool is_loopback() const { return is_v4() ? (bits_ >> 24) == 127 : bits_ == 1; }
  // 0.0.0.0 or ::.
  bool is_unspecified() const { return bits_ == 0; }
  std::uint32_t v4_bits() const { return static_cast<std::uint32_t>(bits_); }
  u128 v6_bits() const { return bits_; }
  // Width of the address in bits: 32 or 128.
  unsigned width() const { return is_v4() ? 32 : 128; }
  std::string to_string() const;

  friend auto operator<=>(const Address&, const Address&) = default;

 private:
  Address(Family family, u128 bits) : family_(family), bits_(bits) {}
  Family family_ = Family::v4;  // first: IPv4 addresses order before IPv6
  u128 bits_ = 0;
};

Address parse_address(std::string_view text);  // throws ParseError
std::optional<Address> try_parse_address(std::string_view text);

class Prefix {
 public:
  Prefix() = default;
  // Throws ParseError if bits outside the prefix are set.
  Prefix(Address network, unsigned length);
  // The prefix of `length` bits that contains `address` (host bits cleared).
  static Prefix containing(Address address, unsigned length);

  const Address& network() const { return network_; }
  unsigned length() const { return length_; }
  Family family() const { return network_.family(); }
  Address last() const;
  bool contains(const Address& a) const;
  std::string to_string() const;

  friend auto operator<=>(const Prefix&, const Prefix&) = default;

 private:
  Address network_;
  unsigned length_ = 0;
};

// "a.b.c.d/n", "x::/n", or a bare address (a host prefix). Host bits set is
// an error that names the canonical form.
Prefix parse_prefix(std::string_view text);  // throws ParseError

// Bits helpers shared by the table and the aggregator.
constexpr u128 u128_max = ~u128{0};
inline u128 low_mask(unsigned host_bits, unsigned width) {
  if (host_bits == 0) return 0;
  u128 all = width == 128 ? u128_max : (u128{1} << width) - 1;
  return host_bits >= 128 ? all : ((u128{1} << host_bits) - 1) & all;
}
std::string u128_to_decimal(u128 v);

}  // namespace geomx::geo
