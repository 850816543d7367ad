#pragma once
// The validated, immutable configuration: plain data. conf/loader.hpp builds
// it from TOML; nothing here does I/O.
#include <algorithm>
#include <array>
#include <bitset>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "geo/address.hpp"
#include "geo/table.hpp"

namespace geomx::conf {

using Duration = std::chrono::milliseconds;

// Where a value came from, for errors found after parsing (a list file that
// fails to load is reported at the line that names it).
struct Position {
  std::string file;
  std::uint32_t line = 0;
  std::uint32_t column = 0;
};

struct Endpoint {
  geo::Address address;
  std::uint16_t port = 0;
  std::string to_string() const;  // 1.2.3.4:25, [::1]:25
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

enum class LogFormat { logfmt, json };
// What a listener expects from its peer, or what a pool sends to its members
// (pools: none, v1 or v2).
// xclient: a pool's members get Postfix's XCLIENT command instead of a
// PROXY header (screen = "smtp" pools only: it carries the client's HELO).
enum class ProxyProtocol { none, v1, v2, any, xclient };
// pass: relay to the address the client dialled (transparent listeners).
enum class Action { route, reject, drop, tarpit, pass };
// mx: clients connect to geomx. transparent: a REDIRECT sent them, and the
// address they dialled is read from the socket (SO_ORIGINAL_DST). policy:
// Postfix's policy delegation protocol (check_policy_service), from
// trusted_proxies only: greylisting, blocks and the geo verdict at RCPT.
enum class ListenerMode { mx, transparent, policy };
enum class Balance { source_split, hash, round_robin, least_conn, first };
enum class Pregreet { drop, reject, log };
enum class Probe { smtp, tcp };
enum class LimitAction { tempfail, tarpit, ban };
// A pool's screen: "none" relays bytes; "smtp" speaks SMTP to the client
// itself and hands the session to a member at the first MAIL, STARTTLS or
// AUTH (policy/smtp_screen.hpp), replaying the client's EHLO there.
enum class ScreenMode { none, smtp };
// The screen's tests, postscreen's deep protocol tests and two of ours;
// each has an action. One log word each (to_string).
enum class ScreenTest : std::uint8_t {
  pipelining,         // a command sent before the reply to the one before it
  non_smtp,           // CONNECT, GET, POST, USER, a header line, screen_non_smtp
  bare_newline,       // LF without CR
  no_helo,            // a command other than NOOP/RSET/QUIT before EHLO/HELO
  long_line,          // a line longer than screen_max_line octets
  too_many_commands,  // more than screen_max_commands before MAIL
};
inline constexpr std::size_t screen_tests = 6;
enum class ScreenAction { drop, reject, log };

std::string_view to_string(LogFormat);
std::string_view to_string(ProxyProtocol);
std::string_view to_string(Action);
std::string_view to_string(ListenerMode);
std::string_view to_string(Balance);
std::string_view to_string(Pregreet);
std::string_view to_string(Probe);
std::string_view to_string(LimitAction);
std::string_view to_string(ScreenMode);
std::string_view to_string(ScreenTest);
std::string_view to_string(ScreenAction);

// A pool's SMTP screen, defaults as postscreen's (pipelining enforced,
// non-SMTP commands dropped, bare newlines logged).
struct Screen {
  ScreenMode mode = ScreenMode::none;
  std::array<ScreenAction, screen_tests> actions{ScreenAction::reject, ScreenAction::drop,
                                                 ScreenAction::log,    ScreenAction::log,
                                                 ScreenAction::reject, ScreenAction::reject};
  std::vector<std::string> non_smtp;  // more forbidden verbs; "X*": any verb beginning "X"
  std::uint32_t max_line = 512;       // octets with the CRLF (RFC 5321)
  std::uint32_t max_commands = 20;    // before MAIL (postscreen_command_count_limit)
  // A client that passed goes straight to the byte relay this long (the
  // store's cache: the fleet's with [store]); 0: not kept.
  Duration ttl = std::chrono::hours(24 * 30);
};

// The [server] settings a running process keeps until it restarts (threads,
// identity, log format, where the state is, the log sampler's tables): a
// reload that changes them warns, and "needs a restart" is `!=`.
struct Process {
  unsigned threads = 0;  // 0: one per core
  std::string user, group;
  bool allow_root = false;
  LogFormat log_format = LogFormat::logfmt;
  std::string state_dir = "/var/lib/geomx";  // blocks.toml: the dated blocks
  std::uint32_t refusal_log_sample = 10;     // refused connections logged per client per minute
  std::uint32_t refusal_log_limit = 1000;    // ... per minute in all (0: no limit)
  friend bool operator==(const Process&, const Process&) = default;
};

struct Server {
  std::string hostname;  // default: the machine's host name
  Process process;
  std::uint32_t max_connections = 10000;
  std::uint32_t max_connections_per_ip = 50;  // Postfix smtpd_client_connection_count_limit
  // max_connections_per_ip counts a client per prefix of this length: an
  // IPv6 end site is a /64, so its 2^64 addresses are one client.
  unsigned per_ip_prefix_v4 = 32, per_ip_prefix_v6 = 64;
  std::uint32_t max_bans = 10000;  // [[limit]] bans in force at once; then 421 only
  Duration drain_timeout = std::chrono::seconds(30);
  Duration tarpit_duration = std::chrono::seconds(60);
  // Tarpitted clients at once; they hold none of max_connections. Beyond it
  // a client gets the reply at once and is closed.
  std::uint32_t tarpit_max = 1000;
  Duration reply_timeout =
      std::chrono::seconds(10);  // to send a reply (421, 554) and see the close
};

struct Listener {
  std::string name;
  Endpoint address;
  ListenerMode mode = ListenerMode::mx;
  ProxyProtocol proxy_protocol = ProxyProtocol::none;
  std::vector<geo::Prefix> trusted_proxies;
  Duration proxy_timeout = std::chrono::seconds(5);  // postscreen_upstream_proxy_timeout
};

struct FileRef {
  std::string path;  // relative paths are resolved against the config file's folder
  Position where;
};

struct Geo {
  std::vector<FileRef> databases;      // empty: geo::default_databases()
  std::vector<FileRef> asn_databases;  // GeoLite2-ASN .mmdb files; the `asn` matchers read them
  bool watch = false;
};

struct List {
  std::string name;
  std::vector<geo::Country> countries;
  std::vector<std::uint32_t> asns;  // every address of these autonomous systems
  std::vector<geo::Prefix> cidrs;
  std::vector<FileRef> files;
};

// Every matcher that is set must hold; a rule without matchers matches all.
struct Match {
  std::vector<std::string> lists;       // in every one of them
  std::vector<std::string> not_lists;   // in none of them
  std::vector<geo::Country> countries;  // any of them
  std::vector<std::uint32_t> asns;      // any of them (needs geo.asn_databases)
  std::vector<geo::Prefix> cidrs;       // any of them
  std::vector<std::string> listeners;   // any of them
  // DNS reputation (the [dnsbl] sites' summed weights; forward-confirmed
  // reverse DNS): a rule with one of these waits for the answers it needs.
  std::optional<int> dnsbl_score_min, dnsbl_score_max;
  std::optional<bool> fcrdns;
  bool needs_dnsbl() const { return dnsbl_score_min || dnsbl_score_max; }
  bool needs_dns() const { return needs_dnsbl() || fcrdns; }
  bool empty() const {
    return lists.empty() && not_lists.empty() && countries.empty() && asns.empty() &&
           cidrs.empty() && listeners.empty() && !needs_dns();
  }
};

struct Rule {
  std::string name;
  Match match;
  Action action = Action::route;
  std::string pool;   // route
  std::string reply;  // reject and tarpit: the SMTP reply line
};

struct Member {
  Endpoint address;
  std::uint32_t weight = 1;
  bool backup = false;
  // Sessions at the member at once (dialling or relayed), like haproxy's
  // maxconn; more wait in the pool's queue. 0: no limit.
  std::uint32_t max_connections = 0;
};

struct Health {
  Duration interval = std::chrono::seconds(2);  // haproxy inter 2s, rise 2, fall 3
  Duration timeout = std::chrono::seconds(2);
  std::uint32_t rise = 2;
  std::uint32_t fall = 3;
  Probe probe = Probe::smtp;
  std::string ehlo;  // default: server.hostname
  bool starttls = false;
};

struct Pool {
  std::string name;
  std::vector<Member> members;
  Balance balance = Balance::source_split;
  ProxyProtocol proxy_protocol = ProxyProtocol::none;
  Duration connect_timeout = std::chrono::seconds(5);
  Duration idle_timeout = std::chrono::seconds(300);  // Postfix smtpd_timeout
  Duration fin_timeout = std::chrono::seconds(10);    // once one side has closed
  Duration greet_delay{0};                            // 0: connect at once
  std::string greet_banner;                           // "220-..." teaser, optional
  Pregreet pregreet = Pregreet::drop;
  // The greeting-pass cache (the [store]'s, so the fleet's when it is on): a
  // client that waited out greet_delay without a pregreet skips the delay
  // for greet_ttl (postscreen_greet_ttl); with pregreet_ttl set, one that
  // talked first is refused at once that long (pregreet "drop" or
  // "reject"; postscreen keeps only passes, so it is opt-in). 0: not kept.
  Duration greet_ttl = std::chrono::hours(24);
  Duration pregreet_ttl{0};
  Screen screen;  // after the greet delay: "smtp" speaks SMTP to the client first
  Health health;
  // Members' max_connections unless a member sets its own (0: no limit).
  std::uint32_t member_max_connections = 0;
  // When every member is at its max_connections: how long a session waits
  // for a slot, and how many wait at a member at once; then 421 4.3.2.
  Duration queue_timeout = std::chrono::seconds(30);
  std::uint32_t max_queue = 1000;
};

// A per-client limit: connection rate (token bucket) and/or concurrent
// connections, counted per address or per prefix, within a scope.
struct Limit {
  std::string name;
  Match match;             // scope (listener, list, not_list, country); empty: all
  std::uint32_t rate = 0;  // connections per `per` (0: no rate limit)
  Duration per = std::chrono::minutes(1);
  std::uint32_t burst = 0;                        // bucket size; default: rate
  std::uint32_t concurrent = 0;                   // open connections at once (0: no limit)
  unsigned aggregate_v4 = 32, aggregate_v6 = 64;  // count (and ban) per prefix of this length
  LimitAction action = LimitAction::tempfail;
  Duration ban_for = std::chrono::hours(1);  // action "ban": a dated block this long
  std::uint32_t table_size = 10000;          // clients tracked; the least recently seen go
  // The prefix a client is counted (and banned) as.
  geo::Prefix counted_as(const geo::Address& a) const {
    return geo::Prefix::containing(a, a.is_v4() ? aggregate_v4 : aggregate_v6);
  }
};

// Kept until a restart too (its socket and certificate are opened once).
struct Admin {
  Endpoint listen{geo::Address::v4(0x7f000001), 9025};
  std::string tls_cert, tls_key;  // both or neither: HTTPS (PEM files)
  // The bearer token that /blocks, /reload, /status and /top need; geomx
  // creates it (random, mode 0640) when it is missing. Default:
  // STATE_DIR/admin.token. The CLI reads it from here.
  std::string token_file;
  // Names a request's Host header may give besides an IP address,
  // localhost and server.hostname (a DNS-rebinding page gives its own).
  std::vector<std::string> hosts;
  // A unix socket for the admin endpoint besides `listen` (empty: none):
  // mode 0660, group server.group or the user's. Its file permissions admit
  // a request, which needs no token; the CLI uses it when it is set.
  std::string socket;
  // Reachable beyond this host without TLS (the token would cross the
  // network in the clear).
  bool exposed() const { return !listen.address.is_loopback() && tls_cert.empty(); }
  friend bool operator==(const Admin&, const Admin&) = default;
};

// [store]: the state a fleet of nodes shares through Redis (blocks and
// bans today). Absent: everything stays on this node. Kept until a restart.
struct Store {
  bool enabled = false;
  Endpoint redis{geo::Address::v4(0x7f000001), 6379};
  std::string redis_unix;  // "unix:/path" given: this instead of `redis`
  // Redis Sentinel (instead of `redis`): the sentinels asked where the
  // master named `master` is, before each connect.
  std::vector<Endpoint> sentinels;
  std::string master = "geomx";
  std::string password_file;           // AUTH: "password" or "user:password", one line
  std::string sentinel_password_file;  // the sentinels' AUTH (their requirepass), likewise
  int db = 0;
  std::string key_prefix = "geomx:";
  std::string node;  // default: server.hostname
  Duration timeout = std::chrono::milliseconds(25);
  // Reachable beyond this host: hiredis 0.14 has no TLS, so the password
  // and the state cross the network in the clear.
  bool exposed() const {
    if (!sentinels.empty())
      return std::any_of(sentinels.begin(), sentinels.end(),
                         [](const Endpoint& e) { return !e.address.is_loopback(); });
    return redis_unix.empty() && !redis.address.is_loopback();
  }
  std::string where() const {
    // Appended, not `"literal" + string`: g++ 12 -O3 warns falsely on that (-Wrestrict).
    std::string out;
    if (!sentinels.empty()) {
      out.append("master ").append(master).append(" of sentinels");
      for (const auto& e : sentinels) out.append(" ").append(e.to_string());
    } else if (!redis_unix.empty()) {
      out.append("unix:").append(redis_unix);
    } else {
      out = redis.to_string();
    }
    return out;
  }
  friend bool operator==(const Store&, const Store&) = default;
};

// [dns]: the resolver of the reputation checks (c-ares).
struct Dns {
  std::vector<Endpoint> servers;                // empty: the system's (/etc/resolv.conf)
  Duration timeout = std::chrono::seconds(2);   // per query; then it counts as unanswered
  std::uint32_t max_in_flight = 10000;          // beyond it queries are not started (counted)
  Duration min_ttl = std::chrono::seconds(60);  // answers are cached this long at least,
  Duration max_ttl = std::chrono::hours(1);     // and at most (postscreen's clamp)
  friend bool operator==(const Dns&, const Dns&) = default;
};

// One of [dnsbl] sites, in postscreen_dnsbl_sites syntax:
// domain[=filter][*weight]. The filter is a reply address d.d.d.d whose
// octets are numbers or [..] sets of numbers and n..m ranges, separated
// by ';' ("127.0.0.[2..11]", "127.0.[0..255].[1;3]"); no filter: any reply
// lists. A negative weight allowlists (a DNSWL).
struct DnsblSite {
  std::string text;    // as written, for logs and metrics
  std::string domain;  // the zone queried: reversed client + "." + domain
  bool filtered = false;
  std::array<std::bitset<256>, 4> octets;  // the filter: octet i of a reply in octets[i]
  int weight = 1;
  // Whether a reply (an IPv4 address) is a listing by this site's filter.
  bool lists(std::uint32_t reply) const {
    if (!filtered) return true;
    for (int i = 0; i < 4; ++i)
      if (!octets[i].test((reply >> (24 - 8 * i)) & 0xff)) return false;
    return true;
  }
  friend bool operator==(const DnsblSite&, const DnsblSite&) = default;
};
// Parses one site; throws std::invalid_argument saying what is wrong.
DnsblSite parse_dnsbl_site(std::string_view text);

// [greylist]: the policy listener's greylisting (postgrey's triplet and
// defaults, the seed's 35-minute delay). Off without the table.
struct Greylist {
  bool enabled = false;
  Duration delay = std::chrono::minutes(35);           // a retry sooner is deferred again
  Duration retry_window = std::chrono::hours(24 * 2);  // a retry later starts again
  Duration max_age = std::chrono::hours(24 * 35);      // unseen triplets are forgotten
  unsigned network_v4 = 24, network_v6 = 64;           // the client part of the triplet
  std::uint32_t auto_allow = 5;  // passes after which the client network skips it (0: off)
  Match skip;                    // clients never greylisted (the rules' matchers, no cidr)
  bool has_skip = false;
  // This node's store holds at most this many (triplets and networks); then
  // the expired go, then the least recently seen tenth.
  std::uint32_t max_records = 2'000'000;
  // "{remaining}" becomes the time left ("35 minutes", "40 seconds").
  std::string reply = "450 4.2.0 Greylisted, please retry in {remaining}";
};

// [policy]: what the policy listener tells Postfix besides greylisting.
struct PolicyService {
  // A header prepended to mail that passes ("X-Geomx: country=RU list=-
  // rule=quarantine dnsbl=3 node=mx1"); empty: none.
  std::string header;
  // The listener whose rules the verdict names (default: the first mx one).
  std::string listener;
};

struct Config {
  std::string path;
  Server server;
  std::vector<Listener> listeners;
  Geo geo;
  std::vector<List> lists;
  std::vector<Rule> rules;
  std::vector<Pool> pools;
  std::vector<Limit> limits;
  Admin admin;
  Store store;
  Dns dns;
  std::vector<DnsblSite> dnsbl_sites;  // [dnsbl] sites
  Greylist greylist;
  PolicyService policy;

  const Pool* find_pool(std::string_view name) const;
  const List* find_list(std::string_view name) const;
};

// What a reload from `was` to `now` cannot change, one warning each
// ("server.threads changed: takes effect at the next restart"); empty when
// server.process and admin are equal.
std::vector<std::string> restart_changes(const Config& was, const Config& now);

}  // namespace geomx::conf
