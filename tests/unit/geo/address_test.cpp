#include <doctest/doctest.h>

#include "geo/address.hpp"

using namespace geomx::geo;

TEST_CASE("addresses parse strictly and print canonically") {
  CHECK(parse_address("1.2.3.4") == Address::v4(0x01020304));
  CHECK(parse_address("255.255.255.255").v4_bits() == 0xffffffffu);
  CHECK(parse_address("::1").v6_bits() == 1);
  CHECK(parse_address("2001:DB8::1").to_string() == "2001:db8::1");
  CHECK(parse_address("::").to_string() == "::");
  CHECK(parse_address("0.0.0.0").to_string() == "0.0.0.0");

  for (const char* bad : {"1.2.3", "256.1.1.1", "1.2.3.4.5", "", "1.2.3.4 ", " 1.2.3.4", "1.2.3.-1",
                          "01.2.3.4", "1..2.3", "a.b.c.d", "::1::2", "1:2:3:4:5:6:7:8:9",
                          "12345::", ":::", "fe80::1%eth0", "::ffff:1.2.3", "1.2.3.4/24"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_address(bad), ParseError);
    CHECK_FALSE(try_parse_address(bad).has_value());
  }
  CHECK_THROWS_WITH(parse_address("256.1.1.1"),
                    "'256.1.1.1' is not an IPv4 address (expected four decimal octets 0-255)");
  CHECK_THROWS_WITH(parse_address("::1::2"), "'::1::2' is not an IPv6 address");
}

TEST_CASE("an IPv4-mapped IPv6 address is the IPv4 address") {
  const auto a = parse_address("::ffff:1.2.3.4");
  CHECK(a.is_v4());
  CHECK(a == parse_address("1.2.3.4"));
  CHECK(parse_address("::ffff:0102:0304") == a);
  CHECK(a.to_string() == "1.2.3.4");
  // IPv4-compatible (::a.b.c.d) and 6to4 addresses stay IPv6.
  CHECK_FALSE(parse_address("::1.2.3.4").is_v4());
  CHECK_FALSE(parse_address("2002:102:304::").is_v4());
}

TEST_CASE("prefixes: canonical form required, bare addresses are host prefixes") {
  CHECK(parse_prefix("10.0.0.0/8").to_string() == "10.0.0.0/8");
  CHECK(parse_prefix("10.1.2.3").to_string() == "10.1.2.3/32");
  CHECK(parse_prefix("2001:db8::/32").to_string() == "2001:db8::/32");
  CHECK(parse_prefix("::1").to_string() == "::1/128");
  CHECK(parse_prefix("0.0.0.0/0").last() == Address::v4(0xffffffffu));
  CHECK(parse_prefix("::/0").last().v6_bits() == u128_max);
  CHECK(parse_prefix("::ffff:10.0.0.0/104").to_string() == "10.0.0.0/8");

  CHECK_THROWS_WITH(parse_prefix("10.0.0.1/33"), "'10.0.0.1/33': prefix length must be 0-32");
  CHECK_THROWS_WITH(parse_prefix("10.0.0.1/8"),
                    "10.0.0.1/8 has host bits set; the network is 10.0.0.0/8");
  CHECK_THROWS_WITH(parse_prefix("2001:db8::1/32"),
                    "2001:db8::1/32 has host bits set; the network is 2001:db8::/32");
  CHECK_THROWS_WITH(parse_prefix("::/129"), "'::/129': prefix length must be 0-128");
  for (const char* bad : {"10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8x", "10.0.0.0/08a", "/8",
                          "1.2.3/24", "::ffff:10.0.0.0/95", "10.0.0.0/1000"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_prefix(bad), ParseError);
  }
}

TEST_CASE("prefix containment at the family boundaries") {
  const auto low = parse_prefix("0.0.0.0/1");
  CHECK(low.contains(parse_address("127.255.255.255")));
  CHECK_FALSE(low.contains(parse_address("128.0.0.0")));
  const auto high6 = parse_prefix("8000::/1");
  CHECK(high6.contains(parse_address("8000::")));
  CHECK_FALSE(high6.contains(parse_address("7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  CHECK_FALSE(high6.contains(parse_address("1.2.3.4")));
  CHECK(Prefix::containing(parse_address("192.168.77.9"), 20).to_string() == "192.168.64.0/20");
  CHECK(u128_to_decimal(u128_max) == "340282366920938463463374607431768211455");
}
