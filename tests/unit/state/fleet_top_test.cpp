// A node's top talkers as Redis keeps them for the fleet: encoded and
// decoded back the same, and anything else refused (Redis is trusted, not
// its bytes).
#include <doctest/doctest.h>

#include "state/fleet_top.hpp"

namespace geomx::state {

TEST_CASE("top reports encode and decode back; garbage from Redis is refused") {
  const auto us = geo::Country::parse("US");
  FleetTop::Report r{12.5,
                     {{geo::parse_address("192.0.2.1"), us, 7.25, 1},
                      {geo::parse_address("2001:db8::1"), std::nullopt, 5.25, 0}}};
  const auto text = FleetTop::encode(r, 1700000000);
  CHECK(text ==
        "geomx-top 1 1700000000 12.500\n192.0.2.1 US 7.250 1.000\n2001:db8::1 - 5.250 0.000\n");
  const auto back = FleetTop::decode(text);
  REQUIRE(back);
  CHECK(back->written == 1700000000);
  CHECK(back->report.total == 12.5);
  REQUIRE(back->report.rows.size() == 2);
  CHECK(back->report.rows[0].address == r.rows[0].address);
  CHECK(back->report.rows[0].country == us);
  CHECK(back->report.rows[0].connections == 7.25);
  CHECK_FALSE(back->report.rows[1].country);
  CHECK(FleetTop::decode("geomx-top 1 5 0.000\n"));  // a node with no clients yet
  for (const char* bad :
       {"", "geomx-top 1 5 0.000", "geomx-top 2 5 0.000\n", "geomx-top 1 x 0.000\n",
        "geomx-top 1 5 -1\n", "geomx-top 1 5 nan\n", "geomx-top 1 5 1 extra\n",
        "geomx-top 1 5 1\n\n192.0.2.1 US 1 0\n", "geomx-top 1 5 1\n192.0.2.1 US 1\n",
        "geomx-top 1 5 1\n192.0.2.300 US 1 0\n", "geomx-top 1 5 1\n192.0.2.1 U 1 0\n",
        "geomx-top 1 5 1\n192.0.2.1 US 1 0 9\n", "geomx-top 1 5 1\n192.0.2.1  US 1 0\n",
        "geomx-top 1 5 1\n192.0.2.1 US inf 0\n", "geomx-top 1 5 1\n192.0.2.1 US 1e13 0\n"}) {
    CAPTURE(bad);
    CHECK_FALSE(FleetTop::decode(bad));
  }
  std::string many = "geomx-top 1 5 1\n";
  for (std::size_t i = 0; i <= FleetTop::rows; ++i) many += "192.0.2.1 - 1 0\n";
  CHECK_FALSE(FleetTop::decode(many));  // more rows than a node writes
}

}  // namespace geomx::state
