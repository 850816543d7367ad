#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "geo/sources.hpp"
#include "support/temp_dir.hpp"

using namespace geomx::geo;
using geomx::test::TempDir;

namespace {

std::string country_of(const GeoTable& t, const char* ip) {
  return std::string(t.lookup(parse_address(ip)).country.code());
}

std::string load_error(const std::string& path, GeoData (*loader)(const std::string&)) {
  try {
    loader(path);
  } catch (const LoadError& e) {
    return e.what();
  }
  return "loaded without error";
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

const std::string edge6 = std::string(GEOMX_TESTDATA) + "/edge6.mmdb";

}  // namespace

TEST_CASE("tor-geoipdb range files: decimal IPv4, IPv6 text, comments, unknown") {
  TempDir dir;
  const auto v4 = dir.write("geoip",
                            "# comment\n"
                            "\n"
                            "16777216,16777471,AU\n"
                            "16777472,16778239,CN\r\n"
                            "16778240,16779263,??\n");
  const auto v6 = dir.write("geoip6",
                            "2001:2::,2001:2:0:ffff:ffff:ffff:ffff:ffff,JP\n"
                            "2001:4:112::,2001:4:112:ffff:ffff:ffff:ffff:ffff,US\n");
  const auto data4 = load_range_file(v4);
  CHECK(data4.v4.size() == 2);
  CHECK(data4.v6.empty());
  const GeoTable t = build_table({v4, v6});
  CHECK(country_of(t, "1.0.0.0") == "AU");
  CHECK(country_of(t, "1.0.0.255") == "AU");
  CHECK(country_of(t, "1.0.1.0") == "CN");
  CHECK(country_of(t, "1.0.4.0") == "ZZ");
  CHECK(country_of(t, "2001:2::1") == "JP");
  CHECK(country_of(t, "2001:4:112:ffff::") == "US");
  CHECK(country_of(t, "2001:4:113::") == "ZZ");
}

TEST_CASE("CSV range files: DB-IP text and IP2Location decimal, quoted, extra columns") {
  TempDir dir;
  const auto dbip = dir.write("dbip.csv",
                              "\"1.0.0.0\",\"1.0.0.255\",\"AU\"\n"
                              "2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,nl\n");
  const auto ip2l = dir.write(
      "ip2l.csv",
      "\"0\",\"281470681743359\",\"-\",\"-\"\n"
      "\"281470698520832\",\"281470698521087\",\"US\",\"United States of America\"\n"
      "\"42540766411282592856903984951653826560\",\"42540766411282592875350729025363378175\","
      "\"DE\",\"Germany\"\n");
  const GeoTable t = build_table({dbip, ip2l});
  CHECK(country_of(t, "1.0.0.7") == "AU");
  CHECK(country_of(t, "2001:db8::9") == "NL");
  CHECK(country_of(t, "1.0.1.1") == "US");  // ::ffff:1.0.1.0 as a decimal, mapped to IPv4
  CHECK(country_of(t, "2001:db8:1::") == "NL");
  CHECK(country_of(t, "2001:db9::") == "ZZ");
}

TEST_CASE("malformed range files fail the whole load with file:line: reason") {
  TempDir dir;
  struct Case {
    const char* content;
    std::string error;
  };
  const Case cases[] = {
      {"1,2,US\n16777216,16777471\n", ":2: expected low,high,country"},
      {"# x\n1.2.3,1.2.3.5,US\n",
       ":2: '1.2.3' is not an IPv4 address (expected four decimal octets 0-255)"},
      {"1.0.0.9,1.0.0.1,US\n", ":1: inverted range: 1.0.0.9 is after 1.0.0.1"},
      {"1.0.0.0,2001:db8::,US\n", ":1: 1.0.0.0 and 2001:db8:: are of different address families"},
      {"1.0.0.0,1.0.0.9,USA\n", ":1: 'USA' is not a two-character country code"},
      {"1,999999999999999999999999999999999999999999,US\n",
       ":1: '999999999999999999999999999999999999999999' exceeds 128 bits"},
      {"1.0.0.0,1.0.0.9,US\n1.0.0.5,1.0.0.20,DE\n", ":2: range overlaps the range on line 1"},
      {"1.0.0.50,1.0.0.90,US\n1.0.0.0,1.0.0.9,DE\n1.0.0.5,1.0.0.6,FR\n",
       ":3: range overlaps the range on line 2"},
      {"::1::2,::3,US\n", ":1: '::1::2' is not an IPv6 address"},
      // Decimals are never truncated to 32 bits.
      {"4294967296,5,US\n", ":1: inverted range: ::1:0:0 is after ::5"},
      {"4294967297,1.2.3.4,US\n", ":1: '4294967297' is too large for an IPv4 address"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.content);
    const auto path = dir.write("f", c.content);
    CHECK(load_error(path, load_range_file) == path + c.error);
  }
  CHECK(load_error(dir.path("missing"), load_range_file) ==
        dir.path("missing") + ": No such file or directory");
}

TEST_CASE("CIDR list files: comments, blank lines, bare addresses, strict prefixes") {
  TempDir dir;
  const auto path = dir.write("list",
                              "# English-speaking\n"
                              "10.0.0.0/24   # office\n"
                              "\n"
                              "10.0.1.0/24\n"
                              "192.0.2.7\n"
                              "2001:db8::/32\n");
  const RangeSet set = load_cidr_file(path);
  CHECK(set.v4.size() == 2);  // merged 10.0.0.0/23 and the host
  CHECK(set.v6.size() == 1);
  const auto bad = dir.write("bad", "10.0.0.0/8\n10.0.0.1/8\n");
  CHECK_THROWS_WITH(load_cidr_file(bad),
                    (bad + ":2: 10.0.0.1/8 has host bits set; the network is 10.0.0.0/8").c_str());
  // Every bad line is said, the first ten of them.
  const auto many = dir.write("many", "x1\n10.0.0.0/8\nx3\nx4\n");
  CHECK_THROWS_WITH(
      load_cidr_file(many),
      (many + ":1: 'x1' is not an IPv4 address (expected four decimal octets 0-255); " + many +
       ":3: 'x3' is not an IPv4 address (expected four decimal octets 0-255); " + many +
       ":4: 'x4' is not an IPv4 address (expected four decimal octets 0-255)")
          .c_str());
  std::string lots;
  for (int i = 0; i < 25; ++i) lots += "bad\n";
  const auto lots_file = dir.write("lots", lots);
  try {
    load_cidr_file(lots_file);
    FAIL("loaded");
  } catch (const LoadError& e) {
    const std::string m = e.what();
    CHECK(m.find(lots_file + ":10: ") != std::string::npos);
    CHECK(m.find(lots_file + ":11: ") == std::string::npos);
    CHECK(m.ends_with("; and 15 more bad lines"));
  }
  const auto bad2 = dir.write("bad2", "10.0.0.0/8\n\n\nhello\n");
  CHECK_THROWS_WITH(load_cidr_file(bad2),
                    (bad2 + ":4: 'hello' is not an IPv4 address (expected four decimal octets "
                            "0-255)")
                        .c_str());
}

TEST_CASE("hand-made .mmdb: aliases, registered_country, nested networks, IPv4-only tree") {
  const GeoTable t = build_table({edge6});
  CHECK(country_of(t, "1.0.0.1") == "AU");
  CHECK(country_of(t, "1.0.1.5") == "CN");  // registered_country only
  CHECK(country_of(t, "1.0.3.0") == "JP");  // country wins over registered_country
  CHECK(country_of(t, "1.0.4.1") == "ZZ");  // a record without any country
  CHECK(country_of(t, "2.1.2.3") == "DE");  // nested in 2.0.0.0/8 (FR)
  CHECK(country_of(t, "2.2.0.0") == "FR");
  CHECK(country_of(t, "0.0.0.0") == "AQ");
  CHECK(country_of(t, "255.255.255.255") == "KP");
  CHECK(country_of(t, "127.1.2.3") == "GB");
  CHECK(country_of(t, "127.2.200.1") == "RU");
  // Aliases answer as the embedded IPv4 address.
  CHECK(country_of(t, "::ffff:2.1.0.1") == "DE");
  CHECK(country_of(t, "2002:0201:0001::") == "DE");    // 6to4 of 2.1.0.1
  CHECK(country_of(t, "2001:0:0100:0105::") == "CN");  // Teredo alias of 1.0.1.5
  CHECK(country_of(t, "::2.1.0.1") == "DE");           // IPv4-compatible
  CHECK(t.network(parse_address("2002:0201:0001::")).to_string() == "2002:201::/32");
  CHECK(country_of(t, "2001:db8::1") == "NL");
  CHECK(country_of(t, "2001:db8:1::1") == "GB");
  CHECK(country_of(t, "2a00:1::1") == "ZZ");
  CHECK(country_of(t, "2a0f::1") == "SE");
  CHECK(country_of(t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "KP");
  CHECK(country_of(t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe") == "IS");

  const GeoTable t4 = build_table({std::string(GEOMX_TESTDATA) + "/edge4.mmdb"});
  CHECK(country_of(t4, "1.0.1.5") == "CN");
  CHECK(country_of(t4, "255.255.255.255") == "KP");
  CHECK(country_of(t4, "2001:db8::1") == "ZZ");
  CHECK(t4.interval_count(Family::v6) == 1);
}

TEST_CASE("truncated .mmdb files fail with libmaxminddb's error, never crash") {
  TempDir dir;
  const std::string bytes = read_all(edge6);
  REQUIRE(bytes.size() > 1000);
  int errors = 0;
  for (std::size_t len :
       {std::size_t{0}, std::size_t{1}, std::size_t{16}, bytes.size() / 4, bytes.size() / 2,
        bytes.size() - 200, bytes.size() - 20, bytes.size() - 1}) {
    CAPTURE(len);
    const auto path = dir.write("t.mmdb", bytes.substr(0, len));
    const auto error = load_error(path, load_mmdb);
    CHECK(error.rfind(path + ": ", 0) == 0);
    errors += error != "loaded without error";
  }
  CHECK(errors == 8);
  CHECK(load_error(dir.write("t.mmdb", bytes.substr(0, bytes.size() / 2)), load_mmdb) ==
        dir.path("t.mmdb") + ": The MaxMind DB file contains invalid metadata");
}

TEST_CASE("a corrupted search tree is reported as corrupt") {
  TempDir dir;
  std::string bytes = read_all(edge6);
  // Node 0 with every bit set: its records point past the data section.
  for (int i = 0; i < 6; ++i) bytes[static_cast<std::size_t>(i)] = '\xff';
  const auto path = dir.write("c.mmdb", bytes);
  CHECK(load_error(path, load_mmdb) ==
        path + ": corrupt database: search tree record points outside the file");
}

TEST_CASE("a search tree whose IPv4 path loops back is reported, not half-loaded") {
  TempDir dir;
  std::string bytes = read_all(edge6);
  // 24-bit records: node 1's left record (bytes 6-8) pointing at node 1.
  // (libmaxminddb itself rejects a record of 0, the root.)
  REQUIRE(bytes.substr(0, 3) == std::string("\0\0\1", 3));
  bytes[6] = bytes[7] = '\0';
  bytes[8] = '\1';
  const auto path = dir.write("loop.mmdb", bytes);
  CHECK(load_error(path, load_mmdb) == path + ": corrupt database: search tree has a cycle");
}

TEST_CASE("aliased IPv6 addresses: the embedded IPv4 country, their own list memberships") {
  TableBuilder b;
  b.add_database(load_mmdb(edge6));
  RangeSet six_to_four, v4_only;
  six_to_four.add(parse_prefix("2002::/16"));
  v4_only.add(parse_prefix("2.1.0.0/16"));
  b.add_list("6to4", six_to_four);
  b.add_list("v4", v4_only);
  b.add_list("germany", {}, {*Country::parse("DE")});
  const GeoTable t = std::move(b).build();
  const GeoValue& v = t.lookup(parse_address("2002:0201:0001::"));  // 6to4 of 2.1.0.1
  CHECK(v.country.code() == "DE");
  CHECK(v.lists == 0b101);  // in 6to4 (its own range) and germany (its country), not in v4
  CHECK(t.lookup(parse_address("2.1.0.1")).lists == 0b110);
  CHECK(t.lookup(parse_address("2002:0200:0001::")).lists == 0b001);    // 2.0.0.1: FR
  CHECK(t.lookup(parse_address("2001:0:0201:0001::")).lists == 0b100);  // Teredo, not in 6to4
}

TEST_CASE("bit-flipped .mmdb files load completely or fail cleanly") {
  TempDir dir;
  const std::string bytes = read_all(edge6);
  std::mt19937_64 rng(99);
  int errors = 0, loaded = 0;
  for (int i = 0; i < 400; ++i) {
    std::string copy = bytes;
    for (int flips = 0; flips < 1 + i % 4; ++flips)
      copy[rng() % copy.size()] ^= static_cast<char>(1 << (rng() % 8));
    const auto path = dir.write("f.mmdb", copy);
    try {
      build_table({path});
      ++loaded;
    } catch (const LoadError& e) {
      CHECK(std::string(e.what()).rfind(path + ": ", 0) == 0);
      ++errors;
    }
  }
  MESSAGE("bit flips: " << loaded << " loaded, " << errors << " rejected");
  CHECK(errors > 0);
  CHECK(loaded + errors == 400);
}
