// [[limit]] tables: the token bucket, concurrent holds, prefix aggregation
// and the fixed size under a flood of sources.
#include <random>

#include <doctest/doctest.h>

#include "policy/limit_table.hpp"

namespace geomx::policy {
namespace {

using Clock = LimitTable::Clock;
using V = LimitTable::Verdict;

conf::Limit rate_limit(std::uint32_t rate, std::uint32_t burst) {
  conf::Limit l;
  l.rate = rate;
  l.per = std::chrono::minutes(1);
  l.burst = burst;
  return l;
}

TEST_CASE("a token bucket: burst at once, then one per rate interval") {
  auto table = std::make_shared<LimitTable>(100);
  const auto limit = rate_limit(6, 3);  // one token every 10 s
  const auto a = geo::parse_address("192.0.2.1"), b = geo::parse_address("192.0.2.2");
  const auto t0 = Clock::now();
  std::optional<LimitTable::Hold> hold;
  for (int i = 0; i < 3; ++i) CHECK(table->enter(a, limit, t0, hold) == V::ok);
  CHECK(table->enter(a, limit, t0, hold) == V::over_rate);
  CHECK(table->enter(b, limit, t0, hold) == V::ok);  // another client is not affected
  CHECK(table->enter(a, limit, t0 + std::chrono::seconds(9), hold) == V::over_rate);
  CHECK(table->enter(a, limit, t0 + std::chrono::seconds(11), hold) == V::ok);
  CHECK(table->enter(a, limit, t0 + std::chrono::seconds(12), hold) == V::over_rate);
  CHECK_FALSE(hold);  // no concurrent limit: nothing held
}

TEST_CASE("concurrent connections are held until released, per /24 when aggregated") {
  auto table = std::make_shared<LimitTable>(100);
  conf::Limit limit;
  limit.concurrent = 2;
  limit.aggregate_v4 = 24;
  const auto now = Clock::now();
  std::optional<LimitTable::Hold> h1, h2, h3;
  CHECK(table->enter(geo::parse_address("198.51.100.1"), limit, now, h1) == V::ok);
  CHECK(table->enter(geo::parse_address("198.51.100.200"), limit, now, h2) == V::ok);
  CHECK(table->enter(geo::parse_address("198.51.100.9"), limit, now, h3) == V::over_concurrent);
  CHECK(table->enter(geo::parse_address("198.51.101.9"), limit, now, h3) == V::ok);  // next /24
  h1.reset();
  std::optional<LimitTable::Hold> h4;
  CHECK(table->enter(geo::parse_address("198.51.100.9"), limit, now, h4) == V::ok);
}

TEST_CASE("200,000 random sources against a table of 10,000 keep 10,000 entries") {
  auto table = std::make_shared<LimitTable>(10'000);
  const auto limit = rate_limit(30, 30);
  std::mt19937 rng(42);
  const auto now = Clock::now();
  std::optional<LimitTable::Hold> hold;
  for (int i = 0; i < 200'000; ++i) {
    table->enter(geo::Address::v4(static_cast<std::uint32_t>(rng())), limit, now, hold);
    REQUIRE(table->size() <= 10'000);
  }
  CHECK(table->size() == 10'000);
  // The most recent client is remembered: its bucket is one token lighter.
  const auto last = geo::parse_address("203.0.113.7");
  for (int i = 0; i < 30; ++i) CHECK(table->enter(last, limit, now, hold) == V::ok);
  CHECK(table->enter(last, limit, now, hold) == V::over_rate);
}

}  // namespace
}  // namespace geomx::policy

namespace geomx::policy {
namespace {

TEST_CASE("a full table does not forget a client with connections open") {
  auto table = std::make_shared<LimitTable>(16);
  conf::Limit limit;
  limit.concurrent = 1;
  const auto now = LimitTable::Clock::now();
  const auto holder = geo::parse_address("192.0.2.1");
  std::optional<LimitTable::Hold> held, other;
  REQUIRE(table->enter(holder, limit, now, held) == LimitTable::Verdict::ok);
  for (std::uint32_t i = 0; i < 1000; ++i) {  // a flood of other sources, each closing at once
    std::optional<LimitTable::Hold> h;
    table->enter(geo::Address::v4(0x0A000000 + i), limit, now, h);
  }
  CHECK(table->size() == 16);
  CHECK(table->enter(holder, limit, now, other) == LimitTable::Verdict::over_concurrent);
}

TEST_CASE("enter() with a Hold already in hand lets it go first") {
  auto table = std::make_shared<LimitTable>(16);
  conf::Limit limit;
  limit.concurrent = 1;
  const auto now = Clock::now();
  const auto a = geo::parse_address("192.0.2.1");
  std::optional<LimitTable::Hold> h;
  REQUIRE(table->enter(a, limit, now, h) == V::ok);
  CHECK(table->enter(a, limit, now, h) == V::ok);  // the first hold released: no deadlock, no over
  std::optional<LimitTable::Hold> other;
  CHECK(table->enter(a, limit, now, other) == V::over_concurrent);  // the second one holds
  h.reset();
  CHECK(table->enter(a, limit, now, other) == V::ok);
}

TEST_CASE("a full table shrinks back to its size as held connections close") {
  auto table = std::make_shared<LimitTable>(4);
  conf::Limit limit;
  limit.concurrent = 1;
  const auto now = Clock::now();
  std::vector<std::optional<LimitTable::Hold>> holds(8);
  for (std::uint32_t i = 0; i < 8; ++i)
    REQUIRE(table->enter(geo::Address::v4(0xC0000200 + i), limit, now, holds[i]) == V::ok);
  CHECK(table->size() == 8);  // every entry has a connection open: none forgotten
  holds.clear();
  std::optional<LimitTable::Hold> h;
  table->enter(geo::parse_address("198.51.100.1"), limit, now, h);
  CHECK(table->size() == 4);
}

TEST_CASE("a table nearly full of open connections still forgets only the idle, least recent") {
  // 5,000 clients hold a connection each in a table of 5,010; 50,000 other
  // sources come and go through the 10 entries left. One connection a
  // minute: a remembered client is over the rate, a forgotten one is new.
  auto table = std::make_shared<LimitTable>(5'010);
  auto limit = rate_limit(1, 1);
  limit.concurrent = 1;
  const auto now = Clock::now();
  const auto holder = [](std::uint32_t i) { return geo::Address::v4(0xC0000000 + i); };
  const auto source = [](std::uint32_t i) { return geo::Address::v4(0x0A000000 + i); };
  std::vector<std::optional<LimitTable::Hold>> holds(5'000);
  for (std::uint32_t i = 0; i < 5'000; ++i)
    REQUIRE(table->enter(holder(i), limit, now, holds[i]) == V::ok);
  for (std::uint32_t i = 0; i < 50'000; ++i) {
    std::optional<LimitTable::Hold> h;
    REQUIRE(table->enter(source(i), limit, now, h) == V::ok);
  }
  CHECK(table->size() == 5'010);
  std::optional<LimitTable::Hold> h;
  CHECK(table->enter(holder(0), limit, now, h) == V::over_rate);  // remembered
  CHECK(table->enter(holder(4'999), limit, now, h) == V::over_rate);
  CHECK(table->enter(source(49'999), limit, now, h) == V::over_rate);
  CHECK(table->enter(source(0), limit, now, h) == V::ok);  // forgotten long ago
  h.reset();
  // holder 0's connection closes: it counts as seen now, so the next 10 new
  // sources forget the 10 idle clients seen before it, not it.
  holds[0].reset();
  for (std::uint32_t i = 0; i < 10; ++i) {
    std::optional<LimitTable::Hold> n;
    REQUIRE(table->enter(geo::Address::v4(0x0B000000 + i), limit, now, n) == V::ok);
  }
  CHECK(table->size() == 5'010);
  CHECK(table->enter(holder(0), limit, now, h) == V::over_rate);
  CHECK(table->enter(source(0), limit, now, h) == V::ok);  // forgotten again
}

}  // namespace
}  // namespace geomx::policy
