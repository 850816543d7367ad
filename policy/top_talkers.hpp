#pragma once
// Top talkers: per-client connection and refusal counts over sliding
// windows (1 min, 1 h: sixty one-minute buckets, the oldest weighted by how
// much of it is still inside the window), like dnsdist's topClients; and the
// sampling of refused connections' log lines (the first N per client per
// minute, then one line "suppressed K more"). The table has a fixed size
// and forgets the least recently seen client, so a flood of sources costs
// no more than `capacity` entries; totals are counted apart, exactly.
#include <array>
#include <chrono>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "geo/address.hpp"
#include "geo/hash.hpp"
#include "geo/table.hpp"
#include "policy/sampler.hpp"

namespace geomx::policy {

class TopTalkers {
 public:
  using Clock = std::chrono::steady_clock;
  // log_sample: refusal lines per client per minute (0: all); log_limit:
  // refusal lines per minute from all clients together (0: no limit).
  explicit TopTalkers(std::size_t capacity = 10'000, std::uint32_t log_sample = 10,
                      std::uint32_t log_limit = 1000)
      : capacity_(capacity), log_sample_(log_sample), log_limit_(log_limit) {}

  // One finished connection; true if its log line is to be written (always
  // for a connection that was not refused).
  bool record(const geo::Address& client, std::optional<geo::Country> country, bool refused,
              Clock::time_point now);

  struct Row {
    geo::Address address;
    std::optional<geo::Country> country;
    double connections = 0, refused = 0;
  };
  struct Report {
    double total = 0;       // every connection in the window, forgotten clients too
    std::vector<Row> rows;  // the n with most connections, most first
  };
  Report top(std::chrono::minutes window, std::size_t n, Clock::time_point now) const;
  // Several nodes' reports as one: counts summed per client (its country
  // from the first report that knows it), the n with most connections.
  static Report merge(const std::vector<Report>& reports, std::size_t n);

  // Clients whose log lines were suppressed in a minute that is over: each
  // once, with how many.
  std::vector<std::pair<geo::Address, std::uint64_t>> take_suppressed(Clock::time_point now);
  // Lines suppressed by log_limit in minutes that are over.
  std::uint64_t take_suppressed_all(Clock::time_point now);
  std::size_t size() const;

 private:
  static constexpr std::size_t buckets = 60;  // minutes
  struct Counts {
    std::array<std::uint32_t, buckets> connections{}, refused{};
    std::int64_t minute = 0;  // of the newest bucket
    void advance(std::int64_t to);
  };
  struct Entry {
    Counts counts;
    std::optional<geo::Country> country;
    Sampler log;
    std::list<geo::Address>::iterator lru;
  };
  static std::int64_t minute_of(Clock::time_point t);
  // Sorts rows by connections, most first (then by address), and keeps n.
  static void keep_busiest(std::vector<Row>& rows, std::size_t n);
  static double in_window(const Counts& c, const std::array<std::uint32_t, buckets>& a,
                          std::int64_t now_minute, double fraction, std::size_t minutes);

  mutable std::mutex mutex_;
  std::size_t capacity_;
  std::uint32_t log_sample_, log_limit_;
  Sampler all_;  // every client's together (log_limit_)
  std::list<geo::Address> lru_;
  std::unordered_map<geo::Address, Entry, geo::AddressHash> entries_;
  Counts total_;
};

}  // namespace geomx::policy
