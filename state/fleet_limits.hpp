#pragma once
// A fleet's [[limit]] rates, counted in Redis so that a client alternating
// between nodes is counted once (GCRA on Redis's own clock, so the nodes'
// clocks do not matter), each key KEY_PREFIX + "rate:" + LIMIT + ":" +
// CLIENT expiring when the client's allowance is full again (memory follows
// the clients seen lately). The questions asked in one turn of the loop
// (up to max_batch) go in one script call, answered in order: under load
// many sessions share a round trip. The script is loaded at each connect
// and called by its SHA (EVALSHA).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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
    std::uint64_t calls = 0;                             // script calls made for them
  };
  const Counts& counts() const { return counts_; }
  static constexpr std::size_t max_batch = 256;  // questions in one script call

 private:
  struct Question {
    std::string key;
    std::uint64_t interval;  // microseconds per connection
    std::uint32_t burst;
    std::function<void(std::optional<bool>)> done;
  };
  void flush();  // the questions waiting, in calls of max_batch
  RedisConnection& redis_;
  std::string prefix_;
  std::string sha_;  // of the loaded script; empty: EVAL it
  std::vector<Question> waiting_;
  std::shared_ptr<int> alive_ =
      std::make_shared<int>();  // a posted flush outliving this does nothing
  Counts counts_;
};

}  // namespace geomx::state
