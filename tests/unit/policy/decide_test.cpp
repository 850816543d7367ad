#include <doctest/doctest.h>

#include <map>
#include <random>
#include <set>

#include <fmt/format.h>

#include "policy/decide.hpp"
#include "support/temp_dir.hpp"

using namespace geomx;
using namespace geomx::policy;

namespace {

class TestStates final : public MemberStates {
 public:
  std::set<std::pair<std::size_t, std::size_t>> down;
  std::map<std::pair<std::size_t, std::size_t>, std::uint32_t> load;
  bool up(std::size_t p, std::size_t m) const override { return !down.contains({p, m}); }
  std::uint32_t active(std::size_t p, std::size_t m) const override {
    auto it = load.find({p, m});
    return it == load.end() ? 0 : it->second;
  }
};

std::shared_ptr<const Snapshot> snapshot(const test::TempDir& dir) {
  const auto ranges = dir.write("ranges",
                                "127.1.0.0,127.1.255.255,GB\n"
                                "127.2.0.0,127.2.255.255,CN\n"
                                "127.3.0.0,127.3.255.255,US\n"
                                "2001:db8:1::,2001:db8:1:ffff:ffff:ffff:ffff:ffff,GB\n"
                                "2001:db8:2::,2001:db8:2:ffff:ffff:ffff:ffff:ffff,CN\n");
  const std::string text = R"(
[geo]
databases = ["ranges"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[[listener]]
name = "submission"
address = "127.0.0.1:0"
[lists.english]
countries = ["GB", "US"]
cidrs = ["127.9.0.0/16"]
[lists.blocked]
cidrs = ["127.1.2.3", "2001:db8:1::bad"]
[pool.primary]
members = ["127.0.0.1:2501", "127.0.0.1:2502"]
[pool.quarantine]
members = ["127.0.0.1:2503", { address = "127.0.0.1:2504", backup = true }]
balance = "first"
[[rule]]
name = "blocked"
if = { list = "blocked" }
action = "reject"
[[rule]]
name = "slow"
if = { country = "CN", listener = "submission" }
action = "tarpit"
[[rule]]
name = "net"
if = { cidr = ["127.5.0.0/16", "2001:db8:5::/48"] }
action = "drop"
[[rule]]
name = "english"
if = { list = "english", not_list = "blocked" }
pool = "primary"
[[rule]]
name = "rest"
pool = "quarantine"
)";
  auto config = conf::parse_config(text, dir.path("geomx.toml"), {"mx.test"});
  auto data = conf::load_data(config);
  return build_snapshot(std::move(config), std::move(data));
}

conf::Pool pool_of(std::initializer_list<const char*> members, conf::Balance balance) {
  conf::Pool p;
  p.balance = balance;
  for (const char* m : members) p.members.push_back({conf::parse_endpoint(m), 1, false});
  return p;
}

std::size_t first_of(const conf::Pool& p, const char* client, std::uint64_t sequence = 0,
                     const MemberStates& states = AllUp{}) {
  return fallback_order(p, 0, geo::parse_address(client), states, sequence).front();
}

}  // namespace

TEST_CASE("every matcher and action, table-driven") {
  test::TempDir dir;
  const auto s = snapshot(dir);
  struct Case {
    const char* address;
    const char* listener;
    const char* rule;
    conf::Action action;
    const char* country;
  };
  const Case cases[] = {
      {"127.1.2.3", "mx", "blocked", conf::Action::reject, "GB"},  // list beats country
      {"2001:db8:1::bad", "mx", "blocked", conf::Action::reject, "GB"},
      {"127.2.0.1", "submission", "slow", conf::Action::tarpit, "CN"},  // country and listener
      {"127.2.0.1", "mx", "rest", conf::Action::route, "CN"},           // listener must match too
      {"2001:db8:2::1", "submission", "slow", conf::Action::tarpit, "CN"},
      {"127.5.6.7", "mx", "net", conf::Action::drop, "ZZ"},  // cidr
      {"2001:db8:5:1::1", "mx", "net", conf::Action::drop, "ZZ"},
      {"127.1.2.4", "mx", "english", conf::Action::route, "GB"},  // list by country
      {"127.3.0.1", "submission", "english", conf::Action::route, "US"},
      {"127.9.0.1", "mx", "english", conf::Action::route, "ZZ"},  // list by cidr
      {"2001:db8:1::1", "mx", "english", conf::Action::route, "GB"},
      {"127.4.0.1", "mx", "rest", conf::Action::route, "ZZ"},  // catch-all
      {"::1", "mx", "rest", conf::Action::route, "ZZ"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.address);
    CAPTURE(c.listener);
    const Client client{geo::parse_address(c.address), *s->listener_index(c.listener)};
    const Decision d = decide(client, *s, AllUp{}, 0);
    CHECK(s->config.rules[d.rule].name == c.rule);
    CHECK(d.action == c.action);
    CHECK(d.country.code() == c.country);
    CHECK(d.member.has_value() == (c.action == conf::Action::route));
  }
  const Decision blocked = decide({geo::parse_address("127.1.2.3"), 0}, *s, AllUp{}, 0);
  CHECK(blocked.lists == 0b11);  // english (GB) and blocked; the rule's cidr bit is hidden
  CHECK(s->config.rules[blocked.rule].reply == "554 5.7.1 mx.test access denied");
  CHECK(explain_match(blocked, *s) == "in list blocked");
}

