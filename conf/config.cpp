#include "conf/config.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace geomx::conf {

std::string Endpoint::to_string() const {
  if (address.is_v4()) return fmt::format("{}:{}", address.to_string(), port);
  return fmt::format("[{}]:{}", address.to_string(), port);
}

std::string_view to_string(LogFormat v) {
  return v == LogFormat::logfmt ? "logfmt" : "json";
}

std::string_view to_string(ProxyProtocol v) {
  switch (v) {
    case ProxyProtocol::none:
      return "none";
    case ProxyProtocol::v1:
      return "v1";
    case ProxyProtocol::v2:
      return "v2";
    case ProxyProtocol::any:
      return "any";
    case ProxyProtocol::xclient:
      return "xclient";
  }
  return "?";
}

std::string_view to_string(Action v) {
  switch (v) {
    case Action::route:
      return "route";
    case Action::reject:
      return "reject";
    case Action::drop:
      return "drop";
    case Action::tarpit:
      return "tarpit";
    case Action::pass:
      return "pass";
  }
  return "?";
}

std::string_view to_string(ListenerMode v) {
  switch (v) {
    case ListenerMode::mx:
      return "mx";
    case ListenerMode::transparent:
      return "transparent";
    case ListenerMode::policy:
      return "policy";
  }
  return "?";
}

std::string_view to_string(Balance v) {
  switch (v) {
    case Balance::source_split:
      return "source-split";
    case Balance::hash:
      return "hash";
    case Balance::round_robin:
      return "round-robin";
    case Balance::least_conn:
      return "least-conn";
    case Balance::first:
      return "first";
  }
  return "?";
}

std::string_view to_string(ScreenMode v) {
  return v == ScreenMode::smtp ? "smtp" : "none";
}

std::string_view to_string(ScreenTest v) {
  switch (v) {
    case ScreenTest::pipelining:
      return "pipelining";
    case ScreenTest::non_smtp:
      return "non_smtp";
    case ScreenTest::bare_newline:
      return "bare_newline";
    case ScreenTest::no_helo:
      return "no_helo";
    case ScreenTest::long_line:
      return "long_line";
    case ScreenTest::too_many_commands:
      return "too_many_commands";
  }
  return "?";
}

std::string_view to_string(ScreenAction v) {
  switch (v) {
    case ScreenAction::drop:
      return "drop";
    case ScreenAction::reject:
      return "reject";
    case ScreenAction::log:
      return "log";
  }
  return "?";
}

std::string_view to_string(Pregreet v) {
  switch (v) {
    case Pregreet::drop:
      return "drop";
    case Pregreet::reject:
      return "reject";
    case Pregreet::log:
      return "log";
  }
  return "?";
}

std::string_view to_string(Probe v) {
  return v == Probe::smtp ? "smtp" : "tcp";
}

std::string_view to_string(LimitAction v) {
  return v == LimitAction::tempfail ? "tempfail" : v == LimitAction::tarpit ? "tarpit" : "ban";
}

const Pool* Config::find_pool(std::string_view name) const {
  auto it = std::find_if(pools.begin(), pools.end(), [&](const Pool& p) { return p.name == name; });
  return it == pools.end() ? nullptr : &*it;
}

const List* Config::find_list(std::string_view name) const {
  auto it = std::find_if(lists.begin(), lists.end(), [&](const List& l) { return l.name == name; });
  return it == lists.end() ? nullptr : &*it;
}

}  // namespace geomx::conf

namespace geomx::conf {

std::vector<std::string> restart_changes(const Config& was, const Config& now) {
  std::vector<std::string> out;
  // The greylist store opens at start, when there is a policy listener.
  const auto serves = [](const Config& c) {
    return std::any_of(c.listeners.begin(), c.listeners.end(),
                       [](const Listener& l) { return l.mode == ListenerMode::policy; });
  };
  if (serves(now) && !serves(was))
    out.push_back(
        "a policy listener was added: its greylist store opens at the next restart (until then "
        "it greylists nothing)");
  if (serves(now) && serves(was) && was.greylist.max_records != now.greylist.max_records)
    out.push_back("greylist.max_records changed: takes effect at the next restart");
  const Process &a = was.server.process, &b = now.server.process;
  if (a == b && was.admin == now.admin && was.store == now.store) return out;
  auto say = [&](bool same, std::string_view what) {
    if (!same) out.push_back(fmt::format("{} changed: takes effect at the next restart", what));
  };
  say(a.threads == b.threads, "server.threads");
  say(a.user == b.user && a.group == b.group && a.allow_root == b.allow_root,
      "server.user/group/allow_root");
  say(a.log_format == b.log_format, "server.log_format");
  say(a.state_dir == b.state_dir, "server.state_dir");
  say(a.refusal_log_sample == b.refusal_log_sample && a.refusal_log_limit == b.refusal_log_limit,
      "server.refusal_log_sample/limit");
  if (a != b && out.empty())  // a setting added to Process without a name above
    say(false, "a restart-only [server] setting");
  say(was.admin == now.admin, "admin");
  say(was.store == now.store, "store");
  return out;
}

}  // namespace geomx::conf
