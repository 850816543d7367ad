#include "daemon/server.hpp"

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "admin/server.hpp"
#include "daemon/token.hpp"
#include "daemon/watch.hpp"
#include "daemon/worker.hpp"
#include "proxy/clock.hpp"
#include "proxy/endpoint.hpp"

namespace geomx::daemon {

Server::Server(std::shared_ptr<const policy::Snapshot> snapshot, proxy::Log& log)
    : state_(std::move(snapshot), log) {
  const unsigned configured = state_.current()->snapshot->config.server.process.threads;
  const unsigned threads =
      configured != 0 ? configured : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) workers_.push_back(std::make_unique<Worker>());
  state_.metrics.config_loaded(1);
  state_.ban = [this](policy::Block b) { add_ban(std::move(b)); };
  // The last session of a drain wakes it (from whichever thread ended it).
  state_.sessions.on_idle = [this] {
    if (draining_.load()) asio::post(control_io_, [this] { drained_.cancel(); });
  };
}

Server::~Server() {
  admin_.reset();
  watch_.reset();
  for (auto& w : workers_) {
    w->io.stop();
    if (w->thread.joinable()) w->thread.join();
  }
  // Handlers still queued on an I/O thread end their sessions as they are
  // destroyed: that must not wake a drain on a control_io_ that is gone.
  state_.sessions.on_idle = nullptr;
  workers_.clear();
  state_.blocks.stop();  // the bans queued are kept; their log lines need this object
  // The writer (stopped above) tells the fleet of changes, and sessions ask
  // it for rates (none run now): it goes last.
  state_.fleet = nullptr;
  state_.cache = &state_.local_cache;
  state_.grey = local_grey_.get();
  fleet_grey_.reset();
  fleet_.reset();
  if (loader_) loader_->join();
}

tcp::endpoint Server::admin_endpoint() const {
  return admin_->endpoint();
}

// Bans are queued from the session's thread and judged and kept by the
// block list's writer (state/blocks.hpp), with whatever else came while
// it wrote: neither an I/O thread nor the control thread waits for a write.
void Server::add_ban(policy::Block b) {
  const auto max_bans = state_.current()->snapshot->config.server.max_bans;
  state_.blocks.ban(
      std::move(b), max_bans,
      [this, max_bans](const policy::Block& ban, const state::BlockList::BanOutcome& outcome) {
        ban_done(ban, outcome, max_bans);
      });
}

// On the writer thread: the log says what became of a ban.
void Server::ban_done(const policy::Block& b, const state::BlockList::BanOutcome& outcome,
                      std::size_t max_bans) {
  switch (outcome.verdict) {
    case policy::BanVerdict::covered:
      return;
    case policy::BanVerdict::over_max_bans: {
      const auto now = proxy::unix_now();
      auto last = ban_warned_.load();
      if (now >= last + 60 && ban_warned_.compare_exchange_strong(last, now))
        state_.log.event("warning", {{"problem", "ban not added: server.max_bans in force"},
                                     {"max_bans", std::to_string(max_bans)},
                                     {"cidr", b.cidr.to_string()}});
      return;
    }
    case policy::BanVerdict::add:
      break;
  }
  if (!outcome.error.empty()) {
    state_.log.event("warning", {{"problem", "ban not kept"}, {"error", outcome.error}});
    return;
  }
  state_.log.event("block", {{"action", "added"},
                             {"cidr", b.cidr.to_string()},
                             {"comment", b.comment},
                             {"for", fmt::format("{}s", b.expires.value_or(0) - b.created)},
                             {"origin", b.origin}});
}

std::vector<std::string> Server::load_blocks() {
  return state_.blocks.load(proxy::unix_now());
}

std::vector<std::string> Server::open_greylist() {
  const auto snap = state_.current()->snapshot;
  const auto& c = snap->config;
  const bool policy = std::any_of(c.listeners.begin(), c.listeners.end(), [](const auto& l) {
    return l.mode == conf::ListenerMode::policy;
  });
  if (!policy) return {};
  serves_policy_ = true;
  if (c.store.enabled) return {};  // the fleet's, in Redis (join_fleet)
  local_grey_ = std::make_unique<state::LocalGreyStore>(
      c.server.process.state_dir, c.greylist.max_records, [] { return proxy::unix_now(); });
  state_.local_grey = local_grey_.get();
  state_.grey = local_grey_.get();
  return local_grey_->problems();
}

