#include <doctest/doctest.h>

#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "conf/loader.hpp"

using namespace geomx::conf;
using namespace std::chrono_literals;

namespace {

const std::string source_dir = GEOMX_SOURCE_DIR;
const Defaults defaults{"mx.test"};

// Every diagnostic of `text`, as the CLI prints them; empty if it loads.
std::vector<std::string> errors_of(const std::string& text) {
  try {
    parse_config(text, "t.toml", defaults);
  } catch (const ConfigError& e) {
    std::vector<std::string> out;
    for (const auto& d : e.diagnostics()) out.push_back(d.to_string());
    return out;
  }
  return {};
}

const std::string minimal = R"(
[[listener]]
name = "mx"
address = "127.0.0.1:2525"
[pool.p]
members = ["127.0.0.1:25"]
[[rule]]
name = "all"
pool = "p"
)";

}  // namespace

TEST_CASE("a file with 19 mistakes reports every one at its line and column") {
  const std::string path = source_dir + "/tests/data/bad.toml";
  std::ifstream in(path);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  std::vector<std::string> got;
  try {
    parse_config(text, "bad.toml", defaults);
  } catch (const ConfigError& e) {
    for (const auto& d : e.diagnostics()) got.push_back(d.to_string());
  }
  const std::vector<std::string> want{
      "bad.toml:2:11: server.threads: -1 is out of range (0 to 256)",
      "bad.toml:3:26: server.max_connections_per_ip: expected an integer, found a string",
      "bad.toml:4:1: server.colour: unknown key",
      "bad.toml:8:11: listener[0].address: \"0.0.0.0:99999\": port must be 0-65535",
      "bad.toml:9:18: listener[0].proxy_protocol: a listener that expects PROXY headers needs "
      "trusted_proxies (who may send them)",
      "bad.toml:12:8: listener[1].name: duplicate name \"mx\"",
      "bad.toml:14:20: listener[1].trusted_proxies[0]: 10.0.0.1/8 has host bits set; the network "
      "is 10.0.0.0/8",
      "bad.toml:17:20: lists.english.countries[1]: \"XX\" is not an ISO 3166-1 alpha-2 country "
      "code",
      "bad.toml:17:26: lists.english.countries[2]: \"gb\" is not an ISO 3166-1 alpha-2 country "
      "code",
      "bad.toml:20:28: pool.primary.members[1]: \"mx2:25\": \"mx2\" is not an IP address (geomx "
      "does not resolve host names)",
      "bad.toml:20:38: pool.primary.members[2]: 10.0.0.11:25 is listed twice",
      "bad.toml:21:11: pool.primary.balance: \"random\" is not one of \"source-split\", \"hash\", "
      "\"round-robin\", \"least-conn\", \"first\"",
      "bad.toml:22:19: pool.primary.connect_timeout: \"5 seconds\" is not a duration: a whole "
      "number "
      "with a unit, ms, s, m, h or d (e.g. \"20s\")",
      "bad.toml:23:16: pool.primary.greet_banner: must be one \"220-\" continuation line, e.g. "
      "\"220-mx.example.net ESMTP\"",
      "bad.toml:26:11: pool.empty.members: a pool needs at least one member",
      "bad.toml:30:37: rule[0].if.not_list: no list named \"nope\"",
      "bad.toml:31:8: rule[0].pool: no pool named \"primray\"",
      "bad.toml:38:1: rule[2]: unreachable: it comes after the catch-all rule \"everyone\"",
      "bad.toml:41:9: rule[2].reply: must be one final SMTP reply line with a 4xx or 5xx code, "
      "e.g. \"554 5.7.1 access denied\"",
  };
  CHECK(got == want);
}

