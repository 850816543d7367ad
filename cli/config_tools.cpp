#include "cli/config_tools.hpp"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <fmt/ranges.h>

#include "daemon/fleet.hpp"
#include "daemon/load.hpp"
#include "geo/range.hpp"
#include "policy/decide.hpp"
#include "policy/greylist.hpp"
#include "proxy/clock.hpp"
#include "proxy/dns_check.hpp"
#include "state/greylist.hpp"
#include "state/local_store.hpp"

namespace geomx::cli {

void print_errors(const std::string& path, const std::vector<conf::Diagnostic>& errors) {
  for (const auto& d : errors) fmt::print(stderr, "{}\n", d.to_string());
  fmt::print(stderr, "geomx: {}: {} error{}\n", path, errors.size(), errors.size() == 1 ? "" : "s");
}

std::shared_ptr<const policy::Snapshot> load_snapshot(const std::string& path) {
  auto loaded = daemon::load_snapshot(path);
  if (!loaded.snapshot) print_errors(path, loaded.errors);
  return loaded.snapshot;
}

namespace {

std::string describe_match(const conf::Match& m) {
  if (m.empty()) return "catch-all";
  std::vector<std::string> parts;
  for (const auto& l : m.lists) parts.push_back("list " + l);
  for (const auto& l : m.not_lists) parts.push_back("not_list " + l);
  if (!m.countries.empty()) {
    std::vector<std::string_view> codes;
    for (const auto& c : m.countries) codes.push_back(c.code());
    parts.push_back(fmt::format("country {}", fmt::join(codes, "|")));
  }
  if (!m.asns.empty()) parts.push_back(fmt::format("asn {}", fmt::join(m.asns, "|")));
  if (!m.cidrs.empty()) parts.push_back(fmt::format("cidr ({} prefixes)", m.cidrs.size()));
  if (!m.listeners.empty())
    parts.push_back(fmt::format("listener {}", fmt::join(m.listeners, "|")));
  if (m.dnsbl_score_min) parts.push_back(fmt::format("dnsbl_score >= {}", *m.dnsbl_score_min));
  if (m.dnsbl_score_max) parts.push_back(fmt::format("dnsbl_score <= {}", *m.dnsbl_score_max));
  if (m.fcrdns) parts.push_back(fmt::format("fcrdns {}", *m.fcrdns));
  return fmt::format("if {}", fmt::join(parts, " and "));
}

void print_list_size(const policy::Snapshot& s, const conf::List& list, std::size_t bit) {
  auto set = s.table.select([&](const geo::GeoValue& v) { return (v.lists >> bit) & 1; });
  std::uint64_t v4_addresses = 0;
  for (const auto& r : set.v4) v4_addresses += std::uint64_t{r.last} - r.first + 1;
  const auto prefixes = geo::aggregate(set);
  const auto v4 = static_cast<std::size_t>(
      std::count_if(prefixes.begin(), prefixes.end(),
                    [](const geo::Prefix& p) { return p.family() == geo::Family::v4; }));
  fmt::print(
      "list      {}: {} countries, {}{} cidrs, {} files -> {} IPv4 prefixes ({} addresses), {} "
      "IPv6 prefixes\n",
      list.name, list.countries.size(),
      list.asns.empty() ? "" : fmt::format("{} asns, ", list.asns.size()), list.cidrs.size(),
      list.files.size(), v4, v4_addresses, prefixes.size() - v4);
}

void print_server(const policy::Snapshot& s) {
  const conf::Config& c = s.config;
  fmt::print("server    hostname {}, threads {}, max_connections {}, max_connections_per_ip {}\n",
             c.server.hostname,
             c.server.process.threads == 0 ? std::string("one per core")
                                           : std::to_string(c.server.process.threads),
             c.server.max_connections, c.server.max_connections_per_ip);
  for (const auto& l : c.listeners)
    fmt::print("listener  {} {} {}{}\n", l.name, l.address.to_string(),
               l.mode == conf::ListenerMode::transparent
                   ? std::string("transparent (to the original destination)")
                   : fmt::format("proxy_protocol {}", conf::to_string(l.proxy_protocol)),
               l.trusted_proxies.empty()
                   ? ""
                   : fmt::format(" from {} trusted prefixes", l.trusted_proxies.size()));
  std::vector<std::string> dbs;
  for (const auto& d : c.geo.databases) dbs.push_back(d.path);
  fmt::print(
      "geo       {}: {} IPv4 + {} IPv6 intervals, {:.1f} MiB\n",
      dbs.empty() ? std::string("default databases") : fmt::format("{}", fmt::join(dbs, ", ")),
      s.table.interval_count(geo::Family::v4), s.table.interval_count(geo::Family::v6),
      s.table.memory_bytes() / 1048576.0);
  for (const auto& d : c.geo.asn_databases) fmt::print("asn       {}\n", d.path);
  for (std::size_t i = 0; i < c.lists.size(); ++i) print_list_size(s, c.lists[i], i);
}

void print_pools(const conf::Config& c) {
  for (const auto& p : c.pools) {
    std::vector<std::string> members;
    for (const auto& m : p.members)
      members.push_back(m.address.to_string() + (m.backup ? " (backup)" : "") +
                        (m.weight != 1 ? fmt::format(" weight {}", m.weight) : ""));
    std::string screen;
    if (p.screen.mode == conf::ScreenMode::smtp) {
      std::vector<std::string> tests;
      for (std::size_t i = 0; i < conf::screen_tests; ++i)
        tests.push_back(fmt::format("{} {}", conf::to_string(static_cast<conf::ScreenTest>(i)),
                                    conf::to_string(p.screen.actions[i])));
      screen = fmt::format(", screen smtp ({}; a pass kept {})", fmt::join(tests, ", "),
                           conf::format_duration(p.screen.ttl));
    }
    fmt::print("pool      {}: {}, proxy_protocol {}, greet_delay {}{}{}: {}\n", p.name,
               conf::to_string(p.balance), conf::to_string(p.proxy_protocol),
               conf::format_duration(p.greet_delay), p.greet_banner.empty() ? "" : " with teaser",
               screen, fmt::join(members, ", "));
  }
}

void print_rules(const conf::Config& c) {
  for (std::size_t i = 0; i < c.rules.size(); ++i) {
    const auto& r = c.rules[i];
    std::string what(conf::to_string(r.action));
    if (r.action == conf::Action::route) what += " to pool " + r.pool;
    if (r.action == conf::Action::pass) what += " to the address the client dialled";
    if (!r.reply.empty()) what += fmt::format(" \"{}\"", r.reply);
    fmt::print("rule {:<4} {}: {} -> {}\n", i + 1, r.name, describe_match(r.match), what);
  }
}

void print_limits(const conf::Config& c) {
  for (const auto& l : c.limits) {
    std::vector<std::string> what;
    if (l.rate != 0)
      what.push_back(
          fmt::format("{}/{} (burst {})", l.rate, conf::format_duration(l.per), l.burst));
    if (l.concurrent != 0) what.push_back(fmt::format("{} at once", l.concurrent));
    fmt::print("limit     {}: {} per /{} (IPv4) /{} (IPv6), {}, {} clients tracked -> {}{}\n",
               l.name, fmt::join(what, ", "), l.aggregate_v4, l.aggregate_v6,
               l.match.empty() ? "every connection" : describe_match(l.match), l.table_size,
               conf::to_string(l.action),
               l.action == conf::LimitAction::ban ? " for " + conf::format_duration(l.ban_for)
                                                  : std::string());
  }
}

// The policy listener's answers: greylisting (and where its triplets are
// kept), the header, and whose rules the verdict names.
void print_policy(const conf::Config& c) {
  for (const auto& l : c.listeners) {
    if (l.mode != conf::ListenerMode::policy) continue;
    std::vector<std::string> from;
    for (const auto& p : l.trusted_proxies) from.push_back(p.to_string());
    fmt::print("policy    {} on {} (check_policy_service inet:{}), from {}\n", l.name,
               l.address.to_string(), l.address.to_string(), fmt::join(from, ", "));
  }
  const auto& g = c.greylist;
  if (g.enabled)
    fmt::print(
        "greylist  delay {}, retry_window {}, max_age {}, per /{} (IPv4) /{} (IPv6), auto_allow "
        "{}, skip {}, kept {} (at most {} records)\n",
        conf::format_duration(g.delay), conf::format_duration(g.retry_window),
        conf::format_duration(g.max_age), g.network_v4, g.network_v6,
        g.auto_allow ? fmt::format("after {} passes", g.auto_allow) : std::string("off"),
        g.has_skip ? describe_match(g.skip) : std::string("none"),
        c.store.enabled ? "in redis " + c.store.where()
                        : c.server.process.state_dir + "/greylist.{db,journal}",
        g.max_records);
  if (!c.policy.header.empty())
    fmt::print("header    {}: country, lists, rule (of listener {}){}, node\n", c.policy.header,
               c.policy.listener, c.dnsbl_sites.empty() ? "" : ", dnsbl score");
}

int run_check(const std::string& path) {
  const auto s = load_snapshot(path);
  if (!s) return 1;
  const conf::Config& c = s->config;
  const auto problems = daemon::preflight(c);  // what `run` would refuse at start
  for (const auto& p : problems) fmt::print(stderr, "geomx: {}: {}\n", path, p);
  if (!problems.empty()) return 1;
  fmt::print("{}: OK\n", path);
  print_server(*s);
  print_pools(c);
  print_rules(c);
  print_limits(c);
  print_policy(c);
  fmt::print("state     {}/blocks.toml\n", c.server.process.state_dir);
  fmt::print("admin     {}{}, token {}{}\n", c.admin.listen.to_string(),
             c.admin.tls_cert.empty() ? "" : " (HTTPS)", c.admin.token_file,
             c.admin.socket.empty() ? "" : ", socket " + c.admin.socket + " (the CLI's)");
  if (c.admin.exposed())
    fmt::print(stderr,
               "geomx: {}: warning: admin.listen {} is not a loopback address and has no TLS "
               "(tls_cert, tls_key): its token would cross the network in the clear\n",
               path, c.admin.listen.to_string());
  if (c.store.enabled)
    fmt::print("store     redis {} db {}, node {}, keys {}*, timeout {}{}{}\n", c.store.where(),
               c.store.db, c.store.node, c.store.key_prefix, conf::format_duration(c.store.timeout),
               c.store.password_file.empty() ? "" : ", AUTH from " + c.store.password_file,
               c.store.sentinel_password_file.empty()
                   ? ""
                   : ", the sentinels' AUTH from " + c.store.sentinel_password_file);
  for (const auto& w : daemon::store_warnings(c.store))
    fmt::print(stderr, "geomx: {}: warning: {}\n", path, w);
  return 0;
}

std::vector<std::string> quoted(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(fmt::format("{:?}", i));
  return out;
}

struct ExplainOptions {
  std::string config;
  std::string listener;
  bool json = false;
  bool dns = false;
  bool policy = false;  // addresses are SENDER RECIPIENT IP
  std::vector<std::string> addresses;
};

// --dns: the reputation checks asked live, as a session would (the whole
// dns.timeout at most), with each site's answer and the PTR check.
struct LiveDns {
  policy::Reputation reputation;
  std::string sites;  // "zen.spamhaus.org:listed*3,bl.spamcop.net:not_listed"
  std::string ptr;
};

LiveDns ask_dns(const std::shared_ptr<const policy::Snapshot>& s, const geo::Address& address) {
  asio::io_context io;
  proxy::Log log(conf::LogFormat::logfmt);
  proxy::ServerState state(s, log);
  auto check = std::make_shared<proxy::DnsCheck>(io.get_executor(), s, state, address);
  const auto all = static_cast<std::uint8_t>(policy::needs_dnsbl | policy::needs_fcrdns);
  check->start(all);
  asio::co_spawn(io, check->wait(all, std::chrono::steady_clock::now() + s->config.dns.timeout),
                 asio::detached);
  io.run();
  LiveDns out{check->reputation(), "", check->ptr()};
  for (std::size_t i = 0; i < check->sites().size(); ++i) {
    const auto& site = s->config.dnsbl_sites[i];
    const auto r = check->sites()[i].value_or(policy::SiteResult::timeout);
    out.sites += fmt::format("{}{}:{}", out.sites.empty() ? "" : ",", site.domain, to_string(r));
    if (r == policy::SiteResult::listed) out.sites += fmt::format("*{}", site.weight);
  }
  return out;
}

// --policy SENDER RECIPIENT IP: what the policy listener answers at RCPT,
// in its order (a block, the header, skip, the greylist), reading this
// node's state files as they are now (blocks.toml, the greylist store);
// with [store] the fleet's triplets are in Redis, which this does not ask.
int explain_policy(const std::shared_ptr<const policy::Snapshot>& s, const ExplainOptions& o) {
  const conf::Config& c = s->config;
  if (o.addresses.size() != 3) {
    fmt::print(
        stderr,
        "geomx: explain --policy takes SENDER RECIPIENT IP ('<>' or '' for a null sender)\n");
    return 2;
  }
  const auto address = geo::try_parse_address(o.addresses[2]);
  if (!address) {
    fmt::print(stderr, "geomx: explain: '{}' is not an IP address\n", o.addresses[2]);
    return 1;
  }
  const bool served = std::any_of(c.listeners.begin(), c.listeners.end(), [](const auto& l) {
    return l.mode == conf::ListenerMode::policy;
  });
  if (!served) {
    fmt::print(stderr, "geomx: explain --policy: {} has no listener with mode = \"policy\"\n",
               o.config);
    return 1;
  }
  const auto now = proxy::unix_now();
  const auto& dir = c.server.process.state_dir;
  std::vector<std::string> fields{fmt::format("{}", o.addresses[2])};
  auto print = [&](std::string_view result, std::string_view action) {
    fields.push_back(fmt::format("result={}", result));
    fields.push_back(fmt::format("action=\"{}\"", action));
    fmt::print(std::cout, "{}\n", fmt::join(fields, " "));
    return 0;
  };
  state::LocalBlockStore blocks(dir);
  for (const auto& b : blocks.load(now).blocks)
    if (b.active(now) && b.cidr.contains(*address)) {
      fields.push_back(fmt::format("block=\"{} ({}{}{})\"", b.cidr.to_string(), b.origin,
                                   b.comment.empty() ? "" : ": ", b.comment));
      return print("blocked", fmt::format("554 5.7.1 {} access denied", c.server.hostname));
    }
  policy::Client who{*address, s->listener_index(c.policy.listener).value_or(0)};
  std::optional<LiveDns> dns;
  if (o.dns && s->lookups) dns = ask_dns(s, *address);
  const auto d = policy::decide(who, *s, policy::AllUp{}, 0, dns ? &dns->reputation : nullptr);
  fields.push_back(fmt::format("country={}{} rule={}", d.country.code(),
                               d.asn ? fmt::format(" asn={}", d.asn) : "",
                               d.waits ? std::string("-") : c.rules[d.rule].name));
  std::string pass = "DUNNO";
  if (!c.policy.header.empty())
    pass = "PREPEND " +
           policy::verdict_header(*s, d, dns ? std::optional(dns->reputation.score) : std::nullopt);
  if (!c.greylist.enabled) return print("dunno", pass);
  const geo::GeoValue& v = s->table.lookup(*address);
  if (c.greylist.has_skip && policy::in_scope(s->greylist_skip, who, v)) {
    if (!policy::needs(c.greylist.skip) || dns) {
      if (policy::reputation_matches(c.greylist.skip, dns ? dns->reputation : policy::Reputation{}))
        return print("skipped", pass);
    } else {
      fields.push_back("skip=\"its DNS matchers decide (--dns asks them)\"");
    }
  }
  const auto t = policy::make_triplet(c.greylist, *address, o.addresses[0], o.addresses[1]);
  fields.push_back(fmt::format("triplet=\"{} {} -> {}\"", t.network,
                               t.sender.empty() ? "<>" : t.sender, t.recipient));
  std::optional<policy::GreyRecord> triplet, network;
  if (c.store.enabled) {
    fields.push_back("store=\"redis (not asked: as a new triplet)\"");
  } else {
    state::LocalGreyStore store(
        dir, c.greylist.max_records, [now] { return now; }, true);
    triplet = store.get(t.key());
    network = store.get(t.network_key());
    fields.push_back(fmt::format("store={}", store.where()));
    for (const auto& p : store.problems()) fmt::print(stderr, "geomx: warning: {}\n", p);
  }
  if (triplet)
    fields.push_back(fmt::format("first_seen={} passes={}", triplet->first, triplet->passes));
  if (network) fields.push_back(fmt::format("network_passes={}", network->passes));
  const auto step = policy::greylist_step(c.greylist, now, triplet, network);
  const auto result = policy::to_string(step.verdict);
  return print(result, policy::deferred(step.verdict)
                           ? policy::grey_reply(c.greylist, step.remaining)
                           : pass);
}

int run_explain(const ExplainOptions& o) {
  const auto s = load_snapshot(o.config);
  if (!s) return 1;
  if (o.policy) return explain_policy(s, o);
  const conf::Config& c = s->config;
  policy::Client client;
  if (!o.listener.empty()) {
    auto index = s->listener_index(o.listener);
    if (!index)
      throw std::invalid_argument(fmt::format("explain: no listener named \"{}\"", o.listener));
    client.listener = *index;
  }
  // The dated blocks and bans as this node keeps them (blocks.toml; a
  // fleet's node keeps its copy there too): a blocked client never reaches
  // the rules.
  const auto now = proxy::unix_now();
  state::LocalBlockStore block_store(c.server.process.state_dir);
  auto loaded = block_store.load(now);
  // A machine without the state folder (a test host) has no blocks: nothing to say.
  if (std::filesystem::exists(c.server.process.state_dir))
    for (const auto& p : loaded.problems) fmt::print(stderr, "geomx: warning: {}\n", p);
  int errors = 0;
  for (const auto& text : o.addresses) {
    auto address = geo::try_parse_address(text);
    if (!address) {
      fmt::print(stderr, "geomx: explain: '{}' is not an IP address\n", text);
      ++errors;
      continue;
    }
    client.address = *address;
    const auto block = std::find_if(loaded.blocks.begin(), loaded.blocks.end(), [&](const auto& b) {
      return b.active(now) && b.cidr.contains(*address);
    });
    if (block != loaded.blocks.end()) {
      const auto d = policy::decide(client, *s, policy::AllUp{}, 0);
      const auto by = fmt::format("{} ({}{}{})", block->cidr.to_string(), block->origin,
                                  block->comment.empty() ? "" : ": ", block->comment);
      const auto reply = fmt::format("554 5.7.1 {} access denied", c.server.hostname);
      if (o.json)
        fmt::print(std::cout,
                   "{{\"ip\":{:?},\"country\":{:?},\"blocked_by\":{:?},\"action\":\"reject\","
                   "\"reply\":{:?}}}\n",
                   text, d.country.code(), by, reply);
      else
        fmt::print(std::cout, "{} country={} blocked_by=\"{}\" action=reject reply=\"{}\"\n", text,
                   d.country.code(), by, reply);
      continue;
    }
    auto d = policy::decide(client, *s, policy::AllUp{}, 0);
    std::optional<LiveDns> dns;
    if (o.dns && s->lookups) {
      dns = ask_dns(s, *address);
      d = policy::decide(client, *s, policy::AllUp{}, 0, &dns->reputation);
    }
    const conf::Rule& rule = c.rules[d.rule];
    if (d.waits) {  // without --dns: say where the DNS would decide
      const std::string_view reads = d.waits == policy::needs_fcrdns ? "the reverse DNS check"
                                     : d.waits == policy::needs_dnsbl
                                         ? "the [dnsbl] score"
                                         : "the [dnsbl] score and the reverse DNS check";
      if (o.json)
        fmt::print(std::cout, "{{\"ip\":{:?},\"country\":{:?},\"rule\":{:?},\"waits_for\":{:?}}}\n",
                   text, d.country.code(), rule.name, reads);
      else
        fmt::print(std::cout, "{} country={} rule={} waits_for=\"{}\" (--dns asks it)\n", text,
                   d.country.code(), rule.name, reads);
      continue;
    }
    std::vector<std::string> lists, order;
    for (std::size_t i = 0; i < c.lists.size(); ++i)
      if ((d.lists >> i) & 1) lists.push_back(c.lists[i].name);
    const conf::Pool* pool = d.action == conf::Action::route ? &c.pools[d.pool] : nullptr;
    for (auto m : d.order) order.push_back(pool->members[m].address.to_string());
    const std::string member = d.member ? pool->members[*d.member].address.to_string() : "";
    const std::string why = policy::explain_match(d, *s);
    if (o.json) {
      fmt::print(
          std::cout,
          "{{\"ip\":{:?},\"country\":{:?},{}\"lists\":[{}],\"rule\":{:?},\"why\":{:?},"
          "\"action\":{:?},\"pool\":{:?},\"member\":{:?},\"fallback\":[{}],\"reply\":{:?}{}}}\n",
          text, d.country.code(),
          s->table.has_asn_data()
              ? fmt::format("\"asn\":{},\"as_org\":{:?},", d.asn, s->table.organisation(d.asn))
              : "",
          fmt::join(quoted(lists), ","), rule.name, why, conf::to_string(d.action),
          pool ? pool->name : "", member, fmt::join(quoted(order), ","), rule.reply,
          dns ? fmt::format(",\"dnsbl\":{},\"sites\":{:?},\"ptr\":{:?}", dns->reputation.score,
                            dns->sites, dns->ptr)
              : "");
    } else {
      fmt::print(std::cout, "{} country={}{} lists={} rule={} why=\"{}\" action={}", text,
                 d.country.code(),
                 s->table.has_asn_data()
                     ? fmt::format(" asn={} as_org={:?}", d.asn, s->table.organisation(d.asn))
                     : "",
                 lists.empty() ? "-" : fmt::format("{}", fmt::join(lists, ",")), rule.name, why,
                 conf::to_string(d.action));
      if (pool)
        fmt::print(std::cout, " pool={} member={} fallback={}", pool->name, member,
                   fmt::join(order, ","));
      if (!rule.reply.empty()) fmt::print(std::cout, " reply=\"{}\"", rule.reply);
      if (dns)
        fmt::print(std::cout, " dnsbl={} sites={} ptr={}", dns->reputation.score,
                   dns->sites.empty() ? "-" : dns->sites, dns->ptr.empty() ? "-" : dns->ptr);
      std::cout << '\n';
    }
  }
  return errors == 0 ? 0 : 1;
}

}  // namespace

void add_config_tools(CLI::App& app, Command& command) {
  auto check_path = std::make_shared<std::string>();
  auto* check =
      app.add_subcommand("check", "Validate a config and everything it loads, then summarise it");
  *check_path = default_config;
  check->add_option("-c,--config", *check_path, "Config file")->capture_default_str();
  check->callback(
      [&command, check_path] { command = [check_path] { return run_check(*check_path); }; });

  auto o = std::make_shared<ExplainOptions>();
  auto* explain =
      app.add_subcommand("explain", "Show the decision for addresses, with every member healthy");
  o->config = default_config;
  explain->add_option("-c,--config", o->config, "Config file")->capture_default_str();
  explain->add_option("--listener", o->listener,
                      "The listener the client connects to [default: the first]");
  explain->add_flag("--json", o->json, "One JSON object per line");
  explain->add_flag("--dns", o->dns,
                    "Ask the [dnsbl] sites and the reverse DNS live (dns.timeout at most), as a "
                    "session does");
  explain->add_flag("--policy", o->policy,
                    "What the policy listener answers at RCPT: give SENDER RECIPIENT IP (reads "
                    "this node's blocks and greylist store)");
  explain->add_option("address", o->addresses, "Client addresses (--policy: SENDER RECIPIENT IP)")
      ->required();
  explain->callback([&command, o] { command = [o] { return run_explain(*o); }; });
}

}  // namespace geomx::cli