void Server::set_admin_token(std::string token) {
  admin_->set_token(std::move(token));
}

std::size_t Server::blocks_in_force() const {
  return state_.blocks.current()->count("", proxy::unix_now());
}

Server::Sockets Server::open_listener(const conf::Listener& listener, tcp::endpoint& bound) {
  Sockets sockets;
  tcp::endpoint endpoint = proxy::to_asio(listener.address);
  for (auto& w : workers_) {
    auto socket = std::make_shared<proxy::ListeningSocket>(w->io, proxy::listener_key(listener));
    try {
      if (&w == &workers_.front()) proxy::check_port_free(endpoint, w->io);
      proxy::open_acceptor(socket->acceptor, endpoint, {.reuse_port = true, .v6_only = true});
    } catch (const boost::system::system_error& e) {
      throw std::system_error(
          e.code(), fmt::format("listener {} on {}", listener.name, listener.address.to_string()));
    }
    // Port 0: every thread binds the port the first one was given.
    endpoint = socket->acceptor.local_endpoint();
    sockets.push_back(std::move(socket));
  }
  bound = endpoint;
  return sockets;
}

asio::awaitable<void> Server::on_every_worker(std::function<void(Worker&)> fn,
                                              asio::steady_timer& done) {
  auto left = std::make_shared<std::atomic<std::size_t>>(workers_.size());
  for (auto& w : workers_)
    asio::post(w->io, [this, &w = *w, fn, &done, left] {
      fn(w);
      if (left->fetch_sub(1) == 1) asio::post(control_io_, [&done] { done.cancel(); });
    });
  co_await done.async_wait(proxy::nothrow);
}

void Server::bind() {
  const auto snap = state_.current()->snapshot;
  admin_ = std::make_unique<admin::AdminServer>(control_io_, state_);
  admin_->bind(snap->config.admin.listen, snap->config.admin.tls_cert, snap->config.admin.tls_key);
  if (!snap->config.admin.socket.empty())
    admin_->bind_socket(snap->config.admin.socket, geteuid() == 0
                                                       ? admin_group(snap->config.server.process)
                                                       : static_cast<gid_t>(-1));
  for (const auto& listener : snap->config.listeners) {
    tcp::endpoint bound;
    auto sockets = open_listener(listener, bound);
    for (std::size_t i = 0; i < workers_.size(); ++i)
      workers_[i]->listening.push_back(std::move(sockets[i]));
    endpoints_.push_back(bound);
    bound_[proxy::listener_key(listener)] = bound;
  }
}

void Server::run() {
  loader_.emplace(1);
  for (auto& w : workers_) {
    for (auto& l : w->listening)
      asio::co_spawn(w->io, proxy::serve_listener(l, state_, w->sessions), asio::detached);
    w->thread = std::thread([this, &io = w->io] {
      // A handler that throws (out of memory) must not take the process down.
      for (;;) {
        try {
          io.run();
          return;
        } catch (const std::exception& e) {
          state_.log.event("worker_error", {{"error", e.what()}});
        }
      }
    });
  }
  const auto runtime = state_.current();
  update_probers(*runtime);  // health probes run on the control thread
  update_watch(*runtime->snapshot);
  admin_->set_reloader([this] { return reload("admin", true); });
  admin_->start();
  if (fleet_) fleet_->start();
  asio::co_spawn(control_io_, hangups(), asio::detached);
  asio::co_spawn(control_io_, suppressed_lines(), asio::detached);
  // systemd: Type=notify and WatchdogSec= (nothing happens without systemd).
  std::uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0)
    asio::co_spawn(control_io_, watchdog(std::chrono::microseconds(watchdog_usec / 2)),
                   asio::detached);
  sd_notify(0, "READY=1\nSTATUS=serving");
  asio::co_spawn(control_io_, control(), asio::detached);
  for (;;) {  // as the I/O threads: a handler that throws must not end the process
    try {
      control_io_.run();
      break;
    } catch (const std::exception& e) {
      state_.log.event("worker_error", {{"error", e.what()}});
    }
  }
  for (auto& w : workers_) w->thread.join();
}

void Server::stop() {
  if (stop_requested_.exchange(true)) return;
  asio::post(control_io_, [this] { signals_.cancel(); });
}

}  // namespace geomx::daemon
