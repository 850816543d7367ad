#include "admin/routes.hpp"

#include <charconv>
#include <cmath>
#include <ctime>
#include <iterator>
#include <set>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/url/parse.hpp>

#include "conf/text.hpp"
#include "proxy/clock.hpp"

namespace geomx::admin {
namespace {

using policy::Block;
using proxy::ServerState;
using proxy::unix_now;
constexpr const char* text_plain = "text/plain; charset=utf-8";

std::string json_string(std::string_view v) {
  std::string out;
  proxy::append_quoted(out, v);
  return out;
}

// The pools some rule routes to that have no member UP.
std::vector<std::string> empty_pools(const policy::Snapshot& snap, const policy::HealthView& view) {
  std::set<std::size_t> routed;
  for (const auto& rule : snap.config.rules)
    if (rule.action == conf::Action::route)
      if (const auto* pool = snap.config.find_pool(rule.pool))
        routed.insert(static_cast<std::size_t>(pool - snap.config.pools.data()));
  std::vector<std::string> empty;
  for (auto p : routed) {
    bool any = false;
    for (std::size_t m = 0; m < snap.config.pools[p].members.size(); ++m) any |= view.up(p, m);
    if (!any) empty.push_back(snap.config.pools[p].name);
  }
  return empty;
}

std::string status_json(const proxy::Runtime& rt, ServerState& state) {
  const policy::Snapshot& snap = *rt.snapshot;
  std::string out =
      fmt::format("{{\"config\":{},\"generation\":{},\"active_connections\":{},",
                  json_string(snap.config.path), rt.generation, state.sessions.load());
  out += "\"listeners\":[";
  for (std::size_t i = 0; i < snap.config.listeners.size(); ++i) {
    const auto& l = snap.config.listeners[i];
    out += fmt::format("{}{{\"name\":{},\"address\":{},\"mode\":\"{}\",\"proxy_protocol\":\"{}\"}}",
                       i ? "," : "", json_string(l.name), json_string(l.address.to_string()),
                       conf::to_string(l.mode), conf::to_string(l.proxy_protocol));
  }
  out += "],\"pools\":[";
  for (std::size_t p = 0; p < snap.config.pools.size(); ++p) {
    const auto& pool = snap.config.pools[p];
    out += fmt::format("{}{{\"name\":{},\"balance\":\"{}\",\"members\":[", p ? "," : "",
                       json_string(pool.name), conf::to_string(pool.balance));
    for (std::size_t m = 0; m < pool.members.size(); ++m) {
      const auto& h = *rt.view->at(p, m);
      const auto d = h.detail();
      out += fmt::format(
          "{}{{\"address\":{},\"backup\":{},\"weight\":{},\"state\":\"{}\",\"active\":{},"
          "\"checks\":{},\"check_failures\":{},\"connect_failures\":{},"
          "\"last_change\":{:.3f},\"last_probe_seconds\":{:.6f},\"last_error\":{}",
          m ? "," : "", json_string(h.address.to_string()), pool.members[m].backup,
          pool.members[m].weight, h.up.load() ? "up" : "down", h.active.load(), h.checks.load(),
          h.check_failures.load(), h.connect_failures.load(),
          std::chrono::duration<double>(d.last_change.time_since_epoch()).count(),
          d.last_probe_seconds, json_string(d.last_error));
      if (d.cert_days)
        out += fmt::format(",\"certificate\":{{\"subject\":{},\"days_left\":{}}}",
                           json_string(d.cert_subject), *d.cert_days);
      out += "}";
    }
    out += "]}";
  }
  out += "],\"store\":";
  if (!state.fleet) return out + "null}\n";
  const auto& f = *state.fleet;
  const auto& c = f.blocks().counts();
  const auto& l = f.limits().counts();
  const auto& k = f.cache().counts();
  // Never the password: only where, who, and how it goes.
  return out +
         fmt::format(
             "{{\"redis\":{},\"node\":{},\"key_prefix\":{},\"up\":{},\"since\":{},"
             "\"last_error\":{},\"blocks\":{{\"written\":{},\"heard\":{},\"merged\":{},"
             "\"refilled\":{}}},\"limits\":{{\"asked\":{},\"answered\":{},\"over\":{},"
             "\"concurrent\":{{\"asked\":{},\"answered\":{},\"over\":{}}},"
             "\"calls\":{},\"heartbeats\":{},\"process\":{}}},\"cache\":{{\"gets\":{},\"hits\":{},"
             "\"from_this_node\":{},\"puts\":{},\"calls\":{}}}}}}}\n",
             json_string(f.address()), json_string(f.options().node),
             json_string(f.options().key_prefix), f.up(), f.since(), json_string(f.why()),
             c.written, c.heard, c.merged, c.refills, l.asked, l.answered, l.refused, l.held_asked,
             l.held_answered, l.held_refused, l.calls, l.heartbeats,
             json_string(f.limits().process()), k.gets, k.hits, k.local, k.puts, k.calls);
}

std::string reload_json(const ReloadOutcome& r) {
  std::string out = fmt::format("{{\"result\":\"{}\",\"generation\":{}",
                                r.ok ? "success" : "failure", r.generation);
  for (const auto* what : {&r.errors, &r.warnings}) {
    out += what == &r.errors ? ",\"errors\":[" : "],\"warnings\":[";
    for (std::size_t i = 0; i < what->size(); ++i) {
      if (i) out += ',';
      out += json_string((*what)[i]);
    }
  }
  return out + "]}\n";
}

}  // namespace

std::optional<std::map<std::string, std::string>> query_of(std::string_view target) {
  const auto url = boost::urls::parse_origin_form(target);
  if (!url) return std::nullopt;
  std::map<std::string, std::string> q;
  for (const auto& p : url->params()) q[p.key] = p.value;
  return q;
}

Reply reload_reply(const ReloadOutcome& r, bool text) {
  const unsigned status = r.ok ? 200 : 422;
  if (!text) return {status, "application/json", reload_json(r)};
  std::string body =
      r.ok
          ? fmt::format("reload: success, generation {}\n", r.generation)
          : fmt::format("reload: failed, the running config stays (generation {})\n", r.generation);
  for (const auto& e : r.errors) body += fmt::format("error: {}\n", e);
  for (const auto& w : r.warnings) body += fmt::format("warning: {}\n", w);
  return {status, text_plain, body};
}

namespace {

std::string iso_time(std::int64_t t) {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(static_cast<std::time_t>(t)));
}

std::string block_json(const Block& b) {
  return fmt::format(
      "{{\"cidr\":{},\"comment\":{},\"created\":{},\"created_at\":\"{}\",\"expires\":{},"
      "\"expires_at\":{},\"origin\":{},\"node\":{}}}",
      json_string(b.cidr.to_string()), json_string(b.comment), b.created, iso_time(b.created),
      b.expires ? std::to_string(*b.expires) : "null",
      b.expires ? json_string(iso_time(*b.expires)) : "null", json_string(b.origin),
      b.node.empty() ? "null" : json_string(b.node));
}

// A fleet's blocks say which node made each ("by mx1").
std::string block_line(const Block& b) {
  return fmt::format("{:<20} {} until {:<20} {:<12} {}{}\n", b.cidr.to_string(),
                     iso_time(b.created), b.expires ? iso_time(*b.expires) : "deleted", b.origin,
                     b.node.empty() ? "" : fmt::format("by {} ", b.node), b.comment);
}

using Query = std::map<std::string, std::string>;

Reply list_blocks(Query& q, ServerState& state, std::int64_t now) {
  const bool text = q["format"] == "text";
  std::string body = text ? "" : "{\"blocks\":[";
  const auto blocks = state.blocks.current()->list(now);
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    if (text) {
      body += block_line(blocks[i]);
      continue;
    }
    if (i) body += ',';
    body += block_json(blocks[i]);
  }
  if (!text) body += "]}\n";
  return {200, text ? text_plain : "application/json", body};
}

