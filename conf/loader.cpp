#include "conf/loader.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include <fmt/format.h>
#include <toml++/toml.h>

namespace geomx::conf {
namespace {

constexpr std::string_view iso_3166 =
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR "
    "BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ "
    "EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW "
    "GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY "
    "KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV "
    "MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY "
    "QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG "
    "TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM "
    "ZW "
    // Not ISO 3166-1, but what geo databases put in the country field.
    "EU AP XK A1 A2 A3 ZZ";

std::string_view type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    default:
      return "a date or time";
  }
}

bool valid_name(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

// One SMTP reply line without its CRLF (at most 510 characters): a code
// from `low` to 5xx, then ' ' (a final line) or '-' (a continuation).
bool valid_reply(std::string_view s, char low, char separator) {
  return s.size() >= 4 && s.size() <= 510 && s[0] >= low && s[0] <= '5' &&
         std::isdigit(static_cast<unsigned char>(s[1])) &&
         std::isdigit(static_cast<unsigned char>(s[2])) && s[3] == separator && printable(s);
}

// A host name for replies and EHLO: printable, no spaces.
bool valid_host_name(std::string_view s) {
  return !s.empty() && s.size() <= 253 && printable(s) && s.find(' ') == std::string_view::npos;
}

// Collects diagnostics for one file.
class Reader {
 public:
  Reader(std::string file, std::vector<Diagnostic>& out) : file_(std::move(file)), out_(out) {}
  Position position(const toml::source_region& r) const {
    return {file_, static_cast<std::uint32_t>(r.begin.line),
            static_cast<std::uint32_t>(r.begin.column)};
  }
  void error(const toml::source_region& where, std::string path, std::string message) {
    out_.push_back({position(where), std::move(path), std::move(message)});
  }

 private:
  std::string file_;
  std::vector<Diagnostic>& out_;
};

// One TOML table being read: hands out values by key, reports wrong types
// and bad values, and when done every key that no one asked for.
class TableReader {
 public:
  TableReader(Reader& r, const toml::table& t, std::string path)
      : r_(r), t_(t), path_(std::move(path)) {}
  ~TableReader() {
    for (auto&& [key, value] : t_)
      if (!used_.contains(std::string(key.str())))
        r_.error(key.source(), sub(key.str()), "unknown key");
  }
  TableReader(const TableReader&) = delete;
  TableReader& operator=(const TableReader&) = delete;

  Reader& reader() { return r_; }
  const std::string& path() const { return path_; }
  std::string sub(std::string_view key) const {
    return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
  }
  const toml::node* node(std::string_view key) {
    used_.emplace(key);
    return t_.get(key);
  }
  // An error at the key's value, or at the table when the key is missing.
  void error(std::string_view key, std::string message) {
    const toml::node* n = t_.get(key);
    r_.error(n ? n->source() : t_.source(), sub(key), std::move(message));
  }
  void error_at(const toml::node& n, std::string path, std::string message) {
    r_.error(n.source(), std::move(path), std::move(message));
  }
  bool required(std::string_view key) {
    if (node(key)) return true;
    error(key, "missing (required)");
    return false;
  }

  template <class T>
  auto typed(std::string_view key, std::string_view want)
      -> decltype(std::declval<const toml::node&>().as<T>()) {
    const toml::node* n = node(key);
    if (!n) return nullptr;
    if (auto* v = n->as<T>()) return v;
    error(key, fmt::format("expected {}, found {}", want, type_name(n->type())));
    return nullptr;
  }

  bool string(std::string_view key, std::string& out) {
    auto* v = typed<std::string>(key, "a string");
    if (v) out = v->get();
    return v != nullptr;
  }
  bool boolean(std::string_view key, bool& out) {
    auto* v = typed<bool>(key, "true or false");
    if (v) out = v->get();
    return v != nullptr;
  }
  template <class Int>
  bool integer(std::string_view key, Int& out, std::int64_t min, std::int64_t max) {
    auto* v = typed<std::int64_t>(key, "an integer");
    if (!v) return false;
    if (v->get() < min || v->get() > max) {
      error(key, fmt::format("{} is out of range ({} to {})", v->get(), min, max));
      return false;
    }
    out = static_cast<Int>(v->get());
    return true;
  }
  bool duration(std::string_view key, Duration& out, Duration min, Duration max) {
    auto* v = typed<std::string>(key, "a duration string such as \"20s\"");
    if (!v) return false;
    try {
      const Duration d = parse_duration(v->get());
      if (d < min || d > max) {
        error(key, fmt::format("{} is out of range ({} to {})", v->get(), format_duration(min),
                               format_duration(max)));
        return false;
      }
      out = d;
      return true;
    } catch (const std::invalid_argument& e) {
      error(key, e.what());
      return false;
    }
  }
  template <class E>
  bool choice(std::string_view key, E& out, std::initializer_list<E> options) {
    auto* v = typed<std::string>(key, "a string");
    if (!v) return false;
    std::string names;
    for (E o : options) {
      if (to_string(o) == v->get()) {
        out = o;
        return true;
      }
      names += fmt::format("{}\"{}\"", names.empty() ? "" : ", ", to_string(o));
    }
    error(key, fmt::format("\"{}\" is not one of {}", v->get(), names));
    return false;
  }
  // A string or an array of strings: fn(text, node, path) for each.
  template <class Fn>
  void each_string(std::string_view key, Fn fn) {
    const toml::node* n = node(key);
    if (!n) return;
    if (auto* s = n->as_string()) return fn(s->get(), *n, sub(key));
    auto* a = n->as_array();
    if (!a)
      return error(key, fmt::format("expected a string or an array of strings, found {}",
                                    type_name(n->type())));
    if (a->empty()) return error(key, "empty; leave the key out instead");
    for (std::size_t i = 0; i < a->size(); ++i) {
      const auto path = fmt::format("{}[{}]", sub(key), i);
      if (auto* s = (*a)[i].as_string())
        fn(s->get(), (*a)[i], path);
      else
        error_at((*a)[i], path,
                 fmt::format("expected a string, found {}", type_name((*a)[i].type())));
    }
  }
  // A table of tables ([pool.NAME]): fn(name, TableReader&) for each, in
  // file order.
  template <class Fn>
  void each_table(std::string_view key, Fn fn) {
    auto* t = typed<toml::table>(key, "a table");
    if (!t) return;
    std::vector<std::pair<const toml::key*, const toml::node*>> entries;
    for (auto&& [name, value] : *t) entries.emplace_back(&name, &value);
    std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      const auto &x = a.second->source().begin, &y = b.second->source().begin;
      return std::tie(x.line, x.column) < std::tie(y.line, y.column);
    });
    for (const auto& [name, value] : entries) {
      const auto path = fmt::format("{}.{}", sub(key), name->str());
      if (auto* inner = value->as_table()) {
        TableReader tr(r_, *inner, path);
        if (!valid_name(name->str()))
          r_.error(name->source(), path, "names are 1-64 letters, digits, '_', '-' or '.'");
        fn(std::string(name->str()), tr);
      } else {
        error_at(*value, path, fmt::format("expected a table, found {}", type_name(value->type())));
      }
    }
  }
  // An array of tables ([[rule]]): fn(index, TableReader&) for each.
  template <class Fn>
  void each_array_table(std::string_view key, Fn fn) {
    const toml::node* n = node(key);
    if (!n) return;
    auto* a = n->as_array();
    if (!a || !a->is_array_of_tables())
      return error(key, fmt::format("expected an array of tables ([[{}]])", key));
    for (std::size_t i = 0; i < a->size(); ++i) {
      TableReader tr(r_, *(*a)[i].as_table(), fmt::format("{}[{}]", sub(key), i));
      fn(i, tr);
    }
  }

 private:
  Reader& r_;
  const toml::table& t_;
  std::string path_;
  std::set<std::string, std::less<>> used_;
};

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
  t.integer("threads", s.threads, 0, 256);
  t.string("user", s.user);
  t.string("group", s.group);
  t.boolean("allow_root", s.allow_root);
  if (t.string("state_dir", s.state_dir) && (s.state_dir.empty() || s.state_dir.front() != '/'))
    t.error("state_dir", "must be an absolute path");
  t.integer("max_connections", s.max_connections, 1, 1'000'000);
  t.integer("max_connections_per_ip", s.max_connections_per_ip, 0, 1'000'000);
  t.integer("refusal_log_sample", s.refusal_log_sample, 0, 1'000'000);
  t.integer("refusal_log_limit", s.refusal_log_limit, 0, 100'000'000);
  t.integer("max_bans", s.max_bans, 0, 1'000'000);
  t.choice("log_format", s.log_format, {LogFormat::logfmt, LogFormat::json});
  t.duration("drain_timeout", s.drain_timeout, Duration(0), std::chrono::hours(1));
  t.duration("tarpit_duration", s.tarpit_duration, std::chrono::seconds(1), std::chrono::hours(1));
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

