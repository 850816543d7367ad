// geomx's flattened table must give exactly the country libmaxminddb gives,
// on an .mmdb that MaxMind's own writer made from the whole tor-geoipdb data.
#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <random>

#include "geo/mmdb.hpp"
#include "geo/sources.hpp"

using namespace geomx::geo;

namespace {

const std::string tor_mmdb = std::string(GEOMX_TESTDATA) + "/tor-country.mmdb";

// The anchor: libmaxminddb's own lookup, country else registered_country.
std::string libmaxminddb_country(MmdbFile& db, const Address& a) {
  int gai_error = 0, mmdb_error = 0;
  auto result = MMDB_lookup_string(&db.get(), a.to_string().c_str(), &gai_error, &mmdb_error);
  REQUIRE(gai_error == 0);
  REQUIRE(mmdb_error == MMDB_SUCCESS);
  if (!result.found_entry) return "ZZ";
  for (const char* key : {"country", "registered_country"}) {
    MMDB_entry_data_s data{};
    if (MMDB_get_value(&result.entry, &data, key, "iso_code", nullptr) == MMDB_SUCCESS &&
        data.has_data)
      return std::string(data.utf8_string, data.data_size);
  }
  return "ZZ";
}

struct Tally {
  int checked = 0, mismatches = 0, known = 0;
};

void compare(const GeoTable& table, MmdbFile& db, const Address& a, Tally& tally) {
  const std::string want = libmaxminddb_country(db, a);
  const std::string got(table.lookup(a).country.code());
  ++tally.checked;
  tally.known += want != "ZZ";
  if (got != want) {
    if (++tally.mismatches <= 10)
      MESSAGE(a.to_string() << ": geomx " << got << ", libmaxminddb " << want);
  }
}

}  // namespace

TEST_CASE("tor-country.mmdb: geomx equals libmaxminddb on 100,000 random IPv4 addresses") {
  const GeoTable table = build_table({tor_mmdb});
  MmdbFile db(tor_mmdb);
  std::mt19937_64 rng(4);
  const GeoData ranges = load_range_file(GEOMX_TOR_GEOIP);
  Tally tally;
  for (int i = 0; i < 100000; ++i) {
    std::uint32_t bits = static_cast<std::uint32_t>(rng());
    if (i % 2 == 1) {  // half on the edges of real ranges
      const auto& s = ranges.v4[rng() % ranges.v4.size()].range;
      bits = (i % 4 == 1) ? s.first : s.last + (rng() % 2);
    }
    compare(table, db, Address::v4(bits), tally);
  }
  MESSAGE("IPv4: " << tally.checked << " checked, " << tally.known << " known, " << tally.mismatches
                   << " mismatches");
  CHECK(tally.mismatches == 0);
  CHECK(tally.known > 50000);
}

TEST_CASE("tor-country.mmdb: geomx equals libmaxminddb on 100,000 random IPv6 addresses") {
  const GeoTable table = build_table({tor_mmdb});
  MmdbFile db(tor_mmdb);
  std::mt19937_64 rng(6);
  const GeoData ranges = load_range_file(GEOMX_TOR_GEOIP6);
  auto random128 = [&] { return (u128(rng()) << 64) | rng(); };
  Tally tally;
  for (int i = 0; i < 100000; ++i) {
    u128 bits = random128();
    switch (i % 8) {
      case 0:
        break;  // anywhere
      case 1:
        bits = (bits >> 3) | (u128{1} << 125);
        break;  // 2000::/3
      case 2:
        bits = (bits >> 16) | (u128{0x2002} << 112);
        break;  // 6to4 alias
      case 3:
        bits = (bits >> 32) | (u128{0x20010000} << 96);
        break;  // Teredo alias
      case 4:
        bits = bits >> 96;
        break;    // ::/96
      default: {  // on real ranges
        const auto& s = ranges.v6[rng() % ranges.v6.size()].range;
        bits =
            i % 8 == 5 ? s.first
            : i % 8 == 6
                ? s.last + (rng() % 2)
                : s.first + (s.last - s.first == u128_max ? bits : bits % (s.last - s.first + 1));
      }
    }
    compare(table, db, Address::v6(bits), tally);
  }
  MESSAGE("IPv6: " << tally.checked << " checked, " << tally.known << " known, " << tally.mismatches
                   << " mismatches");
  CHECK(tally.mismatches == 0);
  CHECK(tally.known > 50000);
}

