#include <doctest/doctest.h>

#include <string>

#include "policy/health.hpp"

using geomx::policy::HealthState;

namespace {
// Feeds "+"/"-" results; returns the state after each as "U"/"D".
std::string run(HealthState& h, const std::string& results, std::uint32_t rise,
                std::uint32_t fall) {
  std::string states;
  for (char c : results) {
    h.record(c == '+', rise, fall);
    states += h.up() ? 'U' : 'D';
  }
  return states;
}
}  // namespace

TEST_CASE("health: UP until fall failures in a row, DOWN until rise successes in a row") {
  HealthState h;
  CHECK(h.up());
  CHECK(run(h, "--+---", 2, 3) == "UUUUUD");  // a success breaks the failure streak
  CHECK(run(h, "+-++", 2, 3) == "DDDU");      // a failure breaks the success streak
  CHECK(h.streak() == 0);
}

TEST_CASE("health: record() reports exactly the changes") {
  HealthState h;
  int changes = 0;
  for (char c : std::string("---+++---")) changes += h.record(c == '+', 3, 3);
  CHECK(changes == 3);
  CHECK_FALSE(h.up());
  // rise 1 / fall 1: every disagreeing result flips the state.
  HealthState quick;
  CHECK(quick.record(false, 1, 1));
  CHECK(quick.record(true, 1, 1));
  CHECK_FALSE(quick.record(true, 1, 1));
}
