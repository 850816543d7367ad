#include "proxy/server.hpp"
#include "proxy/admin.hpp"
#include "proxy/endpoint.hpp"

#include <systemd/sd-daemon.h>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace geomx::proxy {
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

asio::awaitable<void> accept_loop(Acceptor& acceptor, std::size_t listener, ServerState& state,
                                  SessionRegistry& registry) {
  try {
    for (;;) {
      tcp::endpoint peer;
      auto [ec, socket] = co_await acceptor.async_accept(peer, nothrow);
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
      if (ec) {
        // Out of descriptors and the like: say so, and do not spin.
        state.log.event("accept_error", {{"error", ec.message()}});
        asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
        co_await pause.async_wait(nothrow);
        continue;
      }
      asio::co_spawn(acceptor.get_executor(),
                     run_session(std::move(socket), peer, listener, state, registry),
                     asio::detached);
    }
  } catch (const std::exception& e) {
    // A listening socket nobody accepts on would strand its share of the
    // SO_REUSEPORT connections: close it, the other threads carry on.
    state.log.event("accept_error", {{"error", e.what()}, {"action", "acceptor closed"}});
    boost::system::error_code ignored;
    acceptor.close(ignored);
  }
}

// SO_REUSEPORT would let a second geomx bind the same port and silently take
// half its connections: bind once without it to find out.
void check_port_free(const tcp::endpoint& endpoint, asio::io_context& io) {
  if (endpoint.port() == 0) return;
  tcp::acceptor probe(io);
  probe.open(endpoint.protocol());
  probe.set_option(tcp::acceptor::reuse_address(true));
  if (endpoint.address().is_v6()) probe.set_option(asio::ip::v6_only(true));
  probe.bind(endpoint);  // throws address_in_use when someone listens there
}

}  // namespace

SessionRegistry::Handle SessionRegistry::add(Member& m, const asio::any_io_executor& executor) {
  const auto handle = members_.insert(members_.end(), &m);  // before the sweep looks
  if (!sweeping_) {
    sweeping_ = true;
    asio::co_spawn(executor, sweep(), asio::detached);
  }
  return handle;
}

void SessionRegistry::close_all() {
  for (auto* m : members_) m->shut_down();
}

// Runs while there are sessions, so an idle worker has no timer pending (and
// its io_context runs out of work at the end of a drain).
asio::awaitable<void> SessionRegistry::sweep() {
  asio::steady_timer tick(co_await asio::this_coro::executor);
  while (!members_.empty()) {
    tick.expires_after(sweep_interval);
    co_await tick.async_wait(nothrow);
    const auto now = Clock::now();
    for (auto it = members_.begin(); it != members_.end();) (*it++)->check_idle(now);
  }
  sweeping_ = false;
}

struct Server::Worker {
  SessionRegistry sessions;  // outlives io: destroying io's handlers unregisters relays
  asio::io_context io{1};
  std::vector<Acceptor> acceptors;
  std::thread thread;
};

Server::Server(std::shared_ptr<const policy::Snapshot> snapshot, Log& log)
    : state_(std::move(snapshot), log) {
  const auto& server = state_.snapshot.load()->config.server;
  const unsigned threads =
      server.threads != 0 ? server.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) workers_.push_back(std::make_unique<Worker>());
  state_.metrics.config_loaded(1);
}

Server::~Server() {
  admin_.reset();
  for (auto& w : workers_) {
    w->io.stop();
    if (w->thread.joinable()) w->thread.join();
  }
}

tcp::endpoint Server::admin_endpoint() const {
  return admin_->endpoint();
}

void Server::bind() {
  const auto snap = state_.snapshot.load();
  admin_ = std::make_unique<AdminServer>(control_io_, state_);
  admin_->bind(snap->config.admin.listen, snap->config.admin.tls_cert, snap->config.admin.tls_key);
  for (const auto& listener : snap->config.listeners) {
    tcp::endpoint endpoint = to_asio(listener.address);
    for (auto& w : workers_) {
      Acceptor a(w->io);
      try {
        if (&w == &workers_.front()) check_port_free(endpoint, w->io);
        a.open(endpoint.protocol());
        a.set_option(tcp::acceptor::reuse_address(true));
        a.set_option(reuse_port(true));
        if (endpoint.address().is_v6()) a.set_option(asio::ip::v6_only(true));
        a.bind(endpoint);
        a.listen(asio::socket_base::max_listen_connections);
      } catch (const boost::system::system_error& e) {
        throw std::system_error(e.code(), fmt::format("listener {} on {}", listener.name,
                                                      listener.address.to_string()));
      }
      // Port 0: every thread binds the port the first one was given.
      endpoint = a.local_endpoint();
      w->acceptors.push_back(std::move(a));
    }
    endpoints_.push_back(endpoint);
  }
}