TEST_CASE("more mistakes, one at a time") {
  CHECK(errors_of("x = 1\n" + minimal) == std::vector<std::string>{"t.toml:1:1: x: unknown key"});
  CHECK(errors_of("[server\n") ==
        std::vector<std::string>{"t.toml:1:8: toml: Error while parsing table header: expected "
                                 "']', saw '\\n'"});
  CHECK(errors_of("") ==
        std::vector<std::string>{"t.toml:1:1: listener: at least one [[listener]] is required",
                                 "t.toml:1:1: rule: at least one [[rule]] is required"});
  CHECK(
      errors_of("[listener]\nname='a'\n" + minimal.substr(minimal.find("[pool"))) ==
      std::vector<std::string>{"t.toml:1:1: listener: expected an array of tables ([[listener]])"});
  // The last rule must be a catch-all.
  CHECK(errors_of(minimal + "if = { country = \"US\" }\n") ==
        std::vector<std::string>{"t.toml:7:1: rule[0]: the last rule must have no `if` (a "
                                 "catch-all), so that no client falls through"});
  CHECK(errors_of(minimal + "if = {}\n") ==
        std::vector<std::string>{
            "t.toml:7:1: rule[0]: the last rule must have no `if` (a catch-all), so that no "
            "client falls through",
            "t.toml:10:6: rule[0].if: empty; leave `if` out for a catch-all rule"});
  CHECK(errors_of(minimal + "action = \"reject\"\n") ==
        std::vector<std::string>{
            "t.toml:9:8: rule[0].pool: only applies to action \"route\", not \"reject\""});
  CHECK(errors_of("[admin]\ntls_cert = \"c.pem\"\n" + minimal) ==
        std::vector<std::string>{
            "t.toml:2:12: admin.tls_cert: tls_cert and tls_key go together (HTTPS needs both)"});
  CHECK(errors_of(minimal + "reply = \"554 no\"\n") ==
        std::vector<std::string>{
            "t.toml:10:9: rule[0].reply: only applies to actions \"reject\" and \"tarpit\""});
  CHECK(errors_of(minimal + "[[rule]]\nname = \"all\"\naction = \"drop\"\n") ==
        std::vector<std::string>{
            "t.toml:10:1: rule[1]: unreachable: it comes after the catch-all rule \"all\"",
            "t.toml:11:8: rule[1].name: duplicate name \"all\""});
  CHECK(errors_of(minimal + "[pool.q]\nmembers = [{ address = \"127.0.0.1:26\", backup = true }]\n"
                            "greet_banner = \"220-x ESMTP\"\n[pool.q.health]\nrise = 0\n") ==
        std::vector<std::string>{
            "t.toml:11:11: pool.q.members: every member is a backup; at least one must not be",
            "t.toml:12:16: pool.q.greet_banner: a teaser banner needs greet_delay",
            "t.toml:14:8: pool.q.health.rise: 0 is out of range (1 to 100)"});
  CHECK(errors_of(minimal + "[[listener]]\nname = \"b\"\naddress = \"127.0.0.1:2525\"\n"
                            "trusted_proxies = \"127.0.0.1\"\n") ==
        std::vector<std::string>{
            "t.toml:12:11: listener[1].address: 127.0.0.1:2525 is already the address of listener "
            "\"mx\"",
            "t.toml:13:19: listener[1].trusted_proxies: only applies with proxy_protocol \"v1\", "
            "\"v2\" or \"any\""});
  CHECK(errors_of(minimal + "[pool.q]\nmembers = [{ address = \"127.0.0.1:0\", wieght = 2 }]\n") ==
        std::vector<std::string>{
            "t.toml:11:24: pool.q.members[0].address: port 0 is not a port to connect to",
            "t.toml:11:39: pool.q.members[0].wieght: unknown key"});
}

TEST_CASE("empty arrays, continuation replies, bad names: errors, not silent catch-alls") {
  // `list = []` would otherwise make a rule that matches every client.
  CHECK(errors_of(minimal.substr(0, minimal.find("[[rule]]")) +
                  "[[rule]]\nname = \"r\"\nif = { list = [] }\naction = \"reject\"\n"
                  "[[rule]]\nname = \"all\"\npool = \"p\"\n") ==
        std::vector<std::string>{"t.toml:9:15: rule[0].if.list: empty; leave the key out instead"});
  CHECK(errors_of(minimal + "[lists.l]\ncountries = []\n") ==
        std::vector<std::string>{
            "t.toml:11:13: lists.l.countries: empty; leave the key out instead"});
  CHECK(errors_of("[geo]\ndatabases = []\n" + minimal) ==
        std::vector<std::string>{"t.toml:2:13: geo.databases: empty; leave the key out instead"});
  CHECK(errors_of(minimal + "action = \"reject\"\nreply = \"554-denied\"\n") ==
        std::vector<std::string>{
            "t.toml:9:8: rule[0].pool: only applies to action \"route\", not \"reject\"",
            "t.toml:11:9: rule[0].reply: must be one final SMTP reply line with a 4xx or 5xx code, "
            "e.g. \"554 5.7.1 access denied\""});
  CHECK(errors_of("[server]\nhostname = \"mx\\r\\nRSET\"\n" + minimal +
                  "[pool.p.health]\nehlo = \"\"\n") ==
        std::vector<std::string>{
            "t.toml:2:12: server.hostname: must be a printable name without spaces",
            "t.toml:13:8: pool.p.health.ehlo: must be a printable name without spaces"});
  // One mistake, one error: no follow-on complaints that assume a default.
  CHECK(errors_of(minimal + "action = \"rejet\"\n") ==
        std::vector<std::string>{"t.toml:10:10: rule[0].action: \"rejet\" is not one of \"route\", "
                                 "\"reject\", \"drop\", \"tarpit\", \"pass\""});
  CHECK(errors_of(minimal + "[pool.q]\nmembers = [\"127.0.0.1:26\"]\ngreet_delay = \"20 s\"\n"
                            "greet_banner = \"220-x\"\n") ==
        std::vector<std::string>{"t.toml:12:15: pool.q.greet_delay: \"20 s\" is not a duration: a "
                                 "whole number with a unit, ms, s, m, h or d (e.g. \"20s\")"});
  CHECK(errors_of(minimal + "if = { country = \"US\", colour = \"red\", listener = \"smtp\" }\n") ==
        std::vector<std::string>{
            "t.toml:7:1: rule[0]: the last rule must have no `if` (a catch-all), so that no "
            "client falls through",
            "t.toml:10:24: rule[0].if.colour: unknown key",
            "t.toml:10:51: rule[0].if.listener: no listener named \"smtp\""});
}

