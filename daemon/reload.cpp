// Reload: build the next snapshot on the loader thread, open the listeners
// it adds and close the ones it removes, then swap the runtime whole. A
// failure at any step changes nothing.
#include <systemd/sd-daemon.h>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "daemon/load.hpp"
#include "daemon/server.hpp"
#include "daemon/worker.hpp"
#include "proxy/clock.hpp"
#include "proxy/endpoint.hpp"

namespace geomx::daemon {
namespace {

using proxy::nothrow;

// A coroutine function, not a lambda: its arguments are copied into its
// frame, which then runs and ends on the loader thread.
asio::awaitable<Loaded> build_on_loader(std::string path, std::optional<conf::Config> running) {
  co_return build_next(path, running);
}

std::string describe_bind_error(const std::system_error& e) {
  std::string out = e.what();
  if (e.code() == std::errc::address_in_use)
    out +=
        " (if a listener this reload removes holds it, remove that one first and add this one in "
        "the next reload, or restart)";
  if (e.code() == std::errc::permission_denied)
    out +=
        " (geomx gave up the right to bind ports below 1024 after start: restart it to add this "
        "listener)";
  return out;
}

}  // namespace

// Waits while another reload is under way: each one's end cancels the
// waits (the timer never expires, and setting its expiry again would cancel
// the other waiters').
asio::awaitable<void> Server::one_reload_at_a_time() {
  while (reloading_ && !stopping_) co_await reload_done_.async_wait(nothrow);
}

asio::awaitable<ReloadOutcome> Server::reload(std::string trigger, bool reread_config) {
  // Requests to re-read the config that waited for the same reload share
  // its outcome: it read the files after they asked.
  const auto ticket = reread_config ? ++reread_asked_ : 0;
  co_await one_reload_at_a_time();
  if (reread_config && reread_done_ >= ticket && !stopping_) co_return last_reread_;
  const auto covers = reread_asked_;
  ReloadOutcome out;
  const auto old = state_.current();
  out.generation = old->generation;
  if (stopping_) {
    out.errors.push_back("geomx is stopping");
    co_return out;
  }
  reloading_ = true;
  struct Done {
    Server& s;
    ~Done() {
      s.reloading_ = false;
      s.reload_done_.cancel();  // the next one's turn
    }
  } done{*this};
  sd_notify(0, "RELOADING=1\nSTATUS=reloading");
  const auto started = std::chrono::steady_clock::now();
  Loaded loaded;
  try {
    std::optional<conf::Config> running;
    if (!reread_config) running = old->snapshot->config;
    loaded = co_await asio::co_spawn(
        *loader_, build_on_loader(old->snapshot->config.path, std::move(running)),
        asio::use_awaitable);
  } catch (const std::exception& e) {
    loaded.errors.push_back({{old->snapshot->config.path, 0, 0}, "reload", e.what()});
  }
  for (const auto& d : loaded.errors) out.errors.push_back(d.to_string());
  if (loaded.snapshot && !stopping_) {
    auto next = std::make_shared<const proxy::Runtime>(loaded.snapshot, state_.health,
                                                       state_.limit_tables, old->generation + 1);
    out.warnings = conf::restart_changes(old->snapshot->config, loaded.snapshot->config);
    if (auto problem = co_await switch_to(next); !problem.empty()) {
      out.errors.push_back(std::move(problem));
    } else {
      out.ok = true;
      out.generation = next->generation;
    }
  } else if (stopping_ && out.errors.empty()) {
    out.errors.push_back("geomx is stopping");
  }
  // The state file could not be read at start: the operator may have fixed it.
  if (auto problems = state_.blocks.load_if_refused(proxy::unix_now())) {
    for (const auto& p : *problems) state_.log.event("warning", {{"problem", p}});
    if (problems->empty())
      state_.log.event("blocks",
                       {{"in_force", std::to_string(blocks_in_force())}, {"file", blocks_file()}});
  }
  log_reload(out, trigger,
             std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now() - started));
  if (!stopping_) sd_notify(0, "READY=1\nSTATUS=serving");
  if (reread_config) {
    reread_done_ = covers;
    last_reread_ = out;
  }
  co_return out;
}

