#include "proxy/registry.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

namespace geomx::proxy {

SessionRegistry::Handle SessionRegistry::add(Live& s, const asio::any_io_executor& executor) {
  const auto handle = live_.insert(live_.end(), &s);  // before the sweep looks
  if (!sweeping_) {
    sweeping_ = true;
    asio::co_spawn(executor, sweep(), asio::detached);
  }
  return handle;
}

void SessionRegistry::drain_all() {
  for (auto it = live_.begin(); it != live_.end();) (*it++)->drain();  // one may leave the list
}

void SessionRegistry::close_all() {
  for (auto* s : live_) s->shut_down();
}

// Runs while there are sessions, so an idle worker has no timer pending (and
// its io_context runs out of work at the end of a drain).
asio::awaitable<void> SessionRegistry::sweep() {
  asio::steady_timer tick(co_await asio::this_coro::executor);
  while (!live_.empty()) {
    tick.expires_after(sweep_interval);
    co_await tick.async_wait(nothrow);
    const auto now = Clock::now();
    for (auto it = live_.begin(); it != live_.end();) (*it++)->check_idle(now);
  }
  sweeping_ = false;
}

}  // namespace geomx::proxy