Reply delete_block(const geo::Prefix& cidr, ServerState& state, std::int64_t now) {
  bool removed = false;
  try {
    removed = state.blocks.remove(cidr, now);
  } catch (const std::exception& e) {
    return {500, text_plain, fmt::format("not deleted: {}\n", e.what())};
  }
  if (!removed) return {404, text_plain, fmt::format("no block {}\n", cidr.to_string())};
  state.log.event("block", {{"action", "deleted"}, {"cidr", cidr.to_string()}});
  return {200, text_plain, fmt::format("deleted {}\n", cidr.to_string())};
}

Reply add_block(const geo::Prefix& cidr, Query& q, ServerState& state, std::int64_t now) {
  // A typo away from refusing the whole world (0.0.0.0/0): only on purpose.
  const unsigned shortest = cidr.family() == geo::Family::v4 ? 8 : 16;
  if (cidr.length() < shortest && q["force"] != "yes")
    return {400, text_plain,
            fmt::format("cidr: {} is shorter than /{}: it would refuse a large part of the "
                        "Internet; if that is meant, give `geomx block add --force` (force=yes "
                        "over HTTP)\n",
                        cidr.to_string(), shortest)};
  // A comment is shown on a line of its own (`geomx block list`, the log):
  // a newline in it could forge the next one.
  if (!conf::printable_line(q["comment"]) || q["comment"].size() > 1024)
    return {400, text_plain,
            "comment: at most 1024 bytes of UTF-8 text on one line, without control "
            "characters\n"};
  Block b{cidr,       q["comment"], now, std::nullopt,
          "operator", {},           0};  // node, version: stamped when kept
  if (!q["for"].empty()) {
    try {
      const auto d =
          std::chrono::duration_cast<std::chrono::seconds>(conf::parse_duration(q["for"]));
      if (d.count() < 1) throw std::invalid_argument("at least 1s");
      b.expires = now + d.count();
    } catch (const std::invalid_argument& e) {
      return {400, text_plain, fmt::format("for: {}\n", e.what())};
    }
  }
  try {
    state.blocks.add(b, now);
  } catch (const std::exception& e) {
    return {500, text_plain, fmt::format("not added: {}\n", e.what())};
  }
  state.log.event("block", {{"action", "added"},
                            {"cidr", cidr.to_string()},
                            {"comment", b.comment},
                            {"expires", b.expires ? iso_time(*b.expires) : "never"},
                            {"origin", b.origin}});
  const bool text = q["format"] == "text";
  return {200, text ? text_plain : "application/json",
          text ? "added " + block_line(b) : block_json(b) + "\n"};
}

