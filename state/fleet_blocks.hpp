#pragma once
// The dated blocks of a fleet, shared through Redis. Each node keeps its own
// block list (memory and blocks.toml: it serves from it, Redis up or down);
// Redis holds each CIDR's latest change in one hash, KEY_PREFIX + "blocks"
// (field: the CIDR; value: an encoded policy::BlockChange), and announces
// each on the channel of the same name. A change is written by one script
// call that keeps the later version (policy::BlockChange::newer_than: the
// same rule every node applies) and publishes it only if it won.
//
// When the store comes (back) up, a node merges what Redis has (read with
// HSCAN, a page of 1,000 at a time) and writes what Redis lacks or has
// older: changes made during an outage, or all of them when Redis came back
// empty. A deletion is a change too, remembered
// for BlockList::deletion_ttl_ms, so a stale copy cannot bring a block back.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/blocks.hpp"
#include "state/blocks.hpp"
#include "state/redis.hpp"

namespace geomx::state {

// A change as Redis keeps it: "VERSION\tNODE\tblock\tCREATED\tEXPIRES\tORIGIN\tCOMMENT"
// or "VERSION\tNODE\tdeleted" (EXPIRES empty: none). decode gives nullopt
// for anything else (logged and skipped: Redis is trusted, not its bytes).
std::string encode_change(const policy::BlockChange& c);
std::optional<policy::BlockChange> decode_change(std::string_view cidr, std::string_view record);

class FleetBlocks {
 public:
  using Say = std::function<void(std::string message)>;  // a warning for the log
  // Joins `blocks` to the fleet as `node` (its changes come here, through
  // the io_context), and leaves it when destroyed.
  FleetBlocks(RedisConnection& commands, BlockList& blocks, std::string key_prefix,
              std::string node, Say say);
  ~FleetBlocks();
  FleetBlocks(const FleetBlocks&) = delete;
  FleetBlocks& operator=(const FleetBlocks&) = delete;
  const std::string& key() const { return key_; }  // the hash, and the channel

  // The store is up: merge what it has, then give it what it lacks.
  void connected(std::int64_t now);
  // A message on the channel ("CIDR\tRECORD").
  void message(std::string_view payload);

  struct Counts {
    std::uint64_t written = 0;  // changes this node gave the store that won
    std::uint64_t heard = 0;    // messages heard
    std::uint64_t merged = 0;   // changes from the store applied here
    std::uint64_t refills = 0;  // changes given to a store that lacked them, at connect
  };
  const Counts& counts() const { return counts_; }

 private:
  void made(std::vector<policy::BlockChange> changes);  // here (on the io_context's thread)
  void write(const policy::BlockChange& c, bool refill);
  struct Reading;
  static constexpr std::size_t page = 1000;  // HSCAN COUNT
  void read_page(std::shared_ptr<Reading> reading, const std::string& cursor);
  void take(Reading& reading, const std::string& field, const std::string& record);
  void merge_read(const Reading& reading);
  void purge(const std::string& cidr, const std::string& record);

  RedisConnection& redis_;
  BlockList& blocks_;
  std::string key_, node_;
  Say say_;
  Counts counts_;
};

}  // namespace geomx::state
