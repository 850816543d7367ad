#pragma once
// Top talkers fleet-wide: every node writes its own report of each window
// (its busiest `rows` clients and its total) into the hash KEY_PREFIX +
// "top:" + WINDOW, field NODE, every few seconds; `geomx top --fleet` (GET
// /top?fleet=1) merges the other nodes' reports with its own live one. A
// node that stopped writing (dead, or cut off from Redis) drops out once
// its report is stale_after old by the reader's clock (the nodes' clocks
// are kept by NTP), and its field is removed; a record this version cannot
// read is skipped and left.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/top_talkers.hpp"
#include "state/redis.hpp"

namespace geomx::state {

class FleetTop {
 public:
  using Report = policy::TopTalkers::Report;
  static constexpr std::size_t rows = 1000;           // per node and window
  static constexpr std::int64_t stale_after = 15;     // seconds
  static constexpr std::size_t max_record = 256'000;  // bytes: more is not a report of ours
  static constexpr double max_count = 1e12;           // connections: more is not a count

  FleetTop(RedisConnection& commands, std::string key_prefix, std::string node);

  // This node's report of `window` ("1m" or "1h"), written at `now` (unix seconds).
  void publish(std::string_view window, const Report& report, std::int64_t now);

  struct NodeReport {
    std::string node;
    std::int64_t written = 0;
    Report report;
  };
  // The other nodes' fresh reports of `window`, or nullopt when the store
  // did not answer; on the io_context's thread.
  void others(std::string_view window, std::int64_t now,
              std::function<void(std::optional<std::vector<NodeReport>>)> done);

  // The record in Redis: "geomx-top 1 WRITTEN TOTAL\n", then one line per
  // client, "ADDRESS COUNTRY CONNECTIONS REFUSED\n" (COUNTRY "-" when not
  // known; counts are weighted, so decimals). decode() takes nothing else.
  static std::string encode(const Report& report, std::int64_t written);
  struct Decoded {
    std::int64_t written = 0;
    Report report;
  };
  static std::optional<Decoded> decode(std::string_view record);

  std::string key(std::string_view window) const { return prefix_ + "top:" + std::string(window); }

 private:
  RedisConnection& redis_;
  std::string prefix_, node_;
};

}  // namespace geomx::state
