#include "proxy/server_state.hpp"

#include "proxy/clock.hpp"
#include "state/local_store.hpp"

namespace geomx::proxy {

std::string listener_key(const conf::Listener& l) {
  // A policy listener's sessions are another kind: a change of mode is a new socket.
  const auto address =
      (l.mode == conf::ListenerMode::policy ? "policy:" : "") + l.address.to_string();
  return l.address.port != 0 ? address : l.name + "@" + address;
}

Runtime::Runtime(std::shared_ptr<const policy::Snapshot> s, policy::HealthBoard& board,
                 policy::LimitTables& limits, std::uint64_t g)
    : snapshot(std::move(s)),
      view(std::make_shared<policy::HealthView>(board, *snapshot,
                                                policy::HealthBoard::Clock::now())),
      limit_tables(limits.for_config(snapshot->config)),
      generation(g) {
  for (const auto& l : snapshot->config.listeners) listener_keys.push_back(listener_key(l));
}

std::optional<std::size_t> Runtime::listener(std::string_view key) const {
  for (std::size_t i = 0; i < listener_keys.size(); ++i)
    if (listener_keys[i] == key) return i;
  return std::nullopt;
}

ServerState::ServerState(std::shared_ptr<const policy::Snapshot> s, Log& l)
    : log(l),
      blocks(std::make_unique<state::LocalBlockStore>(s->config.server.process.state_dir)),
      top(10'000, s->config.server.process.refusal_log_sample,
          s->config.server.process.refusal_log_limit),
      runtime(std::make_shared<const Runtime>(std::move(s), health, limit_tables, 1)) {}

void ServerState::session_ended(const SessionRecord& r) {
  metrics.session(r);
  if (top.record(r.client.address, r.country, refused(r.end), policy::TopTalkers::Clock::now()))
    log.session(r);
}

}  // namespace geomx::proxy