void parse_listener(TableReader& t, Listener& l, std::set<std::string>& names,
                    std::set<std::string>& transparent) {
  unique_name(t, l.name, names);
  if (t.required("address")) parse_endpoint_key(t, "address", l.address, true);
  t.choice("mode", l.mode, {ListenerMode::mx, ListenerMode::transparent});
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
  t.boolean("watch", g.watch);
}

void parse_list(TableReader& t, List& l, const std::string& base_dir) {
  each_country(t, "countries", [&](geo::Country c) { l.countries.push_back(c); });
  each_prefix(t, "cidrs", [&](const geo::Prefix& p) { l.cidrs.push_back(p); });
  t.each_string("files", [&](const std::string& text, const toml::node& n, const std::string&) {
    l.files.push_back(file_ref(t, text, n, base_dir));
  });
  if (!t.node("countries") && !t.node("cidrs") && !t.node("files"))
    t.error("countries", "a list needs countries, cidrs or files");
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
           {ProxyProtocol::none, ProxyProtocol::v1, ProxyProtocol::v2});
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
  p.health.ehlo = server.hostname;
  if (auto* h = t.typed<toml::table>("health", "a table")) {
    TableReader ht(t.reader(), *h, t.sub("health"));
    parse_health(ht, p.health);
  }
}