// Counts and logs the outcome; a success also starts what follows the
// config (probers, the watch).
void Server::log_reload(const ReloadOutcome& out, const std::string& trigger,
                        std::chrono::milliseconds took) {
  state_.metrics.reloaded(out.ok);
  for (const auto& e : out.errors) state_.log.event("reload_error", {{"error", e}});
  for (const auto& w : out.warnings) state_.log.event("warning", {{"problem", w}});
  if (!out.ok || stopping_) {
    state_.log.event("reload", {{"trigger", trigger},
                                {"result", "failure"},
                                {"errors", std::to_string(out.errors.size())},
                                {"generation", std::to_string(out.generation)},
                                {"action", "the running config stays"}});
    return;
  }
  const auto now = state_.current();
  state_.metrics.config_loaded(out.generation);
  update_probers(*now);
  update_watch(*now->snapshot);
  const auto& snap = *now->snapshot;
  state_.log.event(
      "reload", {{"trigger", trigger},
                 {"result", "success"},
                 {"generation", std::to_string(out.generation)},
                 {"took", fmt::format("{}ms", took.count())},
                 {"rules", std::to_string(snap.config.rules.size())},
                 {"pools", std::to_string(snap.config.pools.size())},
                 {"ipv4_intervals", std::to_string(snap.table.interval_count(geo::Family::v4))},
                 {"ipv6_intervals", std::to_string(snap.table.interval_count(geo::Family::v6))}});
}

asio::awaitable<std::string> Server::switch_to(std::shared_ptr<const proxy::Runtime> next) {
  const auto& listeners = next->snapshot->config.listeners;
  // Open what is new first: if that fails, nothing has changed.
  std::vector<std::pair<std::size_t, Sockets>> added;
  std::map<std::string, tcp::endpoint> bound;
  auto close_added = [&added] {
    boost::system::error_code ignored;
    for (auto& [index, sockets] : added)
      for (auto& s : sockets) s->acceptor.close(ignored);
  };
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    const auto& key = next->listener_keys[i];
    if (const auto it = bound_.find(key); it != bound_.end()) {
      bound[key] = it->second;
      continue;
    }
    try {
      tcp::endpoint at;
      added.emplace_back(i, open_listener(listeners[i], at));
      bound[key] = at;
    } catch (const std::system_error& e) {
      close_added();
      co_return describe_bind_error(e);
    }
  }
  // Close what went away, on every thread, before the swap: a session is
  // only ever accepted on a listener its runtime has.
  std::set<std::string> removed;
  for (const auto& [key, at] : bound_)
    if (!bound.count(key)) removed.insert(key);
  if (!removed.empty()) {
    // Named, not a temporary in the co_await: g++ 12 destroys such
    // temporaries twice.
    const std::function<void(Worker&)> close_removed = [&removed](Worker& w) {
      boost::system::error_code ignored;
      std::erase_if(w.listening, [&](const auto& l) {
        if (!removed.count(l->key)) return false;
        l->acceptor.close(ignored);
        return true;
      });
    };
    // Every thread answers before this resumes (no deadline): `removed`
    // outlives the calls that read it.
    asio::steady_timer done(control_io_, asio::steady_timer::time_point::max());
    co_await on_every_worker(close_removed, done);
    if (stopping_) {  // the drain began while we waited: it closes everything
      close_added();
      co_return "geomx is stopping";
    }
    for (const auto& key : removed)
      state_.log.event("listener_closed",
                       {{"listener", key}, {"address", proxy::from_asio(bound_[key]).to_string()}});
  }
  state_.runtime.store(next);
  bound_ = std::move(bound);
  for (auto& [index, sockets] : added) {
    start_accepting(sockets);
    state_.log.listening(listeners[index], proxy::from_asio(bound_[next->listener_keys[index]]));
  }
  co_return std::string();
}

void Server::start_accepting(const Sockets& sockets) {
  for (std::size_t i = 0; i < workers_.size(); ++i)
    asio::post(workers_[i]->io, [this, &w = *workers_[i], s = sockets[i]] {
      w.listening.push_back(s);
      asio::co_spawn(w.io, proxy::serve_listener(s, state_, w.sessions), asio::detached);
    });
}

}  // namespace geomx::daemon
