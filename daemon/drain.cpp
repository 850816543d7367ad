// Signals, the drain, the systemd watchdog and the refusal log's
// "suppressed" lines: the control thread's long-lived loops.
#include <systemd/sd-daemon.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "admin/server.hpp"
#include "daemon/server.hpp"
#include "daemon/watch.hpp"
#include "daemon/worker.hpp"

namespace geomx::daemon {

using proxy::nothrow;

asio::awaitable<void> Server::hangups() {
  for (;;) {
    auto [ec, signal] = co_await hangup_.async_wait(nothrow);
    if (ec || stopping_) co_return;  // the drain began: wait for no more
    // Not awaited here: the SIGHUPs that come during a reload wait together,
    // and one more reload serves them all (as POST /reload does).
    asio::co_spawn(control_io_, reload("sighup", true), asio::detached);
  }
}

// The refusal log's sampling: one line per client whose lines were
// suppressed in a minute that is over, and one for the overall cap.
asio::awaitable<void> Server::suppressed_lines() {
  while (!stopping_) {
    suppressed_.expires_after(std::chrono::seconds(10));
    co_await suppressed_.async_wait(nothrow);
    const auto now = policy::TopTalkers::Clock::now();
    for (const auto& [client, count] : state_.top.take_suppressed(now))
      state_.log.event("suppressed", {{"client", client.to_string()},
                                      {"refused", std::to_string(count)},
                                      {"why", "more than server.refusal_log_sample in a minute"}});
    if (const auto all = state_.top.take_suppressed_all(now))
      state_.log.event("suppressed", {{"client", "all"},
                                      {"refused", std::to_string(all)},
                                      {"why", "more than server.refusal_log_limit in a minute"}});
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

// Until the deadline, a second signal, or no session is left. Each wake-up
// (the last session ending, the second signal) cancels the wait; nothing
// polls.
asio::awaitable<void> Server::drain(std::chrono::steady_clock::time_point deadline) {
  draining_ = true;  // from here on the last session to end wakes us
  while (state_.sessions.load() > 0 && !force_drain_ &&
         std::chrono::steady_clock::now() < deadline) {
    drained_.expires_at(deadline);
    co_await drained_.async_wait(nothrow);
  }
}

asio::awaitable<void> Server::control() {
  // A signal, or stop() cancelling the wait, starts the drain.
  int signal = 0;
  if (!stop_requested_) std::tie(std::ignore, signal) = co_await signals_.async_wait(nothrow);
  const auto drain_timeout = state_.current()->snapshot->config.server.drain_timeout;
  const auto deadline = std::chrono::steady_clock::now() + drain_timeout;
  stopping_ = true;
  sd_notify(0, "STOPPING=1");
  hangup_.cancel();
  watchdog_.cancel();
  suppressed_.cancel();
  settle_.cancel();
  reload_done_.cancel();  // reloads waiting their turn see the stop
  if (watch_) watch_->stop();
  probing_ = false;
  for (auto& [key, prober] : probers_) {
    prober->tick.cancel();
    prober->stop.emit(asio::cancellation_type::terminal);  // and any probe under way
  }
  state_.log.event("stop", {{"signal", signal ? std::to_string(signal) : "none"},
                            {"sessions", std::to_string(state_.sessions.load())},
                            {"drain_timeout", conf::format_duration(drain_timeout)}});
  // A second signal ends the drain at once.
  asio::co_spawn(
      control_io_,
      [this]() -> asio::awaitable<void> {
        auto [ec, second] = co_await signals_.async_wait(nothrow);
        if (ec) co_return;
        force_drain_ = true;
        drained_.cancel();
      },
      asio::detached);
  // Close every acceptor, and know that it is closed before counting the
  // sessions: one accepted meanwhile is then counted too.
  const std::function<void(Worker&)> close_acceptors = [](Worker& w) {
    boost::system::error_code ignored;
    for (auto& l : w.listening) l->acceptor.close(ignored);
    w.sessions.drain_all();
    w.busy.reset();
  };
  drained_.expires_at(deadline);                        // a second signal cancels it
  co_await on_every_worker(close_acceptors, drained_);  // a named function: see switch_to
  co_await drain(deadline);
  const auto left = state_.sessions.load();
  if (left > 0)
    for (auto& w : workers_) asio::post(w->io, [&w] { w->sessions.close_all(); });
  state_.log.event("stopped", {{"closed_at_deadline", std::to_string(left)}});
  admin_->stop();              // answers through the drain, then goes
  if (fleet_) fleet_->stop();  // likewise: bans made in the drain reach the fleet
  signals_.cancel();           // ends the second-signal wait, so control_io_ runs out of work
  // Each worker's io_context runs out of work once its sessions are gone.
}

}  // namespace geomx::daemon
