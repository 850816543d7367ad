#include "conf/loader.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <set>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "conf/text.hpp"
#include "conf/toml_reader.hpp"

namespace geomx::conf {
namespace {

using namespace detail;

// Reads a name that must be unique among `seen`.
bool unique_name(TableReader& t, std::string& out, std::set<std::string>& seen) {
  if (!t.required("name") || !t.string("name", out)) return false;
  if (!valid_name(out)) {
    t.error("name", "names are 1-64 letters, digits, '_', '-' or '.'");
    return false;
  }
  if (!seen.insert(out).second) {
    t.error("name", fmt::format("duplicate name \"{}\"", out));
    return false;
  }
  return true;
}

void parse_server(TableReader& t, Server& s) {
  if (t.string("hostname", s.hostname) && !valid_host_name(s.hostname))
    t.error("hostname", "must be a printable name without spaces");
  t.integer("threads", s.process.threads, 0, 256);
  t.string("user", s.process.user);
  t.string("group", s.process.group);
  t.boolean("allow_root", s.process.allow_root);
  if (t.string("state_dir", s.process.state_dir) &&
      (s.process.state_dir.empty() || s.process.state_dir.front() != '/'))
    t.error("state_dir", "must be an absolute path");
  t.integer("max_connections", s.max_connections, 1, 1'000'000);
  t.integer("max_connections_per_ip", s.max_connections_per_ip, 0, 1'000'000);
  t.integer("per_ip_prefix_v4", s.per_ip_prefix_v4, 8, 32);
  t.integer("per_ip_prefix_v6", s.per_ip_prefix_v6, 16, 128);
  t.integer("refusal_log_sample", s.process.refusal_log_sample, 0, 1'000'000);
  t.integer("refusal_log_limit", s.process.refusal_log_limit, 0, 100'000'000);
  t.integer("max_bans", s.max_bans, 0, 1'000'000);
  t.choice("log_format", s.process.log_format, {LogFormat::logfmt, LogFormat::json});
  t.duration("drain_timeout", s.drain_timeout, Duration(0), std::chrono::hours(1));
  t.duration("tarpit_duration", s.tarpit_duration, std::chrono::seconds(1), std::chrono::hours(1));
  t.integer("tarpit_max", s.tarpit_max, 0, 1'000'000);
  t.duration("reply_timeout", s.reply_timeout, std::chrono::milliseconds(100),
             std::chrono::minutes(5));
}

void parse_endpoint_key(TableReader& t, std::string_view key, Endpoint& out, bool port_zero_ok) {
  std::string text;
  if (!t.string(key, text)) return;
  try {
    out = parse_endpoint(text);
    if (out.port == 0 && !port_zero_ok) t.error(key, "port 0 is not a port to connect to");
  } catch (const std::invalid_argument& e) {
    t.error(key, e.what());
  }
}

template <class Fn>
void each_prefix(TableReader& t, std::string_view key, Fn fn) {
  t.each_string(key, [&](const std::string& text, const toml::node& n, const std::string& path) {
    try {
      fn(geo::parse_prefix(text));
    } catch (const geo::ParseError& e) {
      t.error_at(n, path, e.what());
    }
  });
}

template <class Fn>
void each_country(TableReader& t, std::string_view key, Fn fn) {
  t.each_string(key, [&](const std::string& text, const toml::node& n, const std::string& path) {
    auto c = geo::Country::parse(text);
    if (!c || c->code() != text || !is_country_code(*c))
      return t.error_at(n, path,
                        fmt::format("\"{}\" is not an ISO 3166-1 alpha-2 country code", text));
    fn(*c);
  });
}

// An AS number or an array of them: 64496 or [64496, 64511] (1 to 2^32-1;
// "AS64496" as a string too, as the registries write it).
template <class Fn>
void each_asn(TableReader& t, std::string_view key, Fn fn) {
  const toml::node* n = t.node(key);
  if (!n) return;
  auto one = [&](const toml::node& v, const std::string& path) {
    std::int64_t number = 0;
    if (auto* i = v.as_integer()) {
      number = i->get();
    } else if (auto* s = v.as_string()) {
      std::string_view text = s->get();
      if (text.size() > 2 && (text.substr(0, 2) == "AS" || text.substr(0, 2) == "as"))
        text.remove_prefix(2);
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
      if (ec != std::errc() || end != text.data() + text.size() || text.empty()) number = -1;
    } else {
      return t.error_at(v, path, "expected an AS number (64496 or \"AS64496\")");
    }
    if (number < 1 || number > 0xffffffffLL)
      return t.error_at(v, path, "is not an AS number (1 to 4294967295)");
    fn(static_cast<std::uint32_t>(number));
  };
  if (auto* a = n->as_array()) {
    if (a->empty()) return t.error(key, "empty; leave the key out instead");
    for (std::size_t i = 0; i < a->size(); ++i) one((*a)[i], fmt::format("{}[{}]", t.sub(key), i));
  } else {
    one(*n, t.sub(key));
  }
}

void parse_listener(TableReader& t, Listener& l, std::set<std::string>& names,
                    std::set<std::string>& transparent) {
  unique_name(t, l.name, names);
  if (t.required("address")) parse_endpoint_key(t, "address", l.address, true);
  t.choice("mode", l.mode, {ListenerMode::mx, ListenerMode::transparent, ListenerMode::policy});
  if (l.mode == ListenerMode::policy) {
    // trusted_proxies are the Postfix hosts that may ask; nobody else.
    if (t.node("proxy_protocol"))
      t.error("proxy_protocol",
              "a policy listener is asked by Postfix itself; it takes no PROXY "
              "header");
    if (t.node("proxy_timeout")) t.error("proxy_timeout", "only applies to PROXY headers");
    each_prefix(t, "trusted_proxies",
                [&](const geo::Prefix& p) { l.trusted_proxies.push_back(p); });
    if (!t.node("trusted_proxies"))
      t.error("mode", "a policy listener needs trusted_proxies (the Postfix hosts that may ask)");
    else if (l.trusted_proxies.empty())
      t.error("trusted_proxies", "empty: nobody could ask; name the Postfix hosts");
    return;
  }
  if (l.mode == ListenerMode::transparent) {
    transparent.insert(l.name);
    if (t.node("proxy_protocol"))
      t.error("proxy_protocol",
              "a transparent listener reads the client's destination from the socket "
              "(SO_ORIGINAL_DST); it takes no PROXY header");
    for (const char* key : {"trusted_proxies", "proxy_timeout"})
      if (t.node(key))
        t.error(key, "only applies to PROXY headers, which a transparent listener does not take");
  }
  const bool known = !t.node("proxy_protocol") || t.choice("proxy_protocol", l.proxy_protocol,
                                                           {ProxyProtocol::none, ProxyProtocol::v1,
                                                            ProxyProtocol::v2, ProxyProtocol::any});
  each_prefix(t, "trusted_proxies", [&](const geo::Prefix& p) { l.trusted_proxies.push_back(p); });
  t.duration("proxy_timeout", l.proxy_timeout, std::chrono::milliseconds(100),
             std::chrono::seconds(60));
  if (!known || l.mode == ListenerMode::transparent) return;
  if (l.proxy_protocol != ProxyProtocol::none && l.trusted_proxies.empty() &&
      !t.node("trusted_proxies"))
    t.error("proxy_protocol",
            "a listener that expects PROXY headers needs trusted_proxies (who may send them)");
  if (l.proxy_protocol == ProxyProtocol::none && !l.trusted_proxies.empty())
    t.error("trusted_proxies", "only applies with proxy_protocol \"v1\", \"v2\" or \"any\"");
}

FileRef file_ref(TableReader& t, const std::string& text, const toml::node& n,
                 const std::string& base_dir) {
  std::string path = text;
  if (!path.empty() && path.front() != '/' && !base_dir.empty()) path = base_dir + "/" + path;
  return {path, t.reader().position(n.source())};
}

void parse_geo(TableReader& t, Geo& g, const std::string& base_dir) {
  t.each_string("databases", [&](const std::string& text, const toml::node& n, const std::string&) {
    g.databases.push_back(file_ref(t, text, n, base_dir));
  });
  t.each_string("asn_databases",
                [&](const std::string& text, const toml::node& n, const std::string&) {
                  g.asn_databases.push_back(file_ref(t, text, n, base_dir));
                });
  t.boolean("watch", g.watch);
}

void parse_list(TableReader& t, List& l, const std::string& base_dir, bool asn_data) {
  each_country(t, "countries", [&](geo::Country c) { l.countries.push_back(c); });
  each_asn(t, "asns", [&](std::uint32_t asn) { l.asns.push_back(asn); });
  if (t.node("asns") && !asn_data)
    t.error("asns", "there is no AS number to match without [geo] asn_databases");
  each_prefix(t, "cidrs", [&](const geo::Prefix& p) { l.cidrs.push_back(p); });
  t.each_string("files", [&](const std::string& text, const toml::node& n, const std::string&) {
    l.files.push_back(file_ref(t, text, n, base_dir));
  });
  if (!t.node("countries") && !t.node("asns") && !t.node("cidrs") && !t.node("files"))
    t.error("countries", "a list needs countries, asns, cidrs or files");
}

void parse_health(TableReader& t, Health& h) {
  t.duration("interval", h.interval, std::chrono::milliseconds(100), std::chrono::hours(1));
  t.duration("timeout", h.timeout, std::chrono::milliseconds(100), std::chrono::minutes(5));
  t.integer("rise", h.rise, 1, 100);
  t.integer("fall", h.fall, 1, 100);
  t.choice("probe", h.probe, {Probe::smtp, Probe::tcp});
  if (t.string("ehlo", h.ehlo) && !valid_host_name(h.ehlo))
    t.error("ehlo", "must be a printable name without spaces");
  t.boolean("starttls", h.starttls);
  if (h.starttls && h.probe != Probe::smtp) t.error("starttls", "needs probe = \"smtp\"");
}

void parse_member(TableReader& pool, const toml::node& n, const std::string& path, Member& m) {
  Reader& r = pool.reader();
  if (auto* s = n.as_string()) {
    try {
      m.address = parse_endpoint(s->get());
      if (m.address.port == 0) r.error(n.source(), path, "port 0 is not a port to connect to");
    } catch (const std::invalid_argument& e) {
      r.error(n.source(), path, e.what());
    }
    return;
  }
  auto* table = n.as_table();
  if (!table) {
    r.error(n.source(), path,
            fmt::format("expected \"host:port\" or a table, found {}", type_name(n.type())));
    return;
  }
  TableReader t(r, *table, path);
  if (t.required("address")) parse_endpoint_key(t, "address", m.address, false);
  t.integer("weight", m.weight, 1, 1000);
  t.boolean("backup", m.backup);
  t.integer("max_connections", m.max_connections, 1, 1'000'000);
}

// A pool's SMTP screen: screen = "smtp" and the keys that tune it.
void parse_screen(TableReader& t, Pool& p) {
  Screen& s = p.screen;
  t.choice("screen", s.mode, {ScreenMode::none, ScreenMode::smtp});
  const bool on = s.mode == ScreenMode::smtp;
  if (p.proxy_protocol == ProxyProtocol::xclient && !on)
    t.error("proxy_protocol",
            "\"xclient\" needs screen = \"smtp\" (XCLIENT carries the client's HELO, which "
            "only the screen reads)");
  for (const char* key :
       {"screen_ttl", "screen_non_smtp", "screen_max_line", "screen_max_commands", "screen_action"})
    if (t.node(key) && !on) t.error(key, "only applies with screen = \"smtp\"");
  t.duration("screen_ttl", s.ttl, Duration(0), std::chrono::hours(24 * 365));
  t.each_string("screen_non_smtp", [&](const std::string& text, const toml::node& n,
                                       const std::string& path) {
    // A verb, or a verb's beginning with '*': "XX*".
    const std::string_view verb = !text.empty() && text.back() == '*'
                                      ? std::string_view(text).substr(0, text.size() - 1)
                                      : std::string_view(text);
    const bool ok = !verb.empty() && verb.size() <= 64 &&
                    std::all_of(verb.begin(), verb.end(), [](unsigned char c) {
                      return std::isalnum(c) || c == '-' || c == '_';
                    });
    if (!ok)
      t.error_at(n, path,
                 fmt::format("\"{}\" is not a command verb (1-64 letters, digits, "
                             "'-' or '_', optionally ending in '*')",
                             text));
    else
      s.non_smtp.push_back(text);
  });
  t.integer("screen_max_line", s.max_line, 64, 65536);
  t.integer("screen_max_commands", s.max_commands, 1, 10000);
  if (auto* a = t.typed<toml::table>("screen_action", "a table")) {
    TableReader at(t.reader(), *a, t.sub("screen_action"));
    for (std::size_t i = 0; i < screen_tests; ++i)
      at.choice(to_string(static_cast<ScreenTest>(i)), s.actions[i],
                {ScreenAction::drop, ScreenAction::reject, ScreenAction::log});
  }
}

void parse_pool(TableReader& t, Pool& p, const Server& server) {
  const toml::node* members = t.node("members");
  if (!members) {
    t.error("members", "a pool needs at least one member");
  } else if (auto* a = members->as_array()) {
    if (a->empty()) t.error("members", "a pool needs at least one member");
    for (std::size_t i = 0; i < a->size(); ++i) {
      Member m;
      const auto path = fmt::format("{}[{}]", t.sub("members"), i);
      parse_member(t, (*a)[i], path, m);
      for (const auto& other : p.members)
        if (other.address == m.address && m.address.port != 0)
          t.error_at((*a)[i], path, fmt::format("{} is listed twice", m.address.to_string()));
      p.members.push_back(m);
    }
    if (!a->empty() &&
        std::all_of(p.members.begin(), p.members.end(), [](const Member& m) { return m.backup; }))
      t.error("members", "every member is a backup; at least one must not be");
  } else {
    t.error("members", fmt::format("expected an array, found {}", type_name(members->type())));
  }
  t.choice("balance", p.balance,
           {Balance::source_split, Balance::hash, Balance::round_robin, Balance::least_conn,
            Balance::first});
  t.choice("proxy_protocol", p.proxy_protocol,
           {ProxyProtocol::none, ProxyProtocol::v1, ProxyProtocol::v2, ProxyProtocol::xclient});
  t.duration("connect_timeout", p.connect_timeout, std::chrono::milliseconds(100),
             std::chrono::minutes(5));
  t.duration("idle_timeout", p.idle_timeout, std::chrono::seconds(1), std::chrono::hours(24));
  t.duration("fin_timeout", p.fin_timeout, std::chrono::milliseconds(100), std::chrono::hours(1));
  const bool delay_ok = !t.node("greet_delay") || t.duration("greet_delay", p.greet_delay,
                                                             Duration(0), std::chrono::minutes(5));
  if (t.string("greet_banner", p.greet_banner)) {
    if (p.greet_banner.rfind("220-", 0) != 0 || !valid_reply(p.greet_banner, '2', '-'))
      t.error("greet_banner",
              "must be one \"220-\" continuation line, e.g. \"220-mx.example.net ESMTP\"");
    else if (delay_ok && p.greet_delay == Duration(0))
      t.error("greet_banner", "a teaser banner needs greet_delay");
  }
  t.choice("pregreet", p.pregreet, {Pregreet::drop, Pregreet::reject, Pregreet::log});
  for (auto [key, out] :
       {std::pair{"greet_ttl", &p.greet_ttl}, std::pair{"pregreet_ttl", &p.pregreet_ttl}})
    if (t.duration(key, *out, Duration(0), std::chrono::hours(24 * 30)) && delay_ok &&
        p.greet_delay == Duration(0))
      t.error(key, "only applies with a greet_delay");
  parse_screen(t, p);
  t.integer("member_max_connections", p.member_max_connections, 1, 1'000'000);
  for (auto& m : p.members)
    if (m.max_connections == 0) m.max_connections = p.member_max_connections;
  t.duration("queue_timeout", p.queue_timeout, Duration(0), std::chrono::minutes(5));
  t.integer("max_queue", p.max_queue, 0, 1'000'000);
  p.health.ehlo = server.hostname;
  if (auto* h = t.typed<toml::table>("health", "a table")) {
    TableReader ht(t.reader(), *h, t.sub("health"));
    parse_health(ht, p.health);
  }
}

struct Names {
  std::set<std::string> pools, lists, listeners, transparent;
  bool dnsbl = false;  // [dnsbl] has sites to score
  bool asn = false;    // [geo] has asn_databases
};

void parse_match(TableReader& t, Match& m, const Names& names) {
  auto known = [&](const std::set<std::string>& set, const char* what,
                   std::vector<std::string>& out) {
    return [&, what](const std::string& text, const toml::node& n, const std::string& path) {
      if (!set.contains(text))
        t.error_at(n, path, fmt::format("no {} named \"{}\"", what, text));
      else
        out.push_back(text);
    };
  };
  t.each_string("list", known(names.lists, "list", m.lists));
  t.each_string("not_list", known(names.lists, "list", m.not_lists));
  t.each_string("listener", known(names.listeners, "listener", m.listeners));
  each_country(t, "country", [&](geo::Country c) { m.countries.push_back(c); });
  each_asn(t, "asn", [&](std::uint32_t asn) { m.asns.push_back(asn); });
  if (t.node("asn") && !names.asn)
    t.error("asn", "there is no AS number to match without [geo] asn_databases");
  each_prefix(t, "cidr", [&](const geo::Prefix& p) { m.cidrs.push_back(p); });
  for (auto [key, out] : {std::pair{"dnsbl_score_min", &m.dnsbl_score_min},
                          std::pair{"dnsbl_score_max", &m.dnsbl_score_max}}) {
    int score = 0;
    if (!t.integer(key, score, -100'000, 100'000)) continue;
    *out = score;
    if (!names.dnsbl) t.error(key, "there is no score without [dnsbl] sites");
  }
  bool fcrdns = false;
  if (t.boolean("fcrdns", fcrdns)) m.fcrdns = fcrdns;
}

void parse_dns(TableReader& t, Dns& dns) {
  t.each_string("servers",
                [&](const std::string& text, const toml::node& n, const std::string& path) {
                  try {
                    // A bare address is the DNS port.
                    if (const auto a = geo::try_parse_address(text))
                      dns.servers.push_back({*a, 53});
                    else
                      dns.servers.push_back(parse_endpoint(text));
                    if (dns.servers.back().port == 0)
                      t.error_at(n, path, "port 0 is not a DNS server's port");
                  } catch (const std::invalid_argument& e) {
                    t.error_at(n, path, e.what());
                  }
                });
  t.duration("timeout", dns.timeout, std::chrono::milliseconds(10), std::chrono::seconds(60));
  t.integer("max_in_flight", dns.max_in_flight, 1, 10'000'000);
  t.duration("min_ttl", dns.min_ttl, Duration(0), std::chrono::hours(24));
  t.duration("max_ttl", dns.max_ttl, Duration(0), std::chrono::hours(24 * 7));
  if (dns.max_ttl < dns.min_ttl) t.error("max_ttl", "is less than min_ttl");
}

void parse_greylist(TableReader& t, Greylist& g, const Names& names) {
  g.enabled = true;
  t.boolean("enabled", g.enabled);
  t.duration("delay", g.delay, std::chrono::seconds(1), std::chrono::hours(24));
  t.duration("retry_window", g.retry_window, std::chrono::minutes(1), std::chrono::hours(24 * 30));
  t.duration("max_age", g.max_age, std::chrono::hours(1), std::chrono::hours(24 * 365));
  if (g.retry_window <= g.delay) t.error("retry_window", "must be longer than delay");
  if (g.max_age < g.retry_window) t.error("max_age", "is less than retry_window");
  t.integer("network_v4", g.network_v4, 8u, 32u);
  t.integer("network_v6", g.network_v6, 16u, 128u);
  t.integer("auto_allow", g.auto_allow, 0u, 1'000'000u);
  t.integer("max_records", g.max_records, 1'000u, 100'000'000u);
  if (const auto* skip = t.typed<toml::table>("skip", "a table of matchers")) {
    TableReader st(t.reader(), *skip, t.sub("skip"));
    parse_match(st, g.skip, names);
    if (!g.skip.cidrs.empty())
      st.error("cidr",
               "skip takes lists, listeners, countries, asn and DNS matchers; put CIDRs in a "
               "list");
    if (!g.skip.listeners.empty())
      st.error("listener",
               "every request comes from the policy listener; skip by list or "
               "country");
    g.has_skip = !skip->empty();
    if (skip->empty()) t.error("skip", "empty; leave it out to greylist every client");
  }
  if (t.string("reply", g.reply)) {
    const bool tempfail = g.reply.size() >= 10 && g.reply[0] == '4' &&
                          std::isdigit(static_cast<unsigned char>(g.reply[1])) &&
                          std::isdigit(static_cast<unsigned char>(g.reply[2])) && g.reply[3] == ' ';
    if (!tempfail)
      t.error("reply",
              "must be a 4xx SMTP reply (\"450 4.2.0 Greylisted...\"): a greylisted "
              "sender retries only after a temporary failure");
    else if (g.reply.find_first_of("\r\n") != std::string::npos || g.reply.size() > 400)
      t.error("reply", "one line of at most 400 characters");
  }
}

void parse_policy(TableReader& t, PolicyService& p, const Names& names) {
  if (t.string("header", p.header)) {
    const bool ok = !p.header.empty() && p.header.size() <= 64 &&
                    std::all_of(p.header.begin(), p.header.end(), [](char ch) {
                      return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                             (ch >= '0' && ch <= '9') || ch == '-';
                    });
    if (!ok) t.error("header", "a header name: letters, digits and '-', at most 64");
  }
  if (t.string("listener", p.listener) && !names.listeners.contains(p.listener))
    t.error("listener", fmt::format("no listener named \"{}\"", p.listener));
}

void parse_dnsbl(TableReader& t, std::vector<DnsblSite>& sites) {
  // A zone may come more than once with other filters and weights, as in
  // postscreen (zen.spamhaus.org=127.0.0.[10;11]*8 and =127.0.0.[4..7]*6):
  // each entry scores on its own; the zone is asked once.
  t.each_string("sites",
                [&](const std::string& text, const toml::node& n, const std::string& path) {
                  try {
                    sites.push_back(parse_dnsbl_site(text));
                  } catch (const std::invalid_argument& e) {
                    t.error_at(n, path, e.what());
                  }
                });
  if (sites.size() > 64) t.error("sites", "at most 64 sites");
}

void parse_rule(TableReader& t, Rule& rule, std::set<std::string>& rule_names, const Names& names,
                const Server& server) {
  unique_name(t, rule.name, rule_names);
  const auto* cond = t.typed<toml::table>("if", "a table of matchers");
  if (cond) {
    TableReader ct(t.reader(), *cond, t.sub("if"));
    parse_match(ct, rule.match, names);
    if (cond->empty()) t.error("if", "empty; leave `if` out for a catch-all rule");
  }
  const bool known = !t.node("action") || t.choice("action", rule.action,
                                                   {Action::route, Action::reject, Action::drop,
                                                    Action::tarpit, Action::pass});
  const bool has_pool = t.string("pool", rule.pool);
  const bool has_reply = t.string("reply", rule.reply);
  if (!known) return;  // whether pool and reply apply depends on the action
  if (rule.action == Action::pass) {
    // Only a redirected connection has a destination of its own; anywhere
    // else "the address it dialled" is geomx itself.
    const auto& on = rule.match.listeners;
    const bool only_transparent =
        !on.empty() && std::all_of(on.begin(), on.end(), [&](const std::string& name) {
          return names.transparent.contains(name);
        });
    const bool names_reported = on.empty() && cond && cond->contains("listener");  // unknown
    if (!only_transparent && !names_reported)
      t.error("action",
              "pass relays to the address the client dialled: it needs `if.listener` naming "
              "only listeners with mode = \"transparent\"");
  }
  if (rule.action == Action::route) {
    if (!t.node("pool"))
      t.error("action", "route needs a pool");
    else if (has_pool && !names.pools.contains(rule.pool))
      t.error("pool", fmt::format("no pool named \"{}\"", rule.pool));
  } else if (t.node("pool")) {
    t.error("pool",
            fmt::format("only applies to action \"route\", not \"{}\"", to_string(rule.action)));
  }
  if (rule.action == Action::reject || rule.action == Action::tarpit) {
    if (!has_reply)
      rule.reply = rule.action == Action::reject
                       ? fmt::format("554 5.7.1 {} access denied", server.hostname)
                       : fmt::format("421 4.7.0 {} try again later", server.hostname);
    else if (!valid_reply(rule.reply, '4', ' '))
      t.error("reply",
              "must be one final SMTP reply line with a 4xx or 5xx code, e.g. "
              "\"554 5.7.1 access denied\"");
  } else if (t.node("reply")) {
    t.error("reply", "only applies to actions \"reject\" and \"tarpit\"");
  }
}

// "30/min", "600/h", "5/10s": a count and a duration.
void parse_rate(TableReader& t, Limit& l) {
  auto* v = t.typed<std::string>("rate", "a rate string such as \"30/min\"");
  if (!v) return;
  const std::string& text = v->get();
  const auto slash = text.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument("expected COUNT/PERIOD");
    // std::stoul would take " 5" and "+5": the count is digits only.
    if (slash == 0 || !std::all_of(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(slash),
                                   [](char c) { return c >= '0' && c <= '9'; }))
      throw std::invalid_argument("the count is a whole number from 1 to 1000000");
    std::size_t used = 0;
    const auto count = std::stoul(text.substr(0, slash), &used);
    if (used != slash || count == 0 || count > 1'000'000)
      throw std::invalid_argument("the count is a whole number from 1 to 1000000");
    const std::string unit = text.substr(slash + 1);
    static const std::map<std::string, Duration> units{
        {"s", std::chrono::seconds(1)},   {"sec", std::chrono::seconds(1)},
        {"min", std::chrono::minutes(1)}, {"m", std::chrono::minutes(1)},
        {"h", std::chrono::hours(1)},     {"hour", std::chrono::hours(1)},
        {"d", std::chrono::hours(24)},    {"day", std::chrono::hours(24)}};
    const auto u = units.find(unit);
    l.per = u != units.end() ? u->second : parse_duration(unit);
    if (l.per <= Duration(0)) throw std::invalid_argument("the period must be positive");
    l.rate = static_cast<std::uint32_t>(count);
  } catch (const std::invalid_argument& e) {
    t.error("rate",
            fmt::format("\"{}\": {} (e.g. \"30/min\", \"600/h\", \"5/10s\")", text, e.what()));
  } catch (const std::out_of_range&) {
    t.error("rate", fmt::format("\"{}\": the count is too large", text));
  }
}

void parse_limit(TableReader& t, Limit& l, std::set<std::string>& limit_names, const Names& names) {
  unique_name(t, l.name, limit_names);
  if (auto* cond = t.typed<toml::table>("if", "a table of matchers")) {
    TableReader ct(t.reader(), *cond, t.sub("if"));
    parse_match(ct, l.match, names);
    if (!l.match.cidrs.empty())
      ct.error("cidr",
               "a limit's scope takes lists, listeners, countries and asn; put CIDRs in a list");
    for (const auto* key : {"dnsbl_score_min", "dnsbl_score_max", "fcrdns"})
      if (ct.node(key))
        ct.error(key,
                 "a limit counts a connection at accept, before DNS answers: its scope "
                 "takes lists, listeners and countries");
    if (cond->empty()) t.error("if", "empty; leave `if` out to limit every connection");
  }
  parse_rate(t, l);
  t.integer("burst", l.burst, 1, 1'000'000);
  if (t.node("burst") && l.rate == 0) t.error("burst", "only applies with a rate");
  if (l.burst == 0) l.burst = l.rate;
  t.integer("concurrent", l.concurrent, 1, 1'000'000);
  if (l.rate == 0 && l.concurrent == 0 && !t.node("rate"))
    t.error("rate", "a limit needs a rate, a concurrent count, or both");
  t.integer("aggregate_v4", l.aggregate_v4, 8, 32);
  t.integer("aggregate_v6", l.aggregate_v6, 16, 128);
  t.choice("action", l.action, {LimitAction::tempfail, LimitAction::tarpit, LimitAction::ban});
  const bool ban_for =
      t.duration("ban_for", l.ban_for, std::chrono::seconds(1), std::chrono::hours(24 * 365));
  if (ban_for && l.action != LimitAction::ban) t.error("ban_for", "only applies to action \"ban\"");
  t.integer("table_size", l.table_size, 16, 10'000'000);
}

// Rule order: nothing after a catch-all, and the last rule is one.
void check_rule_order(Reader& r, const toml::array& rules, const std::vector<Rule>& parsed) {
  for (std::size_t i = 0; i + 1 < parsed.size(); ++i) {
    if (!parsed[i].match.empty() || rules[i].as_table()->contains("if")) continue;
    for (std::size_t j = i + 1; j < parsed.size(); ++j)
      r.error(rules[j].source(), fmt::format("rule[{}]", j),
              fmt::format("unreachable: it comes after the catch-all rule \"{}\"", parsed[i].name));
    return;
  }
  if (!parsed.empty() && rules.back().as_table()->contains("if"))
    r.error(rules.back().source(), fmt::format("rule[{}]", parsed.size() - 1),
            "the last rule must have no `if` (a catch-all), so that no client falls through");
}

// Lists and rules with `cidr` each take one of the table's list bits.
// [greylist] and [policy] are the policy listener's: without one they do nothing.
void check_policy(Reader& r, const toml::table& root, Config& c) {
  const auto first = [&](ListenerMode mode) {
    return std::find_if(c.listeners.begin(), c.listeners.end(),
                        [&](const Listener& l) { return l.mode == mode; });
  };
  const bool served = first(ListenerMode::policy) != c.listeners.end();
  for (const char* table : {"greylist", "policy"})
    if (const auto* n = root[table].node(); n && !served)
      r.error(n->source(), table, "needs a [[listener]] with mode = \"policy\"");
  if (!served) return;
  if (c.policy.listener.empty()) {
    if (const auto mx = first(ListenerMode::mx); mx != c.listeners.end())
      c.policy.listener = mx->name;
  } else if (const auto* n = root["policy"]["listener"].node();
             n && std::any_of(c.listeners.begin(), c.listeners.end(), [&](const Listener& l) {
               return l.name == c.policy.listener && l.mode == ListenerMode::policy;
             })) {
    r.error(n->source(), "policy.listener",
            "names the policy listener; name the one mail comes in on");
  }
}

void check_list_count(Reader& r, const toml::table& root, const Config& c) {
  std::size_t bits = 0;
  for (const auto& list : c.lists)
    if (++bits == geo::max_lists + 1)
      return r.error(root["lists"][list.name].node()->source(), "lists." + list.name,
                     fmt::format("more than {} lists", geo::max_lists));
  for (std::size_t i = 0; i < c.rules.size(); ++i)
    if (!c.rules[i].match.cidrs.empty() && ++bits == geo::max_lists + 1)
      return r.error(
          root["rule"][i]["if"]["cidr"].node()->source(), fmt::format("rule[{}].if.cidr", i),
          fmt::format("more than {} lists, counting one per rule with cidr", geo::max_lists));
}

void parse_admin(TableReader& t, Admin& admin, const std::string& base_dir) {
  parse_endpoint_key(t, "listen", admin.listen, true);
  for (auto [key, out] : {std::pair{"tls_cert", &admin.tls_cert},
                          {"tls_key", &admin.tls_key},
                          {"token_file", &admin.token_file},
                          {"socket", &admin.socket}})
    if (t.string(key, *out) && !out->empty() && out->front() != '/' && !base_dir.empty())
      *out = base_dir + "/" + *out;
  if (t.node("token_file") && admin.token_file.empty())
    t.error("token_file", "must name a file (leave it out for STATE_DIR/admin.token)");
  if (t.node("socket") && admin.socket.empty())
    t.error("socket", "must name a path (leave it out for no admin socket)");
  constexpr std::size_t sun_path_max = 107;  // sockaddr_un's sun_path, less its NUL
  if (admin.socket.size() > sun_path_max)
    t.error("socket", fmt::format("{} bytes: a unix socket path is at most {}", admin.socket.size(),
                                  sun_path_max));
  t.each_string("hosts",
                [&](const std::string& name, const toml::node& n, const std::string& path) {
                  if (!valid_host_name(name)) return t.error_at(n, path, "must be a host name");
                  admin.hosts.push_back(name);
                });
  if (admin.tls_cert.empty() != admin.tls_key.empty())
    t.error(admin.tls_cert.empty() ? "tls_key" : "tls_cert",
            "tls_cert and tls_key go together (HTTPS needs both)");
}

void parse_store(TableReader& t, Store& store, const Server& server, const std::string& base_dir) {
  store.enabled = true;
  store.node = server.hostname;
  if (const auto* n = t.node("redis")) {
    std::string text;
    if (t.string("redis", text) && text.starts_with("unix:")) {
      store.redis_unix = text.substr(5);
      if (store.redis_unix.empty() || store.redis_unix.front() != '/')
        t.error("redis", "unix: takes an absolute path (\"unix:/run/redis/redis.sock\")");
    } else if (n->is_string()) {
      parse_endpoint_key(t, "redis", store.redis, false);
    }
  }
  t.each_string("sentinels",
                [&](const std::string& text, const toml::node& n, const std::string& path) {
                  try {
                    const auto e = parse_endpoint(text);
                    if (e.port == 0)
                      return t.error_at(n, path, "port 0 is not a port to connect to");
                    store.sentinels.push_back(e);
                  } catch (const std::invalid_argument& e) {
                    t.error_at(n, path, e.what());
                  }
                });
  if (t.node("sentinels") && t.node("redis"))
    t.error("sentinels", "give `redis` (one Redis) or `sentinels` (follow a master), not both");
  if (t.string("master", store.master) &&
      (store.master.empty() || store.master.size() > 64 || !valid_host_name(store.master)))
    t.error("master", "the Sentinel master's name: at most 64 printable characters, no spaces");
  if (t.node("master") && !t.node("sentinels"))
    t.error("master", "names a Sentinel master: give `sentinels` too");
  for (auto [key, file] : {std::pair{"password_file", &store.password_file},
                           std::pair{"sentinel_password_file", &store.sentinel_password_file}}) {
    if (!t.string(key, *file)) continue;
    if (file->empty())
      t.error(key, "must name a file");
    else if (file->front() != '/' && !base_dir.empty())
      *file = base_dir + "/" + *file;
  }
  if (t.node("sentinel_password_file") && !t.node("sentinels"))
    t.error("sentinel_password_file", "is the sentinels' password: give `sentinels` too");
  t.integer("db", store.db, 0, 1000000);
  if (t.string("key_prefix", store.key_prefix) &&
      (store.key_prefix.size() > 64 || !conf::printable_line(store.key_prefix) ||
       store.key_prefix.find_first_of(" \t") != std::string::npos))
    t.error("key_prefix", "at most 64 printable characters without spaces");
  if (t.string("node", store.node) &&
      (store.node.empty() || store.node.size() > 64 || !valid_host_name(store.node)))
    t.error("node", "a name of at most 64 printable characters without spaces");
  t.duration("timeout", store.timeout, std::chrono::milliseconds(1), std::chrono::seconds(10));
}

// Two sockets one bind refuses: the same port (0, for tests, is a new port
// each), the same address or a wildcard of its family (IPv6 sockets are
// v6-only, so [::] and 0.0.0.0 are apart).
bool same_socket(const Endpoint& a, const Endpoint& b) {
  if (a.port == 0 || a.port != b.port || a.address.family() != b.address.family()) return false;
  return a.address == b.address || a.address.is_unspecified() || b.address.is_unspecified();
}

// A member that is geomx's own listener: each session would dial itself.
// A wildcard listener is reached on loopback; another address on it may be
// another host, which only the running system can tell.
bool dials_itself(const Endpoint& member, const Endpoint& listener) {
  if (listener.port == 0 || member.port != listener.port ||
      member.address.family() != listener.address.family())
    return false;
  return member.address == listener.address ||
         (listener.address.is_unspecified() &&
          (member.address.is_loopback() || member.address.is_unspecified()));
}

// What `run` would refuse or loop on, found here so that `check` finds it
// too: listeners (and the admin endpoint) that one bind refuses, and pool
// members that are a listener of this geomx.
void check_addresses(Reader& r, const toml::table& root, const Config& c) {
  const auto& listeners = c.listeners;
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    const auto* at = root["listener"][i]["address"].node();
    for (std::size_t j = 0; j < i && at; ++j)
      if (same_socket(listeners[i].address, listeners[j].address))
        r.error(at->source(), fmt::format("listener[{}].address", i),
                listeners[i].address == listeners[j].address
                    ? fmt::format("{} is already the address of listener \"{}\"",
                                  listeners[i].address.to_string(), listeners[j].name)
                    : fmt::format("{} and listener \"{}\" ({}) cannot both be bound",
                                  listeners[i].address.to_string(), listeners[j].name,
                                  listeners[j].address.to_string()));
  }
  const auto* admin = root["admin"]["listen"].node();
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    if (!same_socket(c.admin.listen, listeners[i].address)) continue;
    if (admin)
      r.error(admin->source(), "admin.listen",
              fmt::format("{} is (or overlaps) the address of listener \"{}\" ({})",
                          c.admin.listen.to_string(), listeners[i].name,
                          listeners[i].address.to_string()));
    else if (const auto* at = root["listener"][i]["address"].node())
      r.error(at->source(), fmt::format("listener[{}].address", i),
              fmt::format("{} overlaps the admin endpoint's default address {} (set "
                          "admin.listen)",
                          listeners[i].address.to_string(), c.admin.listen.to_string()));
  }
  for (const auto& pool : c.pools) {
    const auto* members = root["pool"][pool.name]["members"].as_array();
    for (std::size_t i = 0; members && i < pool.members.size() && i < members->size(); ++i)
      for (const auto& l : listeners)
        if (dials_itself(pool.members[i].address, l.address))
          r.error((*members)[i].source(), fmt::format("pool.{}.members[{}]", pool.name, i),
                  fmt::format("{} is geomx's own listener \"{}\": each session would dial "
                              "geomx again",
                              pool.members[i].address.to_string(), l.name));
  }
}

