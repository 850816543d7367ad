#pragma once
// A node of a fleet ([store]): its two connections to Redis (one for
// commands, one subscribed to the fleet's announcements) and what is shared
// through them. The store is up when both are; each change of that is told
// once (on_state), and the node serves from its own state meanwhile.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "state/blocks.hpp"
#include "state/cache.hpp"
#include "state/fleet_blocks.hpp"
#include "state/fleet_limits.hpp"
#include "state/fleet_top.hpp"
#include "state/redis.hpp"

namespace geomx::state {

struct FleetOptions {
  RedisOptions redis;  // with sentinels: all but where (asked of them)
  std::string key_prefix = "geomx:";
  std::string node;
  std::vector<RedisOptions> sentinels;  // Redis Sentinel: asked in order
  std::string master;                   // ... where this master is
};

class Fleet {
 public:
  // `now` gives unix seconds (the clock, injected).
  // `local` is this node's cache, which the fleet's falls back on.
  Fleet(asio::io_context& io, FleetOptions options, BlockList& blocks, LocalCache& local,
        std::function<std::int64_t()> now);
  ~Fleet();
  // Up or down, and why: once per change (the first call says which).
  std::function<void(bool up, const std::string& why)> on_state;
  std::function<void(std::string message)> on_warning;

  void start();
  void stop();
  bool up() const { return up_.load(); }  // any thread
  // Why it is down ("" when up), and since when (unix seconds); on the
  // io_context's thread.
  const std::string& why() const { return why_; }
  std::int64_t since() const { return since_; }
  const FleetOptions& options() const { return options_; }
  // Where Redis is: its address, or with Sentinel the master's as last
  // located (for logs and /status). On the io_context's thread.
  std::string address() const;
  const FleetBlocks& blocks() const { return blocks_; }
  const FleetLimits& limits() const { return limits_; }
  // The fleet's cache (key, value, TTL) in Redis, and this node's copy.
  FleetCache& cache() { return cache_; }
  const FleetCache& cache() const { return cache_; }
  // A [[limit]]'s questions for one connection: its rate (when rate > 0)
  // and one of the client's connections at once (when concurrent > 0).
  struct LimitQuestion {
    std::string limit, client;
    std::uint32_t rate = 0, burst = 0;
    std::uint64_t per_us = 0;
    std::uint32_t concurrent = 0;
  };
  // The answers, rate then connections at once: true within, false over,
  // nullopt not asked, the store down, or no answer.
  using LimitAnswers = std::array<std::optional<bool>, 2>;
  // Asks both at once, counted fleet-wide (FleetLimits: one script call),
  // from any thread: `done` runs once, on the io_context's thread. With
  // concurrent, the connection is given back when the returned handle is
  // destroyed, from any thread, whatever the answer was (null without).
  std::shared_ptr<void> ask(LimitQuestion q, std::function<void(LimitAnswers)> done);

  // This node's top talkers of a window (1 or 60 minutes), which the fleet
  // reads from Redis: written every publish_every while the store is up,
  // with the heartbeat of its connections at once (FleetLimits).
  std::function<policy::TopTalkers::Report(std::chrono::minutes)> top_source;
  static constexpr std::chrono::seconds publish_every{5};
  // The other nodes' reports of `window` ("1m", "1h"), on the io_context's
  // thread; nullopt when the store is down or did not answer.
  void top(std::string_view window,
           std::function<void(std::optional<std::vector<FleetTop::NodeReport>>)> done);

 private:
  void changed();
  // Connections given back, from any thread: queued, and taken to the
  // store's thread with the next question or within release_within (one
  // wake-up of that thread for many, not one each).
  void give_back(std::shared_ptr<FleetLimits::Ticket> ticket);
  void take_releases();  // on the io_context's thread
  void publish();        // top talkers and the limits' heartbeat, and again in publish_every
  // Sentinel: where the master is, from the first sentinel up that knows
  // (each search from the next one on); waits while none has said whether
  // it is up.
  void locate(std::function<void(RedisConnection::Where)> done);
  void ask_sentinel(std::size_t start, std::size_t tried,
                    std::function<void(RedisConnection::Where)> done);

  asio::io_context& io_;
  FleetOptions options_;
  std::function<std::int64_t()> now_;
  std::vector<std::unique_ptr<RedisConnection>> sentinels_;  // asked where the master is
  std::vector<std::unique_ptr<RedisConnection>> switches_;   // subscribed to +switch-master
  std::vector<bool> sentinel_told_;
  std::size_t next_sentinel_ = 0;
  bool warned_remote_master_ = false;
  std::vector<std::function<void(RedisConnection::Where)>> locating_;  // until a sentinel is up
  RedisConnection commands_, events_;
  FleetBlocks blocks_;
  FleetLimits limits_;
  FleetTop top_;
  FleetCache cache_;
  asio::steady_timer publish_;
  std::mutex releases_mutex_;
  std::vector<std::shared_ptr<FleetLimits::Ticket>> releases_;  // guarded by releases_mutex_
  bool releases_posted_ = false;                                // guarded by releases_mutex_
  asio::steady_timer release_timer_;
  std::atomic<bool> up_{false};
  bool told_ = false, commands_told_ = false, events_told_ = false;
  std::string why_;
  std::int64_t since_ = 0;
};

}  // namespace geomx::state