void Server::run() {
  for (auto& w : workers_) {
    for (std::size_t i = 0; i < w->acceptors.size(); ++i)
      asio::co_spawn(w->io, accept_loop(w->acceptors[i], i, state_, w->sessions), asio::detached);
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
  // Health probes run on the control thread: every member of every pool.
  const auto snap = state_.snapshot.load();
  for (std::size_t p = 0; p < snap->config.pools.size(); ++p)
    for (std::size_t m = 0; m < snap->config.pools[p].members.size(); ++m) {
      auto& prober = probers_.emplace_back(control_io_);
      asio::co_spawn(control_io_, health_loop(p, m, prober.tick),
                     asio::bind_cancellation_slot(prober.stop.slot(), asio::detached));
    }
  admin_->start();
  asio::co_spawn(control_io_, hangups(), asio::detached);
  // systemd: Type=notify and WatchdogSec= (nothing happens without systemd).
  std::uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0)
    asio::co_spawn(control_io_, watchdog(std::chrono::microseconds(watchdog_usec / 2)),
                   asio::detached);
  sd_notify(0, "READY=1\nSTATUS=serving");
  asio::co_spawn(control_io_, control(), asio::detached);
  control_io_.run();
  for (auto& w : workers_) w->thread.join();
}

void Server::stop() {
  if (stop_requested_.exchange(true)) return;
  asio::post(control_io_, [this] { signals_.cancel(); });
}

asio::awaitable<void> Server::health_loop(std::size_t p, std::size_t m, asio::steady_timer& tick) {
  const auto snap = state_.snapshot.load();
  const conf::Pool& pool = snap->config.pools[p];
  const auto record = state_.view->at(p, m);
  while (probing_) {
    try {
      const auto result = co_await probe_member(pool, pool.members[m]);
      if (!probing_) break;
      state_.health.probed(*record, pool.health, result);
    } catch (const std::exception& e) {  // the member must not stay unprobed
      if (!probing_) break;
      state_.log.event("health_error", {{"pool", pool.name}, {"error", e.what()}});
    }
    tick.expires_after(pool.health.interval);
    co_await tick.async_wait(nothrow);
  }
}

asio::awaitable<void> Server::hangups() {
  for (;;) {
    auto [ec, signal] = co_await hangup_.async_wait(nothrow);
    if (ec) co_return;
    state_.log.event("reload", {{"result",
                                 "not available in this version: the running config "
                                 "stays; restart geomx to apply a new one"}});
  }
}

// Tells systemd we are alive only if every I/O thread ran a posted handler
// since the last time: a stuck worker stops the pings and systemd restarts us.
asio::awaitable<void> Server::watchdog(std::chrono::microseconds every) {
  std::vector<std::shared_ptr<std::atomic<bool>>> answered;
  for (std::size_t i = 0; i < workers_.size(); ++i)
    answered.push_back(std::make_shared<std::atomic<bool>>(true));
  while (!stop_requested_ && !stopping_) {
    bool all = true;
    for (auto& a : answered) all &= a->exchange(false);
    if (all) sd_notify(0, "WATCHDOG=1");
    for (std::size_t i = 0; i < workers_.size(); ++i)
      asio::post(workers_[i]->io, [a = answered[i]] { a->store(true); });
    watchdog_.expires_after(every);
    co_await watchdog_.async_wait(nothrow);
  }
}

asio::awaitable<void> Server::control() {
  // A signal, or stop() cancelling the wait, starts the drain.
  int signal = 0;
  if (!stop_requested_) std::tie(std::ignore, signal) = co_await signals_.async_wait(nothrow);
  const auto drain = state_.snapshot.load()->config.server.drain_timeout;
  stopping_ = true;
  sd_notify(0, "STOPPING=1");
  hangup_.cancel();
  watchdog_.cancel();
  probing_ = false;
  for (auto& prober : probers_) {
    prober.tick.cancel();
    prober.stop.emit(asio::cancellation_type::terminal);  // and any probe under way
  }
  state_.log.event("stop", {{"signal", signal ? std::to_string(signal) : "none"},
                            {"sessions", std::to_string(state_.sessions.load())},
                            {"drain_timeout", conf::format_duration(drain)}});
  // A second signal ends the drain at once.
  asio::co_spawn(
      control_io_,
      [this]() -> asio::awaitable<void> {
        auto [ec, second] = co_await signals_.async_wait(nothrow);
        if (!ec) force_drain_ = true;
      },
      asio::detached);
  // Close every acceptor, and know that it is closed before counting the
  // sessions: one accepted meanwhile is then counted too.
  for (auto& w : workers_)
    asio::post(w->io, [this, &w] {
      boost::system::error_code ignored;
      for (auto& a : w->acceptors) a.close(ignored);
      acceptors_closed_.fetch_add(1);
    });
  asio::steady_timer tick(control_io_);
  const auto deadline = std::chrono::steady_clock::now() + drain;
  while ((acceptors_closed_.load() < workers_.size() || state_.sessions.load() > 0) &&
         !force_drain_ && std::chrono::steady_clock::now() < deadline) {
    tick.expires_after(std::chrono::milliseconds(20));
    co_await tick.async_wait(nothrow);
  }
  const auto left = state_.sessions.load();
  if (left > 0)
    for (auto& w : workers_) asio::post(w->io, [&w] { w->sessions.close_all(); });
  state_.log.event("stopped", {{"closed_at_deadline", std::to_string(left)}});
  admin_->stop();     // answers through the drain, then goes
  signals_.cancel();  // ends the second-signal wait, so control_io_ runs out of work
  // Each worker's io_context runs out of work once its sessions are gone.
}

}  // namespace geomx::proxy
