// An exported country list, loaded back as a list, must give the same
// membership as the country lookup.
#include <doctest/doctest.h>

#include <fstream>
#include <random>

#include "geo/export.hpp"
#include "geo/sources.hpp"
#include "support/temp_dir.hpp"

using namespace geomx::geo;

TEST_CASE("export -> CIDR file -> list: same membership as the country on 100,000 addresses") {
  geomx::test::TempDir dir;
  const GeoTable table = build_table({GEOMX_TOR_GEOIP, GEOMX_TOR_GEOIP6});
  const std::vector<std::string> english{"US", "GB", "CA", "AU", "NZ", "IE"};
  auto is_english = [&](const GeoValue& v) {
    return std::find(english.begin(), english.end(), v.country.code()) != english.end();
  };
  for (const bool invert : {false, true}) {
    CAPTURE(invert);
    auto set = table.select([&](const GeoValue& v) { return is_english(v) != invert; });
    const auto prefixes = aggregate(set);
    const auto path = dir.path("english.txt");
    {
      std::ofstream out(path);
      write_address_list(out, ExportFormat::cidr, "english", prefixes);
    }
    TableBuilder b;
    b.add_database(load_range_file(GEOMX_TOR_GEOIP));
    b.add_database(load_range_file(GEOMX_TOR_GEOIP6));
    b.add_list("english", load_cidr_file(path));
    const GeoTable with_list = std::move(b).build();
    std::mt19937_64 rng(invert ? 11 : 10);
    int mismatches = 0, members = 0;
    for (int i = 0; i < 100000; ++i) {
      const Address a = i % 2
                            ? Address::v4(static_cast<std::uint32_t>(rng()))
                            : Address::v6((((u128(rng()) << 64) | rng()) >> 4) | (u128{2} << 124));
      const bool in_list = with_list.lookup(a).lists & 1;
      members += in_list;
      mismatches += in_list != (is_english(table.lookup(a)) != invert);
    }
    MESSAGE(prefixes.size() << " prefixes, " << members << " of 100000 addresses in the list");
    CHECK(mismatches == 0);
    CHECK(members > 1000);
  }
}