Config parse_table(const toml::table& root, const std::string& path, const Defaults& defaults,
                   std::vector<Diagnostic>& diagnostics) {
  Reader r(path, diagnostics);
  Config c;
  c.path = path;
  c.server.hostname = defaults.hostname;
  const auto slash = path.rfind('/');
  const std::string base_dir = slash == std::string::npos ? "" : path.substr(0, slash);
  TableReader top(r, root, "");
  if (auto* s = top.typed<toml::table>("server", "a table")) {
    TableReader t(r, *s, "server");
    parse_server(t, c.server);
  }
  Names names;
  top.each_array_table("listener", [&](std::size_t, TableReader& t) {
    parse_listener(t, c.listeners.emplace_back(), names.listeners, names.transparent);
  });
  if (!top.node("listener"))
    r.error(root.source(), "listener", "at least one [[listener]] is required");
  if (auto* g = top.typed<toml::table>("geo", "a table")) {
    TableReader t(r, *g, "geo");
    parse_geo(t, c.geo, base_dir);
  }
  names.asn = !c.geo.asn_databases.empty();
  top.each_table("lists", [&](const std::string& name, TableReader& t) {
    names.lists.insert(name);
    auto& l = c.lists.emplace_back();
    l.name = name;
    parse_list(t, l, base_dir, !c.geo.asn_databases.empty());
  });
  top.each_table("pool", [&](const std::string& name, TableReader& t) {
    names.pools.insert(name);
    auto& p = c.pools.emplace_back();
    p.name = name;
    parse_pool(t, p, c.server);
  });
  if (auto* a = top.typed<toml::table>("admin", "a table")) {
    TableReader t(r, *a, "admin");
    parse_admin(t, c.admin, base_dir);
  }
  if (c.admin.token_file.empty()) c.admin.token_file = c.server.process.state_dir + "/admin.token";
  if (auto* st = top.typed<toml::table>("store", "a table")) {
    TableReader t(r, *st, "store");
    parse_store(t, c.store, c.server, base_dir);
  }
  if (auto* d = top.typed<toml::table>("dns", "a table")) {
    TableReader t(r, *d, "dns");
    parse_dns(t, c.dns);
  }
  if (auto* d = top.typed<toml::table>("dnsbl", "a table")) {
    TableReader t(r, *d, "dnsbl");
    parse_dnsbl(t, c.dnsbl_sites);
  }
  names.dnsbl = !c.dnsbl_sites.empty();
  if (auto* g = top.typed<toml::table>("greylist", "a table")) {
    TableReader t(r, *g, "greylist");
    parse_greylist(t, c.greylist, names);
  }
  if (auto* p = top.typed<toml::table>("policy", "a table")) {
    TableReader t(r, *p, "policy");
    parse_policy(t, c.policy, names);
  }
  check_policy(r, root, c);
  check_addresses(r, root, c);
  std::set<std::string> limit_names;
  top.each_array_table("limit", [&](std::size_t, TableReader& t) {
    parse_limit(t, c.limits.emplace_back(), limit_names, names);
  });
  std::set<std::string> rule_names;
  top.each_array_table("rule", [&](std::size_t, TableReader& t) {
    parse_rule(t, c.rules.emplace_back(), rule_names, names, c.server);
  });
  if (auto* rules = root["rule"].as_array(); rules && rules->is_array_of_tables()) {
    check_rule_order(r, *rules, c.rules);
    check_list_count(r, root, c);
  } else if (!top.node("rule"))
    r.error(root.source(), "rule", "at least one [[rule]] is required");
  return c;
}

}  // namespace

Config parse_config(std::string_view text, const std::string& path, const Defaults& defaults,
                    std::vector<Diagnostic>& diagnostics) {
  Config config;
  try {
    const toml::table root = toml::parse(text, path);
    config = parse_table(root, path, defaults, diagnostics);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    diagnostics.push_back(
        {{path, static_cast<std::uint32_t>(where.line), static_cast<std::uint32_t>(where.column)},
         "toml",
         std::string(e.description())});
  }
  sort_diagnostics(diagnostics);
  return config;
}

Config parse_config(std::string_view text, const std::string& path, const Defaults& defaults) {
  std::vector<Diagnostic> diagnostics;
  Config config = parse_config(text, path, defaults, diagnostics);
  if (!diagnostics.empty()) throw ConfigError(std::move(diagnostics));
  return config;
}

Config load_config(const std::string& path, const Defaults& defaults) {
  return parse_config(read_config_file(path), path, defaults);
}

}  // namespace geomx::conf
