#pragma once
// The relay of an established session, both ways until both sides have
// closed, driven by completion handlers rather than a coroutine: an idle
// connection costs its two sockets, one small object and two pending
// readiness waits, and no buffer (reads go to a per-thread buffer and are
// written at once; only bytes the other side cannot take yet are copied
// aside). The session's log line is written when the relay ends.
#include <chrono>
#include <memory>
#include <optional>

#include "policy/snapshot.hpp"
#include "proxy/io.hpp"
#include "proxy/registry.hpp"
#include "proxy/server_state.hpp"
#include "proxy/session_record.hpp"

namespace geomx::proxy {

struct RelayStart {
  Socket client, backend;                            // both connected
  SessionRecord record;                              // the log line so far
  std::shared_ptr<const policy::Snapshot> snapshot;  // keeps `pool` and the record's views alive
  const conf::Pool& pool;                            // idle_timeout, fin_timeout
  std::chrono::steady_clock::time_point start;
  std::optional<policy::ConnectionSlots::Slot> slot,
      ip_slot;                                  // max_connections, max_connections_per_ip
  policy::MemberSlot member;                    // its place at the member (`active`)
  std::vector<policy::LimitTable::Hold> holds;  // [[limit]] concurrent counts
  std::unique_ptr<OwnConnections::Entry> own;   // action "pass": its local end
};

// Relays until both sides have closed, an error, idle_timeout without a
// byte either way, fin_timeout after a half-close, or a drain; the registry's
// sweep enforces the timeouts.
void start_relay(RelayStart start, ServerState& state, SessionRegistry& registry);

}  // namespace geomx::proxy