TEST_CASE("hand-made .mmdb files: geomx equals libmaxminddb at every network edge") {
  for (const char* name : {"/edge6.mmdb", "/edge4.mmdb"}) {
    const std::string path = std::string(GEOMX_TESTDATA) + name;
    CAPTURE(path);
    const GeoTable table = build_table({path});
    MmdbFile db(path);
    const bool v6 = db.get().metadata.ip_version == 6;
    Tally tally;
    std::mt19937_64 rng(1);
    for (const char* p : {"0.0.0.0/32", "1.0.0.0/24", "1.0.1.0/24", "1.0.2.0/23", "1.0.4.0/22",
                          "2.0.0.0/8", "2.1.0.0/16", "127.1.0.0/16", "127.2.0.0/16",
                          "127.2.128.0/17", "128.0.0.0/1", "255.255.255.255/32"}) {
      const Prefix prefix = parse_prefix(p);
      const std::uint32_t first = prefix.network().v4_bits(), last = prefix.last().v4_bits();
      for (std::uint32_t k : {first - 1, first, first + 1, last - 1, last, last + 1}) {
        compare(table, db, Address::v4(k), tally);
        if (!v6) continue;
        // The same address through every alias of the IPv4 subtree.
        compare(table, db, Address::v6_raw(u128{k}), tally);
        compare(table, db, Address::v6_raw((u128{0x2002} << 112) | (u128{k} << 80)), tally);
        compare(table, db, Address::v6_raw((u128{0x20010000} << 96) | (u128{k} << 64)), tally);
      }
    }
    if (v6) {
      for (const char* p : {"2001:db8::/32", "2001:db8:1::/48", "2a00::/12", "2a00:1::/32",
                            "8000::/1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}) {
        const Prefix prefix = parse_prefix(p);
        const u128 first = prefix.network().v6_bits(), last = prefix.last().v6_bits();
        for (u128 k : {first - 1, first, first + 1, last - 1, last, last + 1})
          compare(table, db, Address::v6(k), tally);
      }
    }
    for (int i = 0; i < 20000; ++i)
      compare(table, db, Address::v4(static_cast<std::uint32_t>(rng())), tally);
    CHECK(tally.mismatches == 0);
    CHECK(tally.checked > 20000);
  }
}

TEST_CASE("the range files and the .mmdb written from them compile to the same answers") {
  const GeoTable from_ranges = build_table({GEOMX_TOR_GEOIP, GEOMX_TOR_GEOIP6});
  const GeoTable from_mmdb = build_table({tor_mmdb});
  std::mt19937_64 rng(8);
  int mismatches = 0;
  for (int i = 0; i < 100000; ++i) {
    const Address a4 = Address::v4(static_cast<std::uint32_t>(rng()));
    mismatches += from_ranges.lookup(a4).country != from_mmdb.lookup(a4).country;
    // 2000::/3 outside the aliased 2001::/32 and 2002::/16 (the .mmdb answers
    // those with the embedded IPv4 address).
    const u128 bits = (((u128(rng()) << 64) | rng()) >> 3) | (u128{1} << 125);
    const auto top = static_cast<std::uint32_t>(bits >> 96);
    if ((top >> 16) == 0x2002 || top == 0x20010000) continue;
    const Address a6 = Address::v6(bits);
    mismatches += from_ranges.lookup(a6).country != from_mmdb.lookup(a6).country;
  }
  CHECK(mismatches == 0);
  CHECK(from_ranges.interval_count(Family::v4) > 100000);
}

namespace {

const std::string asn_mmdb = std::string(GEOMX_TESTDATA) + "/test-asn.mmdb";

// The anchor: libmaxminddb's autonomous_system_number and organisation.
std::pair<std::uint32_t, std::string> libmaxminddb_asn(MmdbFile& db, const Address& a) {
  int gai_error = 0, mmdb_error = 0;
  auto result = MMDB_lookup_string(&db.get(), a.to_string().c_str(), &gai_error, &mmdb_error);
  REQUIRE(gai_error == 0);
  REQUIRE(mmdb_error == MMDB_SUCCESS);
  if (!result.found_entry) return {0, ""};
  MMDB_entry_data_s number{}, org{};
  if (MMDB_get_value(&result.entry, &number, "autonomous_system_number", nullptr) != MMDB_SUCCESS ||
      !number.has_data)
    return {0, ""};
  std::string name;
  if (MMDB_get_value(&result.entry, &org, "autonomous_system_organization", nullptr) ==
          MMDB_SUCCESS &&
      org.has_data)
    name.assign(org.utf8_string, org.data_size);
  return {number.uint32, name};
}

}  // namespace

TEST_CASE("test-asn.mmdb: AS number and organisation equal libmaxminddb's on 100,000 addresses") {
  // The country data and the AS data in one table, as [geo] builds it.
  const GeoTable table = build_table({tor_mmdb}, {asn_mmdb});
  MmdbFile db(asn_mmdb);
  MmdbFile countries(tor_mmdb);
  std::mt19937_64 rng(8);
  const GeoData v4 = load_range_file(GEOMX_TOR_GEOIP);
  const GeoData v6 = load_range_file(GEOMX_TOR_GEOIP6);
  int checked = 0, known = 0, mismatches = 0, four_byte = 0, country_mismatches = 0;
  for (int i = 0; i < 100000; ++i) {
    Address a;
    if (i % 2 == 0) {
      std::uint32_t bits = static_cast<std::uint32_t>(rng());
      if (i % 4 == 0) {
        const auto& s = v4.v4[rng() % v4.v4.size()].range;
        bits = rng() % 2 ? s.first : s.last + (rng() % 2);
      }
      a = Address::v4(bits);
    } else {
      const auto& s = v6.v6[rng() % v6.v6.size()].range;
      a = Address::v6(i % 4 == 1 ? s.first : s.last + (rng() % 2));
    }
    const auto [want, want_org] = libmaxminddb_asn(db, a);
    const GeoValue& v = table.lookup(a);
    ++checked;
    known += want != 0;
    four_byte += want > 65535;
    if (v.asn != want || table.organisation(v.asn) != want_org) {
      if (++mismatches <= 10)
        MESSAGE(a.to_string() << ": geomx AS" << v.asn << " " << table.organisation(v.asn)
                              << ", libmaxminddb AS" << want << " " << want_org);
    }
    // The AS layer leaves the country as the country database says.
    if (std::string(v.country.code()) != libmaxminddb_country(countries, a)) ++country_mismatches;
  }
  MESSAGE("ASN: " << checked << " checked, " << known << " known, " << four_byte << " 4-byte, "
                  << mismatches << " mismatches");
  CHECK(mismatches == 0);
  CHECK(country_mismatches == 0);
  CHECK(known > 50000);
  CHECK(four_byte > 5000);
  CHECK(table.lookup(parse_address("127.1.2.3")).asn == 64496);
  CHECK(table.organisation(64511) == "Example CN Net");
}

TEST_CASE("an ASN database given as a country database is refused, and the reverse") {
  CHECK_THROWS_WITH_AS(build_table({asn_mmdb}),
                       doctest::Contains("no country data in any of its records (database_type "
                                         "\"GeoLite2-ASN\"); an ASN database goes in [geo] "
                                         "asn_databases"),
                       LoadError);
  CHECK_THROWS_WITH_AS(build_table({tor_mmdb}, {tor_mmdb}),
                       doctest::Contains("no autonomous system numbers"), LoadError);
  CHECK_THROWS_WITH_AS(build_table({tor_mmdb}, {GEOMX_TOR_GEOIP}),
                       doctest::Contains("an ASN database is a MaxMind DB"), LoadError);
}
