#include "daemon/fleet.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "conf/text.hpp"
#include "daemon/server.hpp"
#include "geo/sources.hpp"
#include "proxy/clock.hpp"

namespace geomx::daemon {

StoreCredentials read_credentials(const std::string& file, std::string_view setting) {
  StoreCredentials out;
  if (file.empty()) return out;
  std::string text;
  try {
    text = geo::read_input_file(file, 4096);
  } catch (const std::exception& e) {
    out.problem = fmt::format("{}: {}", setting, e.what());
    return out;
  }
  std::string_view line(text);
  line = line.substr(0, line.find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  if (line.empty() || !conf::printable_line(line)) {
    out.problem =
        fmt::format("{} {}: its first line must be the password (or user:password)", setting, file);
    return out;
  }
  if (const auto colon = line.find(':'); colon != std::string_view::npos && colon > 0) {
    out.user = std::string(line.substr(0, colon));
    out.password = std::string(line.substr(colon + 1));
  } else {
    out.password = std::string(line);
  }
  return out;
}

state::RedisOptions redis_options(const conf::Store& store, const StoreCredentials& credentials) {
  state::RedisOptions o;
  if (store.redis_unix.empty()) {
    o.host = store.redis.address.to_string();
    o.port = store.redis.port;
  } else {
    o.unix_path = store.redis_unix;
  }
  o.user = credentials.user;
  o.password = credentials.password;
  o.db = store.db;
  return o;
}

std::vector<std::string> store_warnings(const conf::Store& store) {
  std::vector<std::string> out;
  if (!store.enabled) return out;
  if (store.exposed())
    out.push_back(fmt::format(
        "store.redis {} is not on this host: hiredis 0.14 has no TLS, so the password and the "
        "fleet's state cross the network in the clear (keep Redis on loopback or a private "
        "network, or behind stunnel)",
        store.where()));
  for (const auto& [setting, file] :
       {std::pair{"store.password_file", &store.password_file},
        std::pair{"store.sentinel_password_file", &store.sentinel_password_file}}) {
    if (file->empty()) continue;
    struct stat st {};
    if (::stat(file->c_str(), &st) != 0)
      out.push_back(fmt::format("{} {}: {}", setting, *file, std::strerror(errno)));
    else if (st.st_mode & S_IROTH)
      out.push_back(fmt::format("{} {} is readable by every user (chmod 0640)", setting, *file));
  }
  return out;
}

std::vector<std::string> Server::join_fleet() {
  const conf::Store& store = state_.current()->snapshot->config.store;
  if (!store.enabled) return {};
  auto warnings = store_warnings(store);
  const auto credentials = store_credentials(store);
  // Serves anyway (from this node's state), and says why, once.
  if (!credentials.problem.empty())
    warnings.push_back(credentials.problem + "; connecting without AUTH");
  const auto sentinel_auth = sentinel_credentials(store);
  if (!sentinel_auth.problem.empty())
    warnings.push_back(sentinel_auth.problem + "; asking the sentinels without AUTH");
  state::FleetOptions options;
  options.redis = redis_options(store, credentials);
  options.key_prefix = store.key_prefix;
  options.node = store.node;
  for (const auto& e : store.sentinels) {
    state::RedisOptions sentinel;  // no database: a sentinel has none
    sentinel.host = e.address.to_string();
    sentinel.port = e.port;
    sentinel.user = sentinel_auth.user;
    sentinel.password = sentinel_auth.password;
    options.sentinels.push_back(std::move(sentinel));
  }
  options.master = store.master;
  if (!store.sentinels.empty()) options.redis.host.clear();  // located
  fleet_ = std::make_unique<state::Fleet>(control_io_, std::move(options), state_.blocks,
                                          state_.local_cache, [] { return proxy::unix_now(); });
  fleet_->on_state = [this](bool up, const std::string& why) {
    const auto& o = fleet_->options();
    if (up)
      state_.log.event("store", {{"state", "up"}, {"redis", fleet_->address()}, {"node", o.node}});
    else
      state_.log.event("store", {{"state", "down"},
                                 {"redis", fleet_->address()},
                                 {"node", o.node},
                                 {"problem", why},
                                 {"serving", "from this node's state"}});
  };
  fleet_->on_warning = [this](std::string m) { state_.log.event("warning", {{"problem", m}}); };
  fleet_->top_source = [this](std::chrono::minutes window) {
    return state_.top.top(window, state::FleetTop::rows, policy::TopTalkers::Clock::now());
  };
  state_.fleet = fleet_.get();
  state_.cache = &fleet_->cache();
  if (serves_policy_) {  // the fleet's triplets: a retry on another MX is recognised
    fleet_grey_ =
        std::make_unique<state::CacheGreyStore>(fleet_->cache(), "redis " + store.where());
    state_.grey = fleet_grey_.get();
  }
  return warnings;
}

}  // namespace geomx::daemon
