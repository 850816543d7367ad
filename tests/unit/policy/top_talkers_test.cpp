// Top talkers: sliding-window counts, ranking, the fixed size, and the
// refusal log's sampling.
#include <doctest/doctest.h>

#include "policy/top_talkers.hpp"

namespace geomx::policy {
namespace {

using Clock = TopTalkers::Clock;

TEST_CASE("ranked by connections in the window, with the total of all clients") {
  TopTalkers top(100, 0, 0);
  const auto t0 = Clock::time_point(std::chrono::hours(1000));  // on a minute boundary
  const auto heavy = geo::parse_address("192.0.2.1");
  for (int i = 0; i < 30; ++i) top.record(heavy, std::nullopt, false, t0);
  for (unsigned c = 0; c < 20; ++c) top.record(geo::Address::v4(0x0A000000 + c), {}, c < 5, t0);
  const auto r = top.top(std::chrono::minutes(1), 3, t0 + std::chrono::seconds(30));
  CHECK(r.total == 50);
  REQUIRE(r.rows.size() == 3);
  CHECK(r.rows[0].address == heavy);
  CHECK(r.rows[0].connections == 30);
  CHECK(r.rows[1].refused == 1);  // 10.0.0.0, refused once
  // Two minutes later the minute window is empty; the hour still has them.
  CHECK(top.top(std::chrono::minutes(1), 3, t0 + std::chrono::minutes(2)).total == 0);
  CHECK(top.top(std::chrono::minutes(60), 3, t0 + std::chrono::minutes(2)).total == 50);
  // After an hour and more, nothing.
  CHECK(top.top(std::chrono::minutes(60), 3, t0 + std::chrono::minutes(62)).rows.empty());
}

TEST_CASE("the oldest minute counts by the part of it still inside the window") {
  TopTalkers top(100, 0, 0);
  const auto t0 = Clock::time_point(std::chrono::hours(1000));
  const auto a = geo::parse_address("192.0.2.1");
  for (int i = 0; i < 10; ++i) top.record(a, std::nullopt, false, t0);
  // 15 s into the next minute: 45 s of the previous one are in the last minute.
  CHECK(top.top(std::chrono::minutes(1), 1, t0 + std::chrono::seconds(75)).total ==
        doctest::Approx(7.5));
}

TEST_CASE("a flood of sources keeps the table at its size") {
  TopTalkers top(1000, 0, 0);
  const auto t0 = Clock::now();
  for (std::uint32_t i = 0; i < 50'000; ++i)
    top.record(geo::Address::v4(i * 2654435761u), {}, true, t0);
  CHECK(top.size() == 1000);
  CHECK(top.top(std::chrono::minutes(1), 1, t0).total >= 50'000 * 0.99);  // totals are kept apart
}

TEST_CASE("refusals: the first N per client per minute are logged, then one count") {
  TopTalkers top(100, 3, 0);
  const auto t0 = Clock::time_point(std::chrono::hours(1000));
  const auto a = geo::parse_address("192.0.2.1");
  int logged = 0;
  for (int i = 0; i < 20; ++i) logged += top.record(a, std::nullopt, true, t0);
  CHECK(logged == 3);
  CHECK(top.record(a, std::nullopt, false, t0));  // a relayed session is always logged
  CHECK(top.take_suppressed(t0 + std::chrono::seconds(30)).empty());  // the minute is not over
  const auto s = top.take_suppressed(t0 + std::chrono::minutes(1));
  REQUIRE(s.size() == 1);
  CHECK(s[0].second == 17);
  CHECK(top.take_suppressed(t0 + std::chrono::minutes(2)).empty());  // said once
}

TEST_CASE("refusals from many clients: an overall cap per minute") {
  TopTalkers top(1000, 3, 100);
  const auto t0 = Clock::time_point(std::chrono::hours(1000));
  int logged = 0;
  for (std::uint32_t i = 0; i < 500; ++i) logged += top.record(geo::Address::v4(i), {}, true, t0);
  CHECK(logged == 100);
  CHECK(top.take_suppressed_all(t0 + std::chrono::minutes(1)) == 400);
}

}  // namespace
}  // namespace geomx::policy

namespace geomx::policy {
namespace {

TEST_CASE("in the first hour of the clock (a daemon started at boot) the window is sound") {
  TopTalkers top(100, 0, 0);
  const auto early = TopTalkers::Clock::time_point(std::chrono::seconds(90));
  top.record(geo::parse_address("192.0.2.1"), std::nullopt, false, early);
  CHECK(top.top(std::chrono::minutes(60), 5, early).total == 1);
  CHECK(top.top(std::chrono::minutes(1), 5, early).rows.size() == 1);
}

TEST_CASE("a flood that never pauses still gets its suppressed line each minute") {
  TopTalkers top(100, 2, 0);
  const auto t0 = TopTalkers::Clock::time_point(std::chrono::hours(1000));
  const auto a = geo::parse_address("192.0.2.1");
  for (int i = 0; i < 10; ++i) top.record(a, std::nullopt, true, t0);
  top.record(a, std::nullopt, true, t0 + std::chrono::seconds(61));  // the next minute began
  const auto s = top.take_suppressed(t0 + std::chrono::seconds(62));
  REQUIRE(s.size() == 1);
  CHECK(s[0].second == 8);
}

}  // namespace
}  // namespace geomx::policy

namespace geomx::policy {
namespace {

TEST_CASE("nodes' reports merge: a client's counts summed, the busiest of the sum first") {
  const auto a = geo::parse_address("192.0.2.1"), b = geo::parse_address("192.0.2.2"),
             c = geo::parse_address("2001:db8::1");
  const auto us = geo::Country::parse("US");
  TopTalkers::Report mx1{10, {{a, std::nullopt, 4, 1}, {b, us, 3, 0}}};
  TopTalkers::Report mx2{20, {{c, std::nullopt, 6, 6}, {a, us, 4, 2}, {b, std::nullopt, 1, 0}}};
  const auto m = TopTalkers::merge({mx1, mx2}, 2);
  CHECK(m.total == 30);
  REQUIRE(m.rows.size() == 2);  // the busiest 2 of the sum: a (8), c (6); b (4) left out
  CHECK(m.rows[0].address == a);
  CHECK(m.rows[0].connections == 8);
  CHECK(m.rows[0].refused == 3);
  CHECK(m.rows[0].country == us);  // from the report that knew it
  CHECK(m.rows[1].address == c);
  CHECK(TopTalkers::merge({}, 5).rows.empty());
}

}  // namespace
}  // namespace geomx::policy
