// The health board: records per (pool, member) kept while a snapshot uses
// them, fed by probes and by sessions' connect failures, and a change
// reported exactly once, at the time it was given.
#include <doctest/doctest.h>

#include <vector>

#include "policy/health_board.hpp"

namespace geomx::policy {
namespace {

using Clock = HealthBoard::Clock;

conf::Health health(std::uint32_t rise, std::uint32_t fall) {
  conf::Health h;
  h.rise = rise;
  h.fall = fall;
  return h;
}

ProbeResult failed(std::string detail) {
  return {ProbeStatus::bad_reply, std::move(detail), 0.25, std::nullopt, "", ""};
}

TEST_CASE("health board: DOWN after fall failures, the change said once with its error") {
  HealthBoard board;
  const auto t0 = Clock::time_point(std::chrono::seconds(1'800'000'000));
  const auto m = board.member("primary", conf::parse_endpoint("127.0.0.1:2525"), t0);
  const auto h = health(2, 3);
  CHECK(m->up.load());
  CHECK(m->detail().last_change == t0);
  CHECK_FALSE(board.probed(*m, h, failed("banner: closed"), t0 + std::chrono::seconds(1)));
  CHECK_FALSE(board.connect_failed(*m, h, "connect: Connection refused", t0));
  const auto t3 = t0 + std::chrono::seconds(3);
  const auto change = board.probed(*m, h, failed("EHLO: \"554 go away\""), t3);
  REQUIRE(change);
  CHECK_FALSE(change->up);
  CHECK(change->after == 3);
  CHECK(change->source == "probe");
  CHECK(change->error == "EHLO: \"554 go away\"");
  CHECK_FALSE(m->up.load());
  CHECK(m->detail().last_change == t3);
  CHECK(m->detail().last_error == "EHLO: \"554 go away\"");
  CHECK(m->detail().last_probe_seconds == doctest::Approx(0.25));
  CHECK(m->checks.load() == 2);
  CHECK(m->check_failures.load() == 2);
  CHECK(m->connect_failures.load() == 1);
  CHECK_FALSE(board.probed(*m, h, failed("still down"), t3));  // no second change

  ProbeResult ok{ProbeStatus::ok, "", 0.01, 30, "/CN=mx.test", "250-mx.test\r\n250 SIZE 1000\r\n"};
  CHECK(m->capabilities().empty());
  CHECK_FALSE(board.probed(*m, h, ok, t3));
  // A screen pool offers what the last SMTP probe saw.
  CHECK(m->capabilities() == "250-mx.test\r\n250 SIZE 1000\r\n");
  const auto up = board.probed(*m, h, ok, t3 + std::chrono::seconds(2));
  REQUIRE(up);
  CHECK(up->up);
  CHECK(up->after == 2);
  CHECK(up->error.empty());
  CHECK(m->up.load());
  CHECK(m->detail().last_error.empty());
  CHECK(m->detail().cert_days == 30);
  board.probed(*m, h, failed("down again"), t3 + std::chrono::seconds(3));
  CHECK(m->capabilities() == "250-mx.test\r\n250 SIZE 1000\r\n");  // a failure keeps it
  CHECK(m->detail().cert_subject == "/CN=mx.test");
}

TEST_CASE("health board: a record lives while something holds it, then starts afresh") {
  HealthBoard board;
  const auto address = conf::parse_endpoint("[::1]:25");
  const auto t = Clock::now();
  auto m = board.member("primary", address, t);
  CHECK(board.member("primary", address, t) == m);     // the same record
  CHECK(board.member("quarantine", address, t) != m);  // per pool
  m->up = false;
  CHECK(board.all().size() == 1);  // the quarantine one is gone already
  m.reset();
  CHECK(board.all().empty());
  CHECK(board.member("primary", address, t)->up.load());  // forgotten: UP again
}

TEST_CASE("health board: this host's own errors never count against a member") {
  HealthBoard board;
  const auto t = Clock::now();
  const auto m = board.member("primary", conf::parse_endpoint("127.0.0.1:2525"), t);
  const ProbeResult emfile{
      ProbeStatus::local_error, "connect: Too many open files", 0.0, std::nullopt, "", ""};
  for (int i = 0; i < 10; ++i) CHECK_FALSE(board.probed(*m, health(2, 3), emfile, t));
  CHECK(m->up.load());
  CHECK(m->local_errors.load() == 10);
  CHECK(m->checks.load() == 0);
  CHECK(m->check_failures.load() == 0);
  CHECK(m->detail().last_error.empty());
  // ...and they do not break a streak of real failures either.
  CHECK_FALSE(board.probed(*m, health(2, 3), failed("banner: closed"), t));
  CHECK_FALSE(board.probed(*m, health(2, 3), emfile, t));
  CHECK_FALSE(board.probed(*m, health(2, 3), failed("banner: closed"), t));
  CHECK(board.probed(*m, health(2, 3), failed("banner: closed"), t));
}

TEST_CASE("probe status words") {
  CHECK(to_string(ProbeStatus::ok) == "ok");
  CHECK(to_string(ProbeStatus::timeout) == "timeout");
  CHECK(to_string(ProbeStatus::connect_failed) == "connect_failed");
  CHECK(to_string(ProbeStatus::tls_failed) == "tls_failed");
  CHECK(to_string(ProbeStatus::local_error) == "local_error");
}

TEST_CASE("member slots: at most max_connections at once, each released once") {
  auto m = std::make_shared<MemberHealth>("p", conf::parse_endpoint("127.0.0.1:25"), Clock::now());
  std::vector<MemberSlot> held;
  for (int i = 0; i < 3; ++i) {
    auto slot = MemberSlot::take(m, 3);
    REQUIRE(slot);
    held.push_back(std::move(*slot));
  }
  CHECK(m->active == 3);
  CHECK_FALSE(MemberSlot::take(m, 3));  // full
  CHECK(m->active == 3);
  held.erase(held.begin());  // one released
  CHECK(m->active == 2);
  auto again = MemberSlot::take(m, 3);
  REQUIRE(again);
  MemberSlot moved = std::move(*again);
  again.reset();  // the moved-from one releases nothing
  CHECK(m->active == 3);
  moved = {};
  CHECK(m->active == 2);
  auto unlimited = MemberSlot::take(m, 0);  // 0: no limit
  CHECK(unlimited);
  CHECK(m->active == 3);
  held.clear();
  unlimited.reset();
  CHECK(m->active == 0);
}

// A waiter that counts its wakes (the real one posts to its session's thread).
struct CountingWaiter final : SlotWaiter {
  int wakes = 0;

 private:
  void wake() override { ++wakes; }
};

TEST_CASE("member queue: a release wakes the first waiter not woken yet, once until it rearms") {
  auto m = std::make_shared<MemberHealth>("p", conf::parse_endpoint("127.0.0.1:25"), Clock::now());
  auto first = std::make_shared<CountingWaiter>(), second = std::make_shared<CountingWaiter>();
  std::vector<MemberSlot> held;
  for (int i = 0; i < 3; ++i) held.push_back(std::move(*MemberSlot::take(m, 2 + i)));
  m->add_waiter(first);
  m->add_waiter(second);
  held.pop_back();  // a release: the first comes first
  CHECK(first->wakes == 1);
  CHECK(second->wakes == 0);
  held.pop_back();  // the first has not tried yet: the next one is woken
  CHECK(first->wakes == 1);
  CHECK(second->wakes == 1);
  CHECK_FALSE(first->signal());  // signalled already: not woken twice
  first->rearm();                // it tried, found the slot gone, and waits again
  second->rearm();
  held.pop_back();
  CHECK(first->wakes == 2);  // still first in line
  CHECK(second->wakes == 1);
  m->remove_waiter(first.get());
  m->remove_waiter(second.get());
  CHECK(MemberSlot::take(m, 1));  // with nobody waiting a release wakes nobody
  CHECK(first->wakes == 2);
  CHECK(second->wakes == 1);
}

}  // namespace
}  // namespace geomx::policy