// GET /blocks, POST /blocks?cidr=&comment=&for=[&force=yes], DELETE /blocks?cidr=.
Reply blocks_answer(std::string_view method, std::string_view target, ServerState& state,
                    std::int64_t now) {
  auto parsed = query_of(target);
  if (!parsed) return {400, text_plain, "bad request target\n"};
  auto& q = *parsed;
  if (method == "GET" || method == "HEAD") return list_blocks(q, state, now);
  if (method != "POST" && method != "DELETE")
    return {405, text_plain, "GET, POST or DELETE\n", "GET, HEAD, POST, DELETE"};
  geo::Prefix cidr;
  try {
    cidr = geo::parse_prefix(q["cidr"]);
  } catch (const geo::ParseError& e) {
    return {400, text_plain, fmt::format("cidr: {}\n", e.what())};
  }
  if (method == "DELETE") return delete_block(cidr, state, now);
  return add_block(cidr, q, state, now);
}

// GET /top?window=1m|1h&n=20[&format=text]
// GET /top; with `others` (fleet=1), merged with the other nodes' reports.
Reply top_answer(std::string_view target, ServerState& state, const Now& now,
                 const std::vector<state::FleetTop::NodeReport>* others = nullptr) {
  auto parsed = query_of(target);
  if (!parsed) return {400, text_plain, "bad request target\n"};
  auto& q = *parsed;
  const std::string window = q["window"].empty() ? "1m" : q["window"];
  if (window != "1m" && window != "1h") return {400, text_plain, "window: 1m or 1h\n"};
  std::size_t n = 20;
  if (!q["n"].empty()) {
    const auto& text = q["n"];
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || n == 0 || n > 10'000)
      return {400, text_plain, "n: a number from 1 to 10000\n"};
  }
  if (!q["fleet"].empty() && q["fleet"] != "1" && q["fleet"] != "0")
    return {400, text_plain, "fleet: 1 or 0\n"};
  if (q["fleet"] == "1" && !others)
    return {400, text_plain, "fleet=1: this node has no [store], so no fleet to ask\n"};
  const std::chrono::minutes minutes(window == "1h" ? 60 : 1);
  policy::TopTalkers::Report report;
  std::vector<std::string> nodes;
  if (others) {
    // This node's deeper than n: a client below its n may be at the top of the sum.
    std::vector<policy::TopTalkers::Report> all{
        state.top.top(minutes, state::FleetTop::rows, now.steady)};
    nodes.push_back(state.fleet->options().node);
    for (const auto& o : *others) {
      all.push_back(o.report);
      nodes.push_back(o.node);
    }
    report = policy::TopTalkers::merge(all, n);
  } else {
    report = state.top.top(minutes, n, now.steady);
  }
  const bool text = q["format"] == "text";
  std::string body;
  if (text) {
    body = fmt::format("{} connections in the last {}", std::llround(report.total), window);
    if (others) body += fmt::format(" on {} nodes ({})", nodes.size(), fmt::join(nodes, ", "));
    body += fmt::format("\n{:<40} {:<7} {:>11} {:>7} {:>9}  {}\n", "client", "country",
                        "connections", "share", "refused", "block");
  } else {
    body = fmt::format("{{\"window\":\"{}\",\"total\":{},", window, std::llround(report.total));
    if (others) {
      body += "\"nodes\":[";
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        if (i) body += ',';
        body += json_string(nodes[i]);
      }
      body += "],";
    }
    body += "\"clients\":[";
  }
  for (std::size_t i = 0; i < report.rows.size(); ++i) {
    const auto& r = report.rows[i];
    const double share = report.total > 0 ? 100 * r.connections / report.total : 0;
    const auto block = state.blocks.find(r.address, now.unix);
    const std::string country = r.country ? std::string(r.country->code()) : "-";
    if (text) {
      body += fmt::format("{:<40} {:<7} {:>11} {:>6.1f}% {:>9}  {}\n", r.address.to_string(),
                          country, std::llround(r.connections), share, std::llround(r.refused),
                          block ? block->cidr.to_string() : "-");
      continue;
    }
    body += fmt::format(
        "{}{{\"address\":{},\"country\":{},\"connections\":{},\"share\":{:.4f},"
        "\"refused\":{},\"block\":{}}}",
        i ? "," : "", json_string(r.address.to_string()), json_string(country),
        std::llround(r.connections), share / 100, std::llround(r.refused),
        block ? json_string(block->cidr.to_string()) : "null");
  }
  if (!text) body += "]}\n";
  return {200, text ? text_plain : "application/json", body};
}

}  // namespace