TEST_CASE("at most 64 lists, counting rules with cidr") {
  std::string text = minimal.substr(0, minimal.find("[[rule]]"));
  for (int i = 0; i < 63; ++i)
    text += fmt::format("[lists.l{}]\ncidrs = [\"10.0.{}.0/24\"]\n", i, i);
  text += "[[rule]]\nname = \"a\"\nif = { cidr = \"10.1.0.0/16\" }\naction = \"drop\"\n";
  text += "[[rule]]\nname = \"b\"\nif = { cidr = \"10.2.0.0/16\" }\naction = \"drop\"\n";
  text += "[[rule]]\nname = \"all\"\npool = \"p\"\n";
  const auto errors = errors_of(text);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] ==
        "t.toml:139:15: rule[1].if.cidr: more than 64 lists, counting one per rule with cidr");
}

TEST_CASE("defaults follow the anchors (postscreen, Postfix, haproxy)") {
  const Config c = parse_config(minimal, "t.toml", defaults);
  CHECK(c.server.hostname == "mx.test");
  CHECK(c.server.process.threads == 0);
  CHECK(c.server.max_connections_per_ip == 50);
  CHECK(c.server.process.log_format == LogFormat::logfmt);
  REQUIRE(c.listeners.size() == 1);
  CHECK(c.listeners[0].proxy_protocol == ProxyProtocol::none);
  CHECK(c.listeners[0].proxy_timeout == 5s);
  REQUIRE(c.pools.size() == 1);
  const Pool& p = c.pools[0];
  CHECK(p.balance == Balance::source_split);
  CHECK(p.connect_timeout == 5s);
  CHECK(p.idle_timeout == 300s);
  CHECK(p.greet_delay == 0s);
  CHECK(p.pregreet == Pregreet::drop);
  CHECK(p.health.interval == 2s);
  CHECK(p.health.rise == 2);
  CHECK(p.health.fall == 3);
  CHECK(p.health.probe == Probe::smtp);
  CHECK(p.health.ehlo == "mx.test");
  CHECK(c.admin.listen.to_string() == "127.0.0.1:9025");
  REQUIRE(c.rules.size() == 1);
  CHECK(c.rules[0].action == Action::route);
}

TEST_CASE("reject and tarpit get default replies naming the host") {
  const Config c = parse_config(
      R"([[listener]]
name = "mx"
address = "[::1]:0"
[[rule]]
name = "slow"
if = { country = ["CN", "RU"] }
action = "tarpit"
[[rule]]
name = "no"
action = "reject"
)",
      "t.toml", defaults);
  CHECK(c.rules[0].reply == "421 4.7.0 mx.test try again later");
  CHECK(c.rules[1].reply == "554 5.7.1 mx.test access denied");
  CHECK(c.rules[0].match.countries.size() == 2);
  CHECK(c.listeners[0].address.to_string() == "[::1]:0");
}

