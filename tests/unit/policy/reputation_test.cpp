#include <doctest/doctest.h>

#include "conf/loader.hpp"
#include "policy/decide.hpp"
#include "policy/reputation.hpp"
#include "support/temp_dir.hpp"

using namespace geomx;
using namespace geomx::policy;

namespace {

std::uint32_t v4(const char* text) {
  return geo::parse_address(text).v4_bits();
}

std::string config_error(const std::string& text) {
  try {
    conf::parse_config(text, "geomx.toml", {"mx.test"});
  } catch (const conf::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("postscreen_dnsbl_sites syntax: domain[=filter][*weight]") {
  auto s = conf::parse_dnsbl_site("zen.spamhaus.org=127.0.0.[2..11]*3");
  CHECK(s.domain == "zen.spamhaus.org");
  CHECK(s.weight == 3);
  CHECK(s.lists(v4("127.0.0.2")));
  CHECK(s.lists(v4("127.0.0.11")));
  CHECK_FALSE(s.lists(v4("127.0.0.1")));
  CHECK_FALSE(s.lists(v4("127.0.0.12")));
  CHECK_FALSE(s.lists(v4("127.0.1.2")));

  s = conf::parse_dnsbl_site("bl.spamcop.net*2");
  CHECK(s.domain == "bl.spamcop.net");
  CHECK(s.weight == 2);
  CHECK(s.lists(v4("127.0.0.2")));  // no filter: any reply

  s = conf::parse_dnsbl_site("list.dnswl.org=127.0.[0..255].[1..3]*-5");
  CHECK(s.weight == -5);
  CHECK(s.lists(v4("127.0.10.3")));
  CHECK_FALSE(s.lists(v4("127.0.10.0")));

  s = conf::parse_dnsbl_site("b.test=127.0.0.[2;4;6..7]");
  CHECK(s.weight == 1);
  CHECK(s.lists(v4("127.0.0.4")));
  CHECK(s.lists(v4("127.0.0.7")));
  CHECK_FALSE(s.lists(v4("127.0.0.5")));

  for (const char* bad : {"", "=127.0.0.2", "a..b", "x.test*", "x.test*3x", "x.test=127.0.0",
                          "x.test=127.0.0.256", "x.test=127.0.0.[5..2]", "x.test=127.0.0.[2..]",
                          "x.test=1.2.3.4.5", "sp ace.test", "x.test*99999"})
    CHECK_THROWS_AS(conf::parse_dnsbl_site(bad), std::invalid_argument);
}

TEST_CASE("query names: reversed octets, reversed nibbles") {
  CHECK(dnsbl_name(geo::parse_address("192.0.2.99"), "zen.test") == "99.2.0.192.zen.test");
  CHECK(reverse_name(geo::parse_address("192.0.2.99")) == "99.2.0.192.in-addr.arpa");
  CHECK(dnsbl_name(geo::parse_address("2001:db8::1"), "x.test") ==
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.x.test");
  CHECK(reverse_name(geo::parse_address("::ffff:10.0.0.1")) == "1.0.0.10.in-addr.arpa");
}

TEST_CASE("a refusal of the resolver is never a listing") {
  const auto any = conf::parse_dnsbl_site("bl.test*2");
  CHECK(judge(any, {v4("127.0.0.2")}) == SiteResult::listed);
  CHECK(judge(any, {v4("127.255.255.254")}) == SiteResult::refused);
  CHECK(judge(any, {v4("127.255.255.252")}) == SiteResult::refused);
  CHECK(judge(any, {v4("127.0.0.255")}) == SiteResult::refused);
  CHECK(judge(any, {v4("127.0.0.2"), v4("127.255.255.254")}) == SiteResult::refused);
  CHECK(judge(any, {}) == SiteResult::not_listed);
  const auto zen = conf::parse_dnsbl_site("zen.test=127.0.0.[2..11]*3");
  CHECK(judge(zen, {v4("127.0.0.12")}) == SiteResult::not_listed);
  CHECK(judge(zen, {v4("127.0.0.12"), v4("127.0.0.4")}) == SiteResult::listed);
}

TEST_CASE("a DNS matcher waits only when reached, and reads what it needs") {
  test::TempDir dir;
  dir.write("ranges", "127.1.0.0,127.1.255.255,GB\n127.2.0.0,127.2.255.255,CN\n");
  auto config = conf::parse_config(R"(
[geo]
databases = ["ranges"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[dnsbl]
sites = ["zen.test=127.0.0.[2..11]*3", "wl.test*-5"]
[pool.main]
members = ["127.0.0.1:2501"]
[pool.quarantine]
members = ["127.0.0.1:2502"]
[[rule]]
name = "cn-first"
if = { country = "AQ" }
action = "drop"
[[rule]]
name = "dnswl"
if = { dnsbl_score_max = -5 }
pool = "main"
[[rule]]
name = "listed"
if = { dnsbl_score_min = 3 }
action = "reject"
[[rule]]
name = "ptr-cn"
if = { country = "CN", fcrdns = true }
pool = "main"
[[rule]]
name = "english"
if = { country = "GB" }
pool = "main"
[[rule]]
name = "rest"
pool = "quarantine"
)",
                                   dir.path("geomx.toml"), {"mx.test"});
  auto data = conf::load_data(config);
  const auto s = build_snapshot(std::move(config), std::move(data));
  CHECK(s->lookups == (needs_dnsbl | needs_fcrdns));
  const Client gb{geo::parse_address("127.1.0.1"), 0}, cn{geo::parse_address("127.2.0.1"), 0};
  auto d = decide(gb, *s, AllUp{}, 0);
  CHECK(d.waits == needs_dnsbl);
  CHECK(s->config.rules[d.rule].name == "dnswl");
  Reputation r;
  r.dnsbl_known = true;
  r.score = -5;
  d = decide(cn, *s, AllUp{}, 0, &r);
  CHECK(d.waits == 0);
  CHECK(s->config.rules[d.rule].name == "dnswl");
  r.score = 3;
  d = decide(cn, *s, AllUp{}, 0, &r);
  CHECK(s->config.rules[d.rule].name == "listed");
  CHECK(d.action == conf::Action::reject);
  r.score = 0;
  d = decide(cn, *s, AllUp{}, 0, &r);  // reaches ptr-cn: the PTR check is not in
  CHECK(d.waits == needs_fcrdns);
  CHECK(s->config.rules[d.rule].name == "ptr-cn");
  d = decide(gb, *s, AllUp{}, 0, &r);  // ptr-cn is not reached by country: no wait
  CHECK(d.waits == 0);
  CHECK(s->config.rules[d.rule].name == "english");
  r.fcrdns_known = true;
  d = decide(cn, *s, AllUp{}, 0, &r);
  CHECK(s->config.rules[d.rule].name == "rest");
  r.fcrdns = true;
  d = decide(cn, *s, AllUp{}, 0, &r);
  CHECK(s->config.rules[d.rule].name == "ptr-cn");
  CHECK(explain_match(d, *s) == "country CN; reverse DNS confirmed");
}

TEST_CASE("DNS config errors name the key") {
  const std::string base = R"([[listener]]
name = "mx"
address = "127.0.0.1:0"
[pool.p]
members = ["127.0.0.1:2501"]
)";
  CHECK(config_error(base + "[[rule]]\nname = \"r\"\nif = { dnsbl_score_min = 3 }\npool = \"p\"\n"
                            "[[rule]]\nname = \"all\"\npool = \"p\"\n")
            .find("without [dnsbl] sites") != std::string::npos);
  CHECK(config_error(base + "[dnsbl]\nsites = [\"a.test\", \"a.test*2\"]\n[[rule]]\nname = "
                            "\"all\"\npool = \"p\"\n")
            .empty());  // postscreen's repeated zones, each with its own filter and weight
  CHECK(config_error(base + "[dnsbl]\nsites = [\"a.test=127.0.0.[9..2]\"]\n[[rule]]\nname = "
                            "\"all\"\npool = \"p\"\n")
            .find("dnsbl.sites[0]") != std::string::npos);
  CHECK(config_error(base + "[dns]\nmin_ttl = \"2h\"\nmax_ttl = \"1h\"\n[[rule]]\nname = "
                            "\"all\"\npool = \"p\"\n")
            .find("less than min_ttl") != std::string::npos);
  CHECK(config_error(base + "[dnsbl]\nsites = [\"a.test\"]\n[[limit]]\nname = \"l\"\nrate = "
                            "\"3/min\"\nif = { dnsbl_score_min = 1 }\n[[rule]]\nname = "
                            "\"all\"\npool = \"p\"\n")
            .find("before DNS answers") != std::string::npos);
  CHECK(config_error(base + "[dns]\nservers = [\"127.0.0.1:5353\", \"::1\"]\n[[rule]]\nname = "
                            "\"all\"\npool = \"p\"\n") == "");
}
