#pragma once
// A fleet's [[limit]] rates, counted in Redis so that a client alternating
// between nodes is counted once: one script call per connection (GCRA on
// Redis's own clock, so the nodes' clocks do not matter), its key
// KEY_PREFIX + "rate:" + LIMIT + ":" + CLIENT expiring when the client's
// allowance is full again (memory follows the clients seen lately). The
// script is loaded at each connect and called by its SHA (EVALSHA); the
// calls of many sessions share the connection's writes (hiredis queues
// them until the socket is writable).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "state/redis.hpp"

namespace geomx::state {

class FleetLimits {
 public:
  FleetLimits(RedisConnection& commands, std::string key_prefix);
  void connected();  // loads the script

  // Whether one more connection of `client` is within `rate` per `per_us`
  // (burst: the allowance), on the io_context's thread; done(nullopt) when
  // the store did not answer (the caller's local count decides).
  void rate(const std::string& limit, const std::string& client, std::uint32_t rate,
            std::uint64_t per_us, std::uint32_t burst,
            std::function<void(std::optional<bool>)> done);

  struct Counts {
    std::uint64_t asked = 0, answered = 0, refused = 0;  // refused: over the fleet's rate
  };
  const Counts& counts() const { return counts_; }

 private:
  RedisConnection& redis_;
  std::string prefix_;
  std::string sha_;  // of the loaded script; empty: EVAL it
  Counts counts_;
};

}  // namespace geomx::state