TEST_CASE("routing: source split halves, failover, backups, no member left") {
  test::TempDir dir;
  const auto s = snapshot(dir);
  TestStates states;
  auto route = [&](const char* ip) { return decide({geo::parse_address(ip), 0}, *s, states, 0); };
  // Both primary members up: 127.x is below 128.0.0.0, so the first half.
  CHECK(route("127.1.0.1").member == 0u);
  CHECK(route("127.1.0.1").order == std::vector<std::size_t>{0, 1});
  states.down.insert({0, 0});
  CHECK(route("127.1.0.1").member == 1u);  // failover to the other half
  states.down.insert({0, 1});
  CHECK_FALSE(route("127.1.0.1").member.has_value());  // 421 4.3.2
  // Quarantine: first, with a backup used only when the primary member is down.
  CHECK(route("127.4.0.1").member == 0u);
  states.down.insert({1, 0});
  CHECK(route("127.4.0.1").member == 1u);
  states.down.insert({1, 1});
  CHECK_FALSE(route("127.4.0.1").member.has_value());
}

TEST_CASE("source-split: 127.255.255.255 vs 128.0.0.0 and ::/1 vs 8000::/1") {
  const auto p = pool_of({"127.0.0.1:1", "127.0.0.1:2"}, conf::Balance::source_split);
  CHECK(first_of(p, "0.0.0.0") == 0);
  CHECK(first_of(p, "127.255.255.255") == 0);
  CHECK(first_of(p, "128.0.0.0") == 1);
  CHECK(first_of(p, "255.255.255.255") == 1);
  CHECK(first_of(p, "::") == 0);
  CHECK(first_of(p, "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == 0);
  CHECK(first_of(p, "8000::") == 1);
  CHECK(first_of(p, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == 1);
  // The fallback of each half is the other member.
  CHECK(fallback_order(p, 0, geo::parse_address("200.0.0.1"), AllUp{}, 0) ==
        std::vector<std::size_t>{1, 0});
  // Three members: thirds; weights make slices proportional.
  const auto three =
      pool_of({"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, conf::Balance::source_split);
  CHECK(first_of(three, "85.85.85.85") == 0);  // 0x55555555 < 2^32/3
  CHECK(first_of(three, "85.85.85.86") == 1);
  CHECK(first_of(three, "170.170.170.171") == 2);
  auto weighted = pool_of({"127.0.0.1:1", "127.0.0.1:2"}, conf::Balance::source_split);
  weighted.members[0].weight = 3;
  CHECK(first_of(weighted, "191.255.255.255") == 0);
  CHECK(first_of(weighted, "192.0.0.0") == 1);
}

TEST_CASE("hash: sticky per /24, and a third member moves about a third of clients") {
  const auto two = pool_of({"10.0.0.1:25", "10.0.0.2:25"}, conf::Balance::hash);
  const auto three = pool_of({"10.0.0.1:25", "10.0.0.2:25", "10.0.0.3:25"}, conf::Balance::hash);
  std::mt19937_64 rng(24);
  // Every host of a /24 (and of a /64) lands where its network does, and
  // the networks spread over both families' members.
  int per_member[2][3] = {};
  for (int net = 0; net < 200; ++net) {
    const auto base4 = static_cast<std::uint32_t>(rng()) & ~0xffu;
    const auto base6 = geo::u128(rng()) << 64;
    const auto m4 = fallback_order(three, 0, geo::Address::v4(base4), AllUp{}, 0).front();
    const auto m6 = fallback_order(three, 0, geo::Address::v6_raw(base6), AllUp{}, 0).front();
    ++per_member[0][m4];
    ++per_member[1][m6];
    for (std::uint32_t host = 1; host < 256; host += 17) {
      REQUIRE(fallback_order(three, 0, geo::Address::v4(base4 | host), AllUp{}, 0).front() == m4);
      REQUIRE(fallback_order(three, 0, geo::Address::v6_raw(base6 | (geo::u128(rng()) >> 64)),
                             AllUp{}, 0)
                  .front() == m6);
    }
  }
  for (auto& family : per_member)
    for (int count : family) CHECK(count > 40);
  int moved = 0, to_new = 0, counts[3] = {};
  constexpr int n = 100000;
  for (int i = 0; i < n; ++i) {
    const auto a = geo::Address::v4(static_cast<std::uint32_t>(rng()) & ~0xffu);
    const auto before = fallback_order(two, 0, a, AllUp{}, 0).front();
    const auto after = fallback_order(three, 0, a, AllUp{}, 0).front();
    moved += before != after;
    to_new += after == 2;
    ++counts[after];
  }
  MESSAGE("hash: adding a third member moved " << moved << " of " << n << " /24s");
  CHECK(moved >= n * 25 / 100);
  CHECK(moved <= n * 42 / 100);
  CHECK(moved == to_new);  // only the new member's share moves
  for (int c : counts) CHECK(c > n / 4);
}

TEST_CASE("weights: hash shares and least-conn counting the new connection") {
  auto hash = pool_of({"10.0.0.1:25", "10.0.0.2:25"}, conf::Balance::hash);
  hash.members[1].weight = 3;
  std::mt19937_64 rng(5);
  int heavy = 0;
  for (int i = 0; i < 20000; ++i)
    heavy +=
        fallback_order(hash, 0, geo::Address::v4(static_cast<std::uint32_t>(rng())), AllUp{}, 0)
            .front() == 1;
  CHECK(heavy > 20000 * 70 / 100);  // about 75%
  CHECK(heavy < 20000 * 80 / 100);

  auto lc = pool_of({"127.0.0.1:1", "127.0.0.1:2"}, conf::Balance::least_conn);
  lc.members[1].weight = 4;
  TestStates states;
  CHECK(first_of(lc, "192.0.2.1", 0, states) == 1);  // both idle: the heavier one
  states.load[{0, 1}] = 3;                           // 4/4 vs 1/1: tie, rotates
  states.load[{0, 0}] = 1;
  CHECK(first_of(lc, "192.0.2.1", 0, states) == 1);  // (1+1)/1 = 2 > (3+1)/4 = 1
  states.load[{0, 1}] = 8;
  CHECK(first_of(lc, "192.0.2.1", 0, states) == 0);  // 2 < 9/4
}

TEST_CASE("round-robin, least-conn and first") {
  auto rr = pool_of({"127.0.0.1:1", "127.0.0.1:2"}, conf::Balance::round_robin);
  std::vector<std::size_t> seq;
  for (std::uint64_t i = 0; i < 4; ++i) seq.push_back(first_of(rr, "192.0.2.1", i));
  CHECK(seq == std::vector<std::size_t>{0, 1, 0, 1});
  rr.members[0].weight = 2;
  seq.clear();
  for (std::uint64_t i = 0; i < 6; ++i) seq.push_back(first_of(rr, "192.0.2.1", i));
  CHECK(seq == std::vector<std::size_t>{0, 0, 1, 0, 0, 1});

  const auto lc = pool_of({"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, conf::Balance::least_conn);
  TestStates states;
  states.load[{0, 0}] = 5;
  states.load[{0, 1}] = 2;
  states.load[{0, 2}] = 9;
  CHECK(fallback_order(lc, 0, geo::parse_address("192.0.2.1"), states, 0) ==
        std::vector<std::size_t>{1, 0, 2});
  TestStates idle;  // ties rotate with the sequence
  CHECK(first_of(lc, "192.0.2.1", 0, idle) == 0);
  CHECK(first_of(lc, "192.0.2.1", 1, idle) == 1);

  auto first = pool_of({"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, conf::Balance::first);
  first.members[0].backup = true;
  CHECK(fallback_order(first, 0, geo::parse_address("192.0.2.1"), AllUp{}, 7) ==
        std::vector<std::size_t>{1, 2, 0});
}

TEST_CASE("asn matchers: rules, lists and limit scopes read the AS from the same lookup") {
  test::TempDir dir;
  const auto ranges = dir.write("ranges",
                                "127.1.0.0,127.1.255.255,GB\n"
                                "127.2.0.0,127.2.255.255,CN\n");
  const std::string text = fmt::format(R"(
[geo]
databases = ["ranges"]
asn_databases = ["{}/test-asn.mmdb"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[lists.cn-net]
asns = ["AS64511"]
[pool.primary]
members = ["127.0.0.1:2501"]
[[limit]]
name = "gb-net"
if = {{ asn = 64496 }}
rate = "10/min"
[[rule]]
name = "by-as"
if = {{ asn = [64496, 4200000000] }}
action = "reject"
[[rule]]
name = "by-list"
if = {{ list = "cn-net" }}
pool = "primary"
[[rule]]
name = "rest"
action = "drop"
)",
                                       GEOMX_TESTDATA);
  auto config = conf::parse_config(text, dir.path("geomx.toml"), {"mx.test"});
  auto data = conf::load_data(config);
  const auto s = build_snapshot(std::move(config), std::move(data));
  const Decision gb = decide({geo::parse_address("127.1.0.9"), 0}, *s, AllUp{}, 0);
  CHECK(s->config.rules[gb.rule].name == "by-as");
  CHECK(gb.asn == 64496);
  CHECK(gb.country.code() == "GB");
  CHECK(gb.limits == std::vector<std::size_t>{0});
  CHECK(explain_match(gb, *s) == "AS64496 (Example GB Net)");
  const Decision cn = decide({geo::parse_address("127.2.3.4"), 0}, *s, AllUp{}, 0);
  CHECK(s->config.rules[cn.rule].name == "by-list");
  CHECK(cn.asn == 64511);
  CHECK(cn.limits.empty());
  const Decision other = decide({geo::parse_address("127.3.0.1"), 0}, *s, AllUp{}, 0);
  CHECK(s->config.rules[other.rule].name == "rest");
  CHECK(other.asn == 0);
}