TEST_CASE("the example config conf/geomx.toml loads as documented") {
  const Config c = load_config(source_dir + "/conf/geomx.toml", defaults);
  REQUIRE(c.listeners.size() == 2);
  CHECK(c.listeners[1].address.to_string() == "[::]:25");
  REQUIRE(c.pools.size() == 2);
  CHECK(c.pools[0].name == "primary");  // file order, not alphabetical
  CHECK(c.pools[0].proxy_protocol == ProxyProtocol::v2);
  CHECK(c.pools[1].greet_delay == 20s);
  CHECK(c.pools[1].greet_banner == "220-mx.example.net ESMTP");
  REQUIRE(c.rules.size() == 3);
  CHECK(c.rules[0].name == "blocked");
  CHECK(c.rules[1].match.lists == std::vector<std::string>{"english"});
  CHECK(c.rules[2].match.empty());
  CHECK(c.find_list("english")->countries.size() == 6);
  CHECK(c.pools[0].members[0].max_connections == 90);
  CHECK(c.pools[0].queue_timeout == 30s);
  CHECK(c.pools[1].members[0].max_connections == 0);
  CHECK(c.server.per_ip_prefix_v6 == 64);
  CHECK(c.admin.token_file == "/var/lib/geomx/admin.token");
}

TEST_CASE("issue 15's settings: defaults, values and their errors") {
  const Config d = parse_config(minimal, "/etc/geomx/t.toml", defaults);
  CHECK(d.server.per_ip_prefix_v4 == 32);
  CHECK(d.server.per_ip_prefix_v6 == 64);
  CHECK(d.server.tarpit_max == 1000);
  CHECK(d.pools[0].members[0].max_connections == 0);
  CHECK(d.pools[0].max_queue == 1000);
  CHECK(d.admin.token_file == "/var/lib/geomx/admin.token");  // STATE_DIR/admin.token
  const Config c = parse_config(
      "[server]\nstate_dir = \"/srv/g\"\nper_ip_prefix_v6 = 56\ntarpit_max = 5\n"
      "[admin]\ntoken_file = \"tok\"\nhosts = [\"mx.example.net\"]\nsocket = \"run/a.sock\"\n" +
          minimal +
          "[pool.q]\nmembers = [\"127.0.0.1:26\", { address = \"127.0.0.1:27\", max_connections = "
          "7 "
          "}]\nmember_max_connections = 3\nqueue_timeout = \"5s\"\nmax_queue = 9\n",
      "/etc/geomx/t.toml", defaults);
  CHECK(c.server.per_ip_prefix_v6 == 56);
  CHECK(c.server.tarpit_max == 5);
  CHECK(c.admin.token_file == "/etc/geomx/tok");  // from the config's folder
  CHECK(c.admin.hosts == std::vector<std::string>{"mx.example.net"});
  CHECK(c.admin.socket == "/etc/geomx/run/a.sock");  // from the config's folder too
  CHECK(d.admin.socket.empty());                     // none unless asked for
  const auto& q = *c.find_pool("q");
  CHECK(q.members[0].max_connections == 3);  // the pool's
  CHECK(q.members[1].max_connections == 7);  // its own
  CHECK(q.queue_timeout == 5s);
  CHECK(q.max_queue == 9);
  CHECK(errors_of("[server]\nper_ip_prefix_v6 = 8\n" + minimal) ==
        std::vector<std::string>{
            "t.toml:2:20: server.per_ip_prefix_v6: 8 is out of range (16 to 128)"});
  CHECK(errors_of("[admin]\nhosts = [\"a b\"]\n" + minimal).size() == 1);
  CHECK(errors_of("[admin]\ntoken_file = \"\"\n" + minimal).size() == 1);
  CHECK(errors_of("[admin]\nsocket = \"\"\n" + minimal).size() == 1);
  CHECK(errors_of("[admin]\nsocket = \"/" + std::string(107, 's') + "\"\n" + minimal) ==
        std::vector<std::string>{
            "t.toml:2:10: admin.socket: 108 bytes: a unix socket path is at most 107"});
}

TEST_CASE("durations and endpoints") {
  CHECK(parse_duration("500ms") == 500ms);
  CHECK(parse_duration("20s") == 20s);
  CHECK(parse_duration("35m") == 35min);
  CHECK(parse_duration("1h") == 1h);
  CHECK(parse_duration("7d") == 168h);
  for (const char* bad : {"20", "s", "-1s", "1.5s", "20 s", "20sec", "", "1y"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_duration(bad), std::invalid_argument);
  }
  CHECK(format_duration(35min) == "35m");
  CHECK(format_duration(1500ms) == "1500ms");
  CHECK(parse_endpoint("127.0.0.1:25").to_string() == "127.0.0.1:25");
  CHECK(parse_endpoint("[2001:db8::1]:2525").to_string() == "[2001:db8::1]:2525");
  CHECK(parse_endpoint("[::ffff:127.0.0.1]:25").to_string() == "127.0.0.1:25");
  for (const char* bad : {"127.0.0.1", "::1:25", "[::1]", "[::1]25", "localhost:25", "1.2.3.4:-1",
                          "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:25x"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_endpoint(bad), std::invalid_argument);
  }
  CHECK(is_country_code(*geomx::geo::Country::parse("US")));
  CHECK(is_country_code(*geomx::geo::Country::parse("ZZ")));
  CHECK_FALSE(is_country_code(*geomx::geo::Country::parse("XX")));
}

