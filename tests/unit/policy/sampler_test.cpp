// The refusal log's sampler, minute by minute without a clock: the first
// `cap` lines of a minute pass, the rest are counted, and what a minute
// suppressed is due once (and only once) that minute is over.
#include <doctest/doctest.h>

#include "policy/sampler.hpp"

namespace geomx::policy {
namespace {

TEST_CASE("sampler: cap lines a minute, the rest due when the minute is over") {
  Sampler s;
  int admitted = 0;
  for (int i = 0; i < 20; ++i) admitted += s.admit(100, 3);
  CHECK(admitted == 3);
  CHECK(s.take(100) == 0);  // minute 100 is not over: nothing due yet
  CHECK(s.take(101) == 17);
  CHECK(s.take(101) == 0);  // said once
  CHECK(s.admit(101, 3));   // a new minute, a new budget
  CHECK(s.admit(101, 3));
  CHECK(s.admit(101, 3));
  CHECK_FALSE(s.admit(101, 3));
  CHECK(s.admit(105, 3));  // minutes later: what 101 suppressed is due
  CHECK(s.take(105) == 1);
}

TEST_CASE("sampler: cap 0 admits everything") {
  Sampler s;
  for (int i = 0; i < 1000; ++i) CHECK(s.admit(7, 0));
  CHECK(s.take(8) == 0);
}

}  // namespace
}  // namespace geomx::policy
