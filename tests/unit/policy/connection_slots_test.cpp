// max_connections, its spare allowance and max_connections_per_ip: slots
// are counted while held and given back when they go.
#include <doctest/doctest.h>

#include <vector>

#include "policy/connection_slots.hpp"

namespace geomx::policy {
namespace {

TEST_CASE("connection slots: at most max at once, given back when a slot goes") {
  ConnectionSlots slots;
  std::vector<ConnectionSlots::Slot> held;
  for (int i = 0; i < 3; ++i) {
    auto s = slots.enter(3);
    REQUIRE(s);
    held.push_back(std::move(*s));
  }
  CHECK(slots.active() == 3);
  CHECK_FALSE(slots.enter(3));
  CHECK(slots.active() == 3);  // a refusal takes nothing
  held.pop_back();
  CHECK(slots.active() == 2);
  CHECK(slots.enter(3));  // and is given back at once (the optional's slot goes here)
  CHECK(slots.active() == 2);
  // The spare allowance is counted apart.
  auto spare = slots.enter_spare(1);
  CHECK(spare);
  CHECK_FALSE(slots.enter_spare(1));
  CHECK(slots.active() == 2);
}

TEST_CASE("per-IP slots: per address, IPv4-mapped is IPv4, 0 is no limit") {
  ConnectionSlots slots;
  const auto a = geo::parse_address("192.0.2.1");
  const auto b = geo::parse_address("192.0.2.2");
  auto a1 = slots.enter_ip(a, 2);
  auto a2 = slots.enter_ip(a, 2);
  REQUIRE(a1);
  REQUIRE(a2);
  CHECK_FALSE(slots.enter_ip(a, 2));
  CHECK_FALSE(slots.enter_ip(geo::parse_address("::ffff:192.0.2.1"), 2));
  CHECK(slots.enter_ip(b, 2));
  a1.reset();
  CHECK(slots.enter_ip(a, 2));
  for (int i = 0; i < 100; ++i) CHECK(slots.enter_ip(a, 0));
  // A moved slot is released once, by its new owner.
  auto moved = std::move(*a2);
  a2.reset();
  auto again = slots.enter_ip(a, 2);
  CHECK(again);
  CHECK_FALSE(slots.enter_ip(a, 2));
}

}  // namespace
}  // namespace geomx::policy