TEST_CASE("[[limit]]: rates, scopes and actions, and their mistakes") {
  const Config c = parse_config(minimal + R"(
[[limit]]
name = "per-ip"
if = { listener = "mx" }
rate = "30/min"
concurrent = 5
[[limit]]
name = "nets"
rate = "5/10s"
burst = 10
aggregate_v4 = 24
action = "ban"
ban_for = "1d"
table_size = 500
)",
                                "t.toml", defaults);
  REQUIRE(c.limits.size() == 2);
  CHECK(c.limits[0].rate == 30);
  CHECK(c.limits[0].per == 60s);
  CHECK(c.limits[0].burst == 30);  // default: the rate
  CHECK(c.limits[0].concurrent == 5);
  CHECK(c.limits[0].match.listeners == std::vector<std::string>{"mx"});
  CHECK(c.limits[1].per == 10s);
  CHECK(c.limits[1].burst == 10);
  CHECK(c.limits[1].aggregate_v4 == 24);
  CHECK(c.limits[1].action == LimitAction::ban);
  CHECK(c.limits[1].ban_for == 24h);
  CHECK(c.limits[1].table_size == 500);

  CHECK(errors_of(minimal + "[[limit]]\nname = \"a\"\nrate = \"30\"\n") ==
        std::vector<std::string>{"t.toml:12:8: limit[0].rate: \"30\": expected COUNT/PERIOD (e.g. "
                                 "\"30/min\", \"600/h\", \"5/10s\")"});
  CHECK(errors_of(minimal + "[[limit]]\nname = \"a\"\n") ==
        std::vector<std::string>{
            "t.toml:10:1: limit[0].rate: a limit needs a rate, a concurrent count, or both"});
  CHECK(errors_of(minimal +
                  "[[limit]]\nname = \"a\"\nconcurrent = 3\nburst = 2\nban_for = \"1h\"\n" +
                  "if = { cidr = \"10.0.0.0/8\" }\n") ==
        std::vector<std::string>{
            "t.toml:13:9: limit[0].burst: only applies with a rate",
            "t.toml:14:11: limit[0].ban_for: only applies to action \"ban\"",
            "t.toml:15:15: limit[0].if.cidr: a limit's scope takes lists, listeners, countries and "
            "asn; put CIDRs in a list"});
}

TEST_CASE("transparent listeners and action pass") {
  const std::string gateway = R"(
[[listener]]
name = "mx"
address = "127.0.0.1:2525"
[[listener]]
name = "out"
address = "[::]:2526"
mode = "transparent"
[[rule]]
name = "outbound"
if = { listener = "out" }
action = "pass"
[[rule]]
name = "rest"
action = "reject"
)";
  const Config c = parse_config(gateway, "t.toml", defaults);
  CHECK(c.listeners[0].mode == ListenerMode::mx);
  CHECK(c.listeners[1].mode == ListenerMode::transparent);
  CHECK(c.rules[0].action == Action::pass);

  // "pass" anywhere but a transparent listener would dial geomx itself.
  const std::string pass_all = minimal.substr(0, minimal.rfind("pool = ")) + "action = \"pass\"\n";
  CHECK(errors_of(pass_all) ==
        std::vector<std::string>{
            "t.toml:9:10: rule[0].action: pass relays to the address the client dialled: it "
            "needs `if.listener` naming only listeners with mode = \"transparent\""});
  CHECK(errors_of(pass_all + "pool = \"p\"\n").size() == 2);  // and pool does not apply
  std::string on_mx = gateway;
  on_mx.replace(on_mx.find("listener = \"out\""), 16, "listener = [\"out\", \"mx\"]");
  CHECK(errors_of(on_mx).size() == 1);
  // An unknown listener is reported once, as unknown.
  std::string unknown = gateway;
  unknown.replace(unknown.find("listener = \"out\""), 16, "listener = \"nope\"");
  CHECK(errors_of(unknown) ==
        std::vector<std::string>{"t.toml:11:19: rule[0].if.listener: no listener named \"nope\""});

  std::string with_proxy = gateway;
  with_proxy.replace(with_proxy.find("mode = "), 0, "proxy_protocol = \"v2\"\n");
  CHECK(errors_of(with_proxy) ==
        std::vector<std::string>{
            "t.toml:8:18: listener[1].proxy_protocol: a transparent listener reads the client's "
            "destination from the socket (SO_ORIGINAL_DST); it takes no PROXY header"});
  CHECK(errors_of(minimal.substr(0, minimal.find("[pool")) + "mode = \"nat\"\n" +
                  minimal.substr(minimal.find("[pool"))) ==
        std::vector<std::string>{"t.toml:5:8: listener[0].mode: \"nat\" is not one of \"mx\", "
                                 "\"transparent\", \"policy\""});
}

