// The block index's questions at a given time, and the ban rule: one ban
// for a burst, a covering block that ends sooner does not stand in for a
// longer ban, and max_bans caps what is added.
#include <doctest/doctest.h>

#include "policy/blocks.hpp"

namespace geomx::policy {
namespace {

const std::int64_t now = 1'800'000'000;

Block block(const char* cidr, std::optional<std::int64_t> expires, const char* origin) {
  return {geo::parse_prefix(cidr), "", now, expires, origin};
}

TEST_CASE("block set: with and without keep CIDRs unique and drop what expired") {
  const BlockSet set(
      {block("10.0.0.0/8", now - 1, "operator"), block("192.0.2.0/24", std::nullopt, "operator")});
  CHECK(set.all().size() == 2);
  CHECK(set.list(now).size() == 1);  // the /8 expired
  const BlockSet added(set.with(block("192.0.2.0/24", now + 60, "limit:rate"), now));
  REQUIRE(added.all().size() == 1);
  CHECK(added.all()[0].origin == "limit:rate");  // replaced, not doubled
  CHECK_FALSE(added.without(geo::parse_prefix("198.51.100.0/24"), now));
  const auto removed = added.without(geo::parse_prefix("192.0.2.0/24"), now);
  REQUIRE(removed);
  CHECK(removed->empty());
}

TEST_CASE("ban rule: covered, added, or over max_bans") {
  const BlockSet set({block("192.0.2.0/24", now + 60, "limit:rate"),
                      block("198.51.100.0/24", std::nullopt, "operator"),
                      block("203.0.113.0/24", now + 30, "operator")});
  // The same limit's ban already covers it (a burst of sessions each asked).
  CHECK(judge_ban(set, block("192.0.2.7/32", now + 3600, "limit:rate"), 100, now) ==
        BanVerdict::covered);
  // A block that never expires stands in for any ban.
  CHECK(judge_ban(set, block("198.51.100.7/32", now + 3600, "limit:other"), 100, now) ==
        BanVerdict::covered);
  // One that ends sooner does not; one that lasts as long does.
  CHECK(judge_ban(set, block("203.0.113.7/32", now + 3600, "limit:other"), 100, now) ==
        BanVerdict::add);
  CHECK(judge_ban(set, block("203.0.113.7/32", now + 30, "limit:other"), 100, now) ==
        BanVerdict::covered);
  // Not covered at all: added until max_bans bans (origin limit:) are in force.
  CHECK(judge_ban(set, block("233.252.0.1/32", now + 60, "limit:rate"), 2, now) == BanVerdict::add);
  CHECK(judge_ban(set, block("233.252.0.1/32", now + 60, "limit:rate"), 1, now) ==
        BanVerdict::over_max_bans);
  // Expired bans do not count toward the cap.
  CHECK(judge_ban(set, block("233.252.0.1/32", now + 120, "limit:rate"), 1, now + 61) ==
        BanVerdict::add);
}

}  // namespace
}  // namespace geomx::policy