struct Names {
  std::set<std::string> pools, lists, listeners, transparent;
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
  each_prefix(t, "cidr", [&](const geo::Prefix& p) { m.cidrs.push_back(p); });
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
      ct.error("cidr", "a limit's scope takes lists, listeners and countries; put CIDRs in a list");
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
  for (std::size_t i = 0; i < c.listeners.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (c.listeners[i].address == c.listeners[j].address && c.listeners[i].address.port != 0)
        r.error(root["listener"][i]["address"].node()->source(),
                fmt::format("listener[{}].address", i),
                fmt::format("{} is already the address of listener \"{}\"",
                            c.listeners[i].address.to_string(), c.listeners[j].name));
  if (auto* g = top.typed<toml::table>("geo", "a table")) {
    TableReader t(r, *g, "geo");
    parse_geo(t, c.geo, base_dir);
  }
  top.each_table("lists", [&](const std::string& name, TableReader& t) {
    names.lists.insert(name);
    auto& l = c.lists.emplace_back();
    l.name = name;
    parse_list(t, l, base_dir);
  });
  top.each_table("pool", [&](const std::string& name, TableReader& t) {
    names.pools.insert(name);
    auto& p = c.pools.emplace_back();
    p.name = name;
    parse_pool(t, p, c.server);
  });
  if (auto* a = top.typed<toml::table>("admin", "a table")) {
    TableReader t(r, *a, "admin");
    parse_endpoint_key(t, "listen", c.admin.listen, true);
    for (auto [key, out] :
         {std::pair{"tls_cert", &c.admin.tls_cert}, {"tls_key", &c.admin.tls_key}})
      if (t.string(key, *out) && !out->empty() && out->front() != '/' && !base_dir.empty())
        *out = base_dir + "/" + *out;
    if (c.admin.tls_cert.empty() != c.admin.tls_key.empty())
      t.error(c.admin.tls_cert.empty() ? "tls_key" : "tls_cert",
              "tls_cert and tls_key go together (HTTPS needs both)");
  }
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

std::string Diagnostic::to_string() const {
  if (where.line == 0) return fmt::format("{}: {}", where.file, message);
  return fmt::format("{}:{}:{}: {}: {}", where.file, where.line, where.column, path, message);
}

ConfigError::ConfigError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error([&] {
        std::string s;
        for (const auto& d : diagnostics) {
          if (!s.empty()) s += '\n';
          s += d.to_string();
        }
        return s;
      }()),
      diagnostics_(std::move(diagnostics)) {}

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

namespace {

[[noreturn]] void file_error(const std::string& path, std::string message) {
  std::vector<Diagnostic> diagnostics;
  diagnostics.push_back(Diagnostic{Position{path, 0, 0}, std::string(), std::move(message)});
  throw ConfigError(std::move(diagnostics));
}

}  // namespace

std::string read_config_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    file_error(path, "is a directory, not a config file");
  std::ifstream in(path, std::ios::binary);
  if (!in) file_error(path, std::strerror(errno));
  return {std::istreambuf_iterator<char>(in), {}};
}

Config load_config(const std::string& path, const Defaults& defaults) {
  return parse_config(read_config_file(path), path, defaults);
}

void sort_diagnostics(std::vector<Diagnostic>& diagnostics) {
  std::stable_sort(diagnostics.begin(), diagnostics.end(), [](const auto& a, const auto& b) {
    return std::tie(a.where.file, a.where.line, a.where.column) <
           std::tie(b.where.file, b.where.line, b.where.column);
  });
}

Duration parse_duration(std::string_view text) {
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  const std::pair<std::string_view, std::uint64_t> units[] = {
      {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}};
  if (ec == std::errc() && end != text.data() && n <= 100'000'000)
    for (auto [name, ms] : units)
      if (unit == name) return Duration(static_cast<std::int64_t>(n * ms));
  throw std::invalid_argument(fmt::format(
      "\"{}\" is not a duration: a whole number with a unit, ms, s, m, h or d (e.g. \"20s\")",
      text));
}

std::string format_duration(Duration d) {
  const auto ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 86'400'000 == 0) return fmt::format("{}d", ms / 86'400'000);
  if (ms % 3'600'000 == 0) return fmt::format("{}h", ms / 3'600'000);
  if (ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
  if (ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

Endpoint parse_endpoint(std::string_view text) {
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find("]:");
    if (close == std::string_view::npos)
      throw std::invalid_argument(fmt::format("\"{}\" is not [IPv6]:port", text));
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      throw std::invalid_argument(fmt::format("\"{}\" has no port (address:port)", text));
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      throw std::invalid_argument(
          fmt::format("\"{}\": write IPv6 addresses in brackets, e.g. [::1]:25", text));
  }
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || end != port.data() + port.size() || port.empty() || p > 65535)
    throw std::invalid_argument(fmt::format("\"{}\": port must be 0-65535", text));
  auto address = geo::try_parse_address(host);
  if (!address)
    throw std::invalid_argument(fmt::format(
        "\"{}\": \"{}\" is not an IP address (geomx does not resolve host names)", text, host));
  return {*address, static_cast<std::uint16_t>(p)};
}

bool is_country_code(geo::Country c) {
  for (std::size_t i = 0; i + 2 <= iso_3166.size(); i += 3)
    if (iso_3166.substr(i, 2) == c.code()) return true;
  return false;
}

}  // namespace geomx::conf