TEST_CASE("[store]: absent is a node alone; present, checked key by key") {
  CHECK_FALSE(parse_config(minimal, "t.toml", defaults).store.enabled);
  const Config c = parse_config("[store]\n" + minimal, "/etc/geomx/t.toml", defaults);
  CHECK(c.store.enabled);
  CHECK(c.store.where() == "127.0.0.1:6379");
  CHECK(c.store.node == "mx.test");  // server.hostname
  CHECK(c.store.key_prefix == "geomx:");
  CHECK(c.store.timeout == 25ms);
  CHECK_FALSE(c.store.exposed());
  const Config u = parse_config(
      "[store]\nredis = \"unix:/run/redis/redis.sock\"\npassword_file = \"redis.pass\"\n"
      "node = \"mx1\"\ndb = 2\ntimeout = \"100ms\"\n" +
          minimal,
      "/etc/geomx/t.toml", defaults);
  CHECK(u.store.where() == "unix:/run/redis/redis.sock");
  CHECK(u.store.password_file == "/etc/geomx/redis.pass");  // beside the config
  CHECK(u.store.db == 2);
  CHECK(u.store.node == "mx1");
  CHECK_FALSE(u.store.exposed());
  CHECK(parse_config("[store]\nredis = \"[2001:db8::1]:6380\"\n" + minimal, "t.toml", defaults)
            .store.exposed());
  CHECK(errors_of("[store]\nredis = \"redis.example:6379\"\n" + minimal).size() == 1);
  CHECK(errors_of("[store]\nredis = \"unix:run/redis.sock\"\n" + minimal) ==
        std::vector<std::string>{"t.toml:2:9: store.redis: unix: takes an absolute path "
                                 "(\"unix:/run/redis/redis.sock\")"});
  const Config st = parse_config(
      "[store]\nsentinels = [\"127.0.0.1:26379\", \"10.0.0.22:26379\"]\nmaster = \"mx\"\n" +
          minimal,
      "t.toml", defaults);
  REQUIRE(st.store.sentinels.size() == 2);
  CHECK(st.store.sentinels[1].to_string() == "10.0.0.22:26379");
  CHECK(st.store.master == "mx");
  CHECK(st.store.where() == "master mx of sentinels 127.0.0.1:26379 10.0.0.22:26379");
  CHECK(st.store.exposed());  // one is not on this host
  CHECK(parse_config("[store]\nsentinels = \"127.0.0.1:26379\"\n" + minimal, "t.toml", defaults)
            .store.master == "geomx");  // the default name
  CHECK(errors_of("[store]\nsentinels = [\"127.0.0.1:26379\"]\nredis = \"127.0.0.1:6379\"\n" +
                  minimal) ==
        std::vector<std::string>{"t.toml:2:13: store.sentinels: give `redis` (one Redis) or "
                                 "`sentinels` (follow a master), not both"});
  CHECK(errors_of("[store]\nmaster = \"geomx\"\n" + minimal) ==
        std::vector<std::string>{
            "t.toml:2:10: store.master: names a Sentinel master: give `sentinels` too"});
  CHECK(errors_of("[store]\nsentinels = [\"127.0.0.1:0\"]\n" + minimal).size() == 1);
  CHECK(errors_of("[store]\nsentinel_password_file = \"s.pass\"\n" + minimal) ==
        std::vector<std::string>{"t.toml:2:26: store.sentinel_password_file: is the sentinels' "
                                 "password: give `sentinels` too"});
  CHECK(parse_config("[store]\nsentinels = [\"127.0.0.1:26379\"]\nsentinel_password_file = "
                     "\"/etc/geomx/s.pass\"\n" +
                         minimal,
                     "t.toml", defaults)
            .store.sentinel_password_file == "/etc/geomx/s.pass");
  CHECK(errors_of("[store]\nkey_prefix = \"a b\"\n" + minimal).size() == 1);
  CHECK(errors_of("[store]\ntimeout = \"0s\"\n" + minimal).size() == 1);
  CHECK(errors_of("[store]\npasword_file = \"x\"\n" + minimal) ==
        std::vector<std::string>{"t.toml:2:1: store.pasword_file: unknown key"});
  // A changed [store] waits for a restart.
  CHECK(restart_changes(c, u) ==
        std::vector<std::string>{"store changed: takes effect at the next restart"});
}

