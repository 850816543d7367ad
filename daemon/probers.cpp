// Health probes: one loop per (pool, member) of the running config, on the
// control thread; a reload starts and stops loops as members come and go.
#include <algorithm>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>

#include "daemon/probe.hpp"
#include "daemon/server.hpp"

namespace geomx::daemon {

using proxy::nothrow;

void Server::update_probers(const proxy::Runtime& runtime) {
  std::set<MemberKey> wanted;
  for (const auto& pool : runtime.snapshot->config.pools)
    for (const auto& m : pool.members) wanted.insert({pool.name, m.address.to_string()});
  for (auto it = probers_.begin(); it != probers_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    it->second->stopped = true;  // removed from the config
    it->second->tick.cancel();
    it->second->stop.emit(asio::cancellation_type::terminal);
    it = probers_.erase(it);
  }
  for (const auto& key : wanted) {
    if (probers_.count(key)) continue;
    auto prober = std::make_shared<Prober>(control_io_);
    probers_.emplace(key, prober);
    // The completion handler holds the prober: its signal must outlive the loop.
    asio::co_spawn(
        control_io_, health_loop(key, prober),
        asio::bind_cancellation_slot(prober->stop.slot(), [prober](const std::exception_ptr&) {}));
  }
}

// Each round reads the running config: a reload may change the pool's
// health settings, and the member's record is the one its sessions use.
asio::awaitable<void> Server::health_loop(MemberKey key, std::shared_ptr<Prober> prober) {
  while (probing_ && !prober->stopped) {
    const auto runtime = state_.current();
    const auto& pools = runtime->snapshot->config.pools;
    const auto pool = std::find_if(pools.begin(), pools.end(),
                                   [&](const conf::Pool& p) { return p.name == key.first; });
    if (pool == pools.end()) co_return;
    const auto member =
        std::find_if(pool->members.begin(), pool->members.end(),
                     [&](const conf::Member& m) { return m.address.to_string() == key.second; });
    if (member == pool->members.end()) co_return;
    const auto record = runtime->view->at(static_cast<std::size_t>(pool - pools.begin()),
                                          static_cast<std::size_t>(member - pool->members.begin()));
    try {
      const auto result = co_await probe_member(*pool, *member);
      if (!probing_ || prober->stopped) break;
      if (result.status == policy::ProbeStatus::local_error)
        state_.log.event("health_error", {{"pool", pool->name},
                                          {"member", member->address.to_string()},
                                          {"error", result.detail},
                                          {"action", "not counted against the member"}});
      if (const auto change = state_.health.probed(*record, pool->health, result,
                                                   policy::HealthBoard::Clock::now()))
        state_.log.health(*record, *change);
    } catch (const std::exception& e) {  // the member must not stay unprobed
      if (!probing_ || prober->stopped) break;
      state_.log.event("health_error", {{"pool", pool->name}, {"error", e.what()}});
    }
    prober->tick.expires_after(pool->health.interval);
    co_await prober->tick.async_wait(nothrow);
  }
}

}  // namespace geomx::daemon
