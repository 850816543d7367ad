#pragma once
// A fleet's [[limit]]s, counted in Redis so that a client alternating
// between nodes is counted once.
//
// Rates: GCRA on Redis's own clock (the nodes' clocks do not matter), each
// key KEY_PREFIX + "rate:" + LIMIT + ":" + CLIENT expiring when the
// client's allowance is full again (memory follows the clients seen lately).
//
// Connections at once: a hash per client, KEY_PREFIX + "conc:" + LIMIT +
// ":" + CLIENT, a field per node process (NODE + "/" + a word drawn at
// start) holding how many it has open. Each process says it is alive in
// the hash KEY_PREFIX + "conc:alive" (field: the process, value: until when,
// on Redis's clock) every heartbeat, and rewrites its own fields with its
// own counts then: a process that died is ignored (and its fields deleted)
// once its word runs out, at most alive_for after its last heartbeat; a
// Redis restarted empty, or a count lost while it was unreachable, is
// right again at the next heartbeat.
//
// The questions asked in one turn of the loop, and the connections given
// back since the last call (up to max_batch keys), go in one script call,
// answered in order: under load many sessions share a round trip. The scripts are loaded at
// each connect and called by their SHA.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "state/redis.hpp"

namespace geomx::state {

class FleetLimits {
 public:
  FleetLimits(RedisConnection& commands, std::string key_prefix, std::string node);
  void connected();  // loads the scripts, and rewrites this process's counts

  // Whether one more connection of `client` is within `rate` per `per_us`
  // (burst: the allowance), on the io_context's thread; done(nullopt) when
  // the store did not answer (the caller's local count decides).
  void rate(const std::string& limit, const std::string& client, std::uint32_t rate,
            std::uint64_t per_us, std::uint32_t burst,
            std::function<void(std::optional<bool>)> done);

  // One of a client's connections at once, counted fleet-wide: asked for
  // by hold(), given back by release() (each on the io_context's thread;
  // release whether or not the answer came, and whatever it was).
  struct Ticket {
    std::string key;
    bool granted = false, released = false;
  };
  std::shared_ptr<Ticket> ticket(const std::string& limit, const std::string& client) const;
  // done(true) when the fleet has fewer than `max` open (this one is then
  // counted), done(false) when it has `max`, done(nullopt) unanswered.
  // With `after_rate`, the hold goes with the rate asked just before it:
  // when that is over, this one is not counted (done(false), not refused).
  void hold(std::shared_ptr<Ticket> ticket, std::uint32_t max,
            std::function<void(std::optional<bool>)> done, bool after_rate = false);
  void release(Ticket& ticket);  // sent with the next call
  void soon();                   // a call at the end of this turn of the loop
  void flush();                  // a call now: everything asked and given back since the last
  // Says this process is alive and rewrites its counts: every heartbeat.
  void heartbeat();
  static constexpr std::chrono::seconds alive_for{20};  // a dead process's holds count this long
  static constexpr std::chrono::seconds key_ttl{60};    // refreshed by each heartbeat

  struct Counts {
    std::uint64_t asked = 0, answered = 0, refused = 0;  // rates; refused: over the fleet's
    std::uint64_t held_asked = 0, held_answered = 0, held_refused = 0;  // connections at once
    std::uint64_t calls = 0;       // script calls made for all of them
    std::uint64_t heartbeats = 0;  // of which the heartbeat's
  };
  const Counts& counts() const { return counts_; }
  const std::string& process() const { return me_; }
  static constexpr std::size_t max_batch = 256;  // keys in one script call
  // The longest a connection given back waits for a question's call to go
  // with (Fleet's; the fleet counts it that much longer: a place freed on
  // one node is free on the others within this and a round trip).
  static constexpr std::chrono::milliseconds release_within{5};

 private:
  struct Script {
    const char* text;
    std::string sha;  // of the loaded script; empty: EVAL it
  };
  // EVALSHA (or EVAL) of `script` with `keys` and `args`.
  void call(Script& script, std::vector<std::string> keys, std::vector<std::string> args,
            RedisConnection::Done done);
  struct Question {
    std::string key;
    std::uint64_t a, b;  // rate: interval (µs) and burst; hold: max, and 1 + the index in
                         // rates_ of the rate it goes with (0: none)
    std::function<void(std::optional<bool>)> done;
    std::shared_ptr<Ticket> ticket;  // hold only
  };
  // What one call asks and gives back: the releases (each key with how
  // many), the rates and the holds, answered in that order.
  struct Turn {
    std::vector<std::pair<std::string, std::uint32_t>> released;
    std::vector<Question> rates, holds;
  };
  void answered(const Turn& turn, const std::optional<RedisReply>& r);
  // Drops a key's entry once nothing is held, asked, given back or in doubt.
  void forget_if_idle(const std::string& key);
  struct Held {
    std::uint32_t granted = 0;    // as Redis has it, once the deltas sent are applied
    std::uint32_t pending = 0;    // questions not answered yet
    std::uint32_t releasing = 0;  // given back, not answered yet
    bool doubt = false;           // a command of it went unanswered: rewrite it
  };

  RedisConnection& redis_;
  std::string prefix_;
  std::string me_;  // this process: node + "/" + a random word
  Script limits_script_, heartbeat_script_;
  std::vector<Question> rates_, holds_;                       // this turn's
  std::unordered_map<std::string, std::uint32_t> releasing_;  // key: how many, this turn
  bool flush_posted_ = false;
  // Every key this process holds connections of, and keys whose count in
  // Redis is in doubt (0 granted: deleted at the next heartbeat).
  std::unordered_map<std::string, Held> held_;
  std::shared_ptr<int> alive_ =
      std::make_shared<int>();  // a posted flush outliving this does nothing
  Counts counts_;
};

}  // namespace geomx::state