TEST_CASE("a pool's screen: defaults as postscreen's, each key checked, xclient only screened") {
  const Config d = parse_config(minimal, "t.toml", defaults);
  const Screen& none = d.pools[0].screen;
  CHECK(none.mode == ScreenMode::none);
  CHECK(none.ttl == 24h * 30);
  CHECK(none.max_line == 512);
  CHECK(none.max_commands == 20);
  auto action = [](const Screen& s, ScreenTest t) {
    return s.actions[static_cast<std::size_t>(t)];
  };
  CHECK(action(none, ScreenTest::pipelining) == ScreenAction::reject);
  CHECK(action(none, ScreenTest::non_smtp) == ScreenAction::drop);
  CHECK(action(none, ScreenTest::bare_newline) == ScreenAction::log);
  const Config c = parse_config(minimal + R"(
[pool.q]
members = ["127.0.0.1:26"]
proxy_protocol = "xclient"
screen = "smtp"
screen_ttl = "1h"
screen_non_smtp = ["XX*", "EXPN"]
screen_max_line = 1000
screen_max_commands = 5
screen_action = { pipelining = "log", bare_newline = "drop", too_many_commands = "log" }
)",
                                "t.toml", defaults);
  const Screen& s = c.find_pool("q")->screen;
  CHECK(c.find_pool("q")->proxy_protocol == ProxyProtocol::xclient);
  CHECK(s.mode == ScreenMode::smtp);
  CHECK(s.ttl == 1h);
  CHECK(s.non_smtp == std::vector<std::string>{"XX*", "EXPN"});
  CHECK(s.max_line == 1000);
  CHECK(s.max_commands == 5);
  CHECK(action(s, ScreenTest::pipelining) == ScreenAction::log);
  CHECK(action(s, ScreenTest::bare_newline) == ScreenAction::drop);
  CHECK(action(s, ScreenTest::too_many_commands) == ScreenAction::log);
  CHECK(action(s, ScreenTest::non_smtp) == ScreenAction::drop);  // the default kept

  const std::string pool = minimal + "[pool.q]\nmembers = [\"127.0.0.1:26\"]\n";
  CHECK(errors_of(pool + "screen_ttl = \"1h\"\n") ==
        std::vector<std::string>{
            "t.toml:12:14: pool.q.screen_ttl: only applies with screen = \"smtp\""});
  CHECK(errors_of(pool + "proxy_protocol = \"xclient\"\n").size() == 1);
  CHECK(errors_of(pool + "screen = \"postscreen\"\n").size() == 1);
  CHECK(errors_of(pool + "screen = \"smtp\"\nscreen_max_line = 10\n").size() == 1);
  CHECK(errors_of(pool + "screen = \"smtp\"\nscreen_max_commands = 0\n").size() == 1);
  CHECK(errors_of(pool + "screen = \"smtp\"\nscreen_non_smtp = [\"GET /\"]\n").size() == 1);
  CHECK(
      errors_of(pool + "screen = \"smtp\"\nscreen_action = { pipelining = \"ignore\" }\n").size() ==
      1);
  CHECK(errors_of(pool + "screen = \"smtp\"\nscreen_action = { piplining = \"log\" }\n").size() ==
        1);
}