Now Now::read() {
  return {unix_now(), std::chrono::steady_clock::now()};
}

Reply answer(const Request& request, ServerState& state, const Now& now) {
  const auto [method, target] = request;
  const auto rt = state.current();
  const auto& snap = rt->snapshot;
  const auto path = target.substr(0, target.find('?'));
  if (path != "/healthz" && path != "/readyz" && path != "/metrics" && path != "/status" &&
      path != "/reload" && path != "/blocks" && path != "/top")
    return {404, text_plain,
            "not found: try /healthz /readyz /metrics /status /blocks /top, or POST /reload\n"};
  if (path == "/reload") return {405, text_plain, "POST only\n", "POST"};
  if (path == "/blocks") return blocks_answer(method, target, state, now.unix);
  if (method != "GET" && method != "HEAD") return {405, text_plain, "GET only\n"};
  if (path == "/healthz") return {200, text_plain, "ok\n"};
  if (path == "/top") return top_answer(target, state, now);
  if (path == "/readyz") {
    const auto empty = empty_pools(*snap, *rt->view);
    std::string names;
    for (const auto& e : empty) {
      if (!names.empty()) names += ',';
      names += json_string(e);
    }
    if (empty.empty()) return {200, "application/json", "{\"ready\":true}\n"};
    return {503, "application/json",
            fmt::format("{{\"ready\":false,\"reason\":\"no member up\",\"pools\":[{}]}}\n", names)};
  }
  if (path == "/metrics")
    return {200, "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(*snap, state.health,
                                 {state.sessions.load(), state.slots.tarpitted(),
                                  state.fleet ? int(state.fleet->up()) : -1,
                                  state.local_grey ? state.local_grey->size() : std::nullopt,
                                  state.local_grey ? state.local_grey->write_errors() : 0})};
  return {200, "application/json", status_json(*rt, state)};
}

bool wants_fleet_top(const Request& request) {
  if (request.method != "GET" && request.method != "HEAD") return false;
  if (request.target.substr(0, request.target.find('?')) != "/top") return false;
  auto q = query_of(request.target);
  return q && (*q)["fleet"] == "1";
}

Reply fleet_top_answer(const Request& request, ServerState& state, const Now& now,
                       const std::optional<std::vector<state::FleetTop::NodeReport>>& others) {
  if (!others)
    return {503, text_plain,
            fmt::format("the store ({}) is down or did not answer: the fleet's top talkers are "
                        "not known (this node's: without fleet=1)\n",
                        state.fleet->address())};
  return top_answer(request.target, state, now, &*others);
}

}  // namespace geomx::admin
