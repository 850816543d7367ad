#pragma once
// What every I/O thread (and the admin endpoint) shares: the runtime that
// decides connections, swapped whole by a reload, and the tables, counters
// and log that outlive reloads. No sockets here.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/blocks.hpp"
#include "policy/connection_slots.hpp"
#include "policy/health_board.hpp"
#include "policy/limit_table.hpp"
#include "policy/snapshot.hpp"
#include "policy/top_talkers.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/original_dst.hpp"
#include "state/blocks.hpp"
#include "state/fleet.hpp"
#include "state/greylist.hpp"

namespace geomx::proxy {

// What a connection is decided by, swapped whole by a reload: the snapshot,
// its members' health records, and a listener key per config.listeners entry.
// A session keeps the one it began with.
struct Runtime {
  Runtime(std::shared_ptr<const policy::Snapshot> s, policy::HealthBoard& board,
          policy::LimitTables& limits, std::uint64_t g);
  std::shared_ptr<const policy::Snapshot> snapshot;
  std::shared_ptr<const policy::HealthView> view;
  std::vector<std::shared_ptr<policy::LimitTable>> limit_tables;  // parallel to config.limits
  std::vector<std::string> listener_keys;                         // parallel to config.listeners
  std::uint64_t generation = 1;
  // The listener with this key (see listener_key), if the config has it.
  std::optional<std::size_t> listener(std::string_view key) const;
};

// What makes a listening socket the same across a reload: its address, and
// for port 0 (tests) its name too. A reload keeps sockets whose key stays.
std::string listener_key(const conf::Listener& l);

// The live sessions (coroutines and relays), counted however they end, so
// that a drain never waits for a ghost; `on_idle` (set before the I/O
// threads start) runs on the thread that ended the last one.
class SessionCount {
 public:
  void add() { n_.fetch_add(1); }
  void remove() {
    if (n_.fetch_sub(1) == 1 && on_idle) on_idle();
  }
  std::uint32_t load() const { return n_.load(); }
  std::function<void()> on_idle;
  // Counts a session while it lives, however it ends.
  class Hold {
   public:
    explicit Hold(SessionCount& c) : c_(c) { c_.add(); }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold() { c_.remove(); }

   private:
    SessionCount& c_;
  };

 private:
  std::atomic<std::uint32_t> n_{0};
};

struct ServerState {
  ServerState(std::shared_ptr<const policy::Snapshot> s, Log& l);
  Log& log;
  policy::HealthBoard health;
  state::BlockList blocks;                 // kept across reloads
  policy::TopTalkers top;                  // and the refusal log's sampling
  std::function<void(policy::Block)> ban;  // queues a [[limit]] ban (kept later, by the writer)
  // [store]: this node of the fleet (owned by the daemon; its details are
  // read on the control thread, up() anywhere). nullptr: a node alone.
  state::Fleet* fleet = nullptr;
  // The cache (key, value, TTL) of DNS answers, screening passes and
  // greylist triplets: this node's, or the fleet's while it is a member.
  state::LocalCache local_cache;
  std::atomic<state::Cache*> cache{&local_cache};
  // The policy listener's greylist store: this node's (local_grey, set by
  // the daemon when greylisting is on), or the fleet's while it is a member.
  state::LocalGreyStore* local_grey = nullptr;
  std::atomic<state::GreyStore*> grey{nullptr};
  policy::LimitTables limit_tables;  // likewise, per [[limit]] name
  std::atomic<std::shared_ptr<const Runtime>> runtime;
  std::shared_ptr<const Runtime> current() const { return runtime.load(); }
  Metrics metrics;
  policy::ConnectionSlots slots;  // max_connections, max_connections_per_ip
  OwnConnections own;             // local ends of action "pass" connections (loop guard)
  std::atomic<std::uint64_t> next_conn{1};
  std::atomic<std::uint64_t> sequence{0};
  SessionCount sessions;

  // A connection is over: its counts, and its log line (a refusal's only
  // within the sample).
  void session_ended(const SessionRecord& r);
};

}  // namespace geomx::proxy