TEST_CASE("the policy listener, [greylist] and [policy]") {
  const std::string policy = minimal + R"(
[[listener]]
name = "policy"
address = "127.0.0.1:10031"
mode = "policy"
trusted_proxies = ["127.0.0.1/32"]
[lists.english]
countries = ["GB"]
)";
  const auto c = parse_config(
      policy + "[greylist]\nskip = { list = \"english\" }\n[policy]\nheader = \"X-Geomx\"\n",
      "t.toml", defaults);
  CHECK(c.listeners[1].mode == ListenerMode::policy);
  CHECK(c.greylist.enabled);
  CHECK(c.greylist.delay == 35min);  // the seed's window
  CHECK(c.greylist.retry_window == 48h);
  CHECK(c.greylist.max_age == 24h * 35);
  CHECK(c.greylist.network_v4 == 24);
  CHECK(c.greylist.network_v6 == 64);
  CHECK(c.greylist.auto_allow == 5);
  CHECK(c.greylist.has_skip);
  CHECK(c.policy.header == "X-Geomx");
  CHECK(c.policy.listener == "mx");  // the first mx listener's rules
  CHECK_FALSE(parse_config(policy, "t.toml", defaults).greylist.enabled);

  auto first = [](const std::vector<std::string>& e) { return e.empty() ? std::string() : e[0]; };
  CHECK(first(errors_of(minimal + "[greylist]\n")) ==
        "t.toml:10:1: greylist: needs a [[listener]] with mode = \"policy\"");
  CHECK(first(errors_of(minimal + "[[listener]]\nname = \"p\"\naddress = \"127.0.0.1:10031\"\n"
                                  "mode = \"policy\"\n"))
            .find("a policy listener needs trusted_proxies") != std::string::npos);
  CHECK(first(errors_of(policy + "[greylist]\nreply = \"550 no\"\n")).find("must be a 4xx") !=
        std::string::npos);
  CHECK(first(errors_of(policy + "[greylist]\ndelay = \"1h\"\nretry_window = \"30m\"\n"))
            .find("must be longer than delay") != std::string::npos);
  CHECK(first(errors_of(policy + "[greylist]\nskip = { cidr = [\"10.0.0.0/8\"] }\n"))
            .find("put CIDRs in a list") != std::string::npos);
  CHECK(first(errors_of(policy + "[greylist]\nskip = { list = \"nope\" }\n"))
            .find("no list named \"nope\"") != std::string::npos);
  CHECK(first(errors_of(policy + "[policy]\nheader = \"X Geomx:\"\n")).find("a header name") !=
        std::string::npos);
  CHECK(first(errors_of(minimal + "[[listener]]\nname = \"p\"\naddress = \"127.0.0.1:10031\"\n"
                                  "mode = \"policy\"\ntrusted_proxies = []\n"))
            .find("trusted_proxies") != std::string::npos);
  CHECK(first(errors_of(policy + "[policy]\nlistener = \"policy\"\n"))
            .find("names the policy listener") != std::string::npos);
}

TEST_CASE("asn matchers: numbers and AS strings, and their mistakes") {
  const std::string geo = "[geo]\nasn_databases = [\"/x/GeoLite2-ASN.mmdb\"]\n";
  const auto rule = [](const std::string& matcher) {
    return "[[rule]]\nname = \"as\"\nif = { asn = " + matcher + " }\naction = \"drop\"\n" +
           minimal.substr(minimal.find("[[rule]]"));
  };
  const std::string base = minimal.substr(0, minimal.find("[[rule]]"));
  const auto c = parse_config(
      geo + base + "[lists.l]\nasns = [64496, \"AS4200000000\"]\n" + rule("[\"as64511\", 1]"),
      "t.toml", defaults);
  CHECK(c.geo.asn_databases.at(0).path == "/x/GeoLite2-ASN.mmdb");
  CHECK(c.lists.at(0).asns == std::vector<std::uint32_t>{64496, 4200000000u});
  CHECK(c.rules.at(0).match.asns == std::vector<std::uint32_t>{64511, 1});
  CHECK_FALSE(c.rules.at(0).match.empty());
  CHECK(errors_of(base + rule("64496")) ==
        std::vector<std::string>{"t.toml:9:14: rule[0].if.asn: there is no AS number to match "
                                 "without [geo] asn_databases"});
  CHECK(errors_of(geo + base + rule("[0, 4294967296, \"ASx\", 1.5, []]")) ==
        std::vector<std::string>{
            "t.toml:11:15: rule[0].if.asn[0]: is not an AS number (1 to 4294967295)",
            "t.toml:11:18: rule[0].if.asn[1]: is not an AS number (1 to 4294967295)",
            "t.toml:11:30: rule[0].if.asn[2]: is not an AS number (1 to 4294967295)",
            "t.toml:11:37: rule[0].if.asn[3]: expected an AS number (64496 or \"AS64496\")",
            "t.toml:11:42: rule[0].if.asn[4]: expected an AS number (64496 or \"AS64496\")"});
  CHECK(errors_of(base + "[lists.l]\nasns = 64496\n" + rule("1").substr(0, 0) +
                  minimal.substr(minimal.find("[[rule]]"))) ==
        std::vector<std::string>{"t.toml:8:8: lists.l.asns: there is no AS number to match "
                                 "without [geo] asn_databases"});
}
