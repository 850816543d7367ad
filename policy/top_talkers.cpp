#include "policy/top_talkers.hpp"

#include <algorithm>
#include <utility>

namespace geomx::policy {

std::int64_t TopTalkers::minute_of(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::minutes>(t.time_since_epoch()).count();
}

// Moves the newest bucket to minute `to`, clearing the minutes skipped.
void TopTalkers::Counts::advance(std::int64_t to) {
  if (to <= minute) return;
  const auto steps = std::min<std::int64_t>(to - minute, buckets);
  for (std::int64_t i = 1; i <= steps; ++i) {
    const auto b = static_cast<std::size_t>((minute + i) % buckets);
    connections[b] = 0;
    refused[b] = 0;
  }
  minute = to;
}

// The count over the last `minutes` minutes: whole buckets, and of the oldest
// the part still inside the window (`fraction` of the current minute is gone).
double TopTalkers::in_window(const Counts& c, const std::array<std::uint32_t, buckets>& a,
                             std::int64_t now_minute, double fraction, std::size_t minutes) {
  double sum = 0;
  for (std::size_t i = 0; i <= minutes && i < buckets; ++i) {
    const auto m = now_minute - static_cast<std::int64_t>(i);
    if (m < 0) break;  // the clock began less than an hour ago
    if (m > c.minute || c.minute - m >= static_cast<std::int64_t>(buckets)) continue;
    const double weight = i == minutes ? 1 - fraction : 1;
    sum += weight * a[static_cast<std::size_t>(m % buckets)];
  }
  return sum;
}

bool TopTalkers::record(const geo::Address& client, std::optional<geo::Country> country,
                        bool refused, Clock::time_point now) {
  const auto minute = minute_of(now);
  std::lock_guard lock(mutex_);
  total_.advance(minute);
  ++total_.connections[static_cast<std::size_t>(minute % buckets)];
  if (refused) ++total_.refused[static_cast<std::size_t>(minute % buckets)];
  auto it = entries_.find(client);
  if (it == entries_.end()) {
    if (entries_.size() >= capacity_) {
      entries_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(client);
    it = entries_.emplace(client, Entry{}).first;
    it->second.lru = lru_.begin();
    it->second.counts.minute = minute;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Entry& e = it->second;
  e.counts.advance(minute);
  ++e.counts.connections[static_cast<std::size_t>(minute % buckets)];
  if (country) e.country = country;
  if (!refused) return true;
  ++e.counts.refused[static_cast<std::size_t>(minute % buckets)];
  if (log_sample_ == 0) return true;
  if (!e.log.admit(minute, log_sample_)) return false;
  return all_.admit(minute, log_limit_);  // a flood of many sources
}

std::uint64_t TopTalkers::take_suppressed_all(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  return all_.take(minute_of(now));
}

TopTalkers::Report TopTalkers::top(std::chrono::minutes window, std::size_t n,
                                   Clock::time_point now) const {
  const auto minute = minute_of(now);
  const double fraction =
      std::chrono::duration<double>(now.time_since_epoch() % std::chrono::minutes(1)).count() / 60;
  const auto minutes = static_cast<std::size_t>(std::clamp<std::int64_t>(window.count(), 1, 59));
  Report r;
  std::lock_guard lock(mutex_);
  r.total = in_window(total_, total_.connections, minute, fraction, minutes);
  for (const auto& [address, e] : entries_) {
    const double c = in_window(e.counts, e.counts.connections, minute, fraction, minutes);
    if (c <= 0) continue;
    r.rows.push_back(
        {address, e.country, c, in_window(e.counts, e.counts.refused, minute, fraction, minutes)});
  }
  keep_busiest(r.rows, n);
  return r;
}

void TopTalkers::keep_busiest(std::vector<Row>& rows, std::size_t n) {
  const auto keep = std::min(n, rows.size());
  std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(keep), rows.end(),
                    [](const Row& a, const Row& b) {
                      return a.connections != b.connections
                                 ? a.connections > b.connections
                                 : a.address.v6_bits() < b.address.v6_bits();
                    });
  rows.resize(keep);
}

TopTalkers::Report TopTalkers::merge(const std::vector<Report>& reports, std::size_t n) {
  Report out;
  std::unordered_map<geo::Address, std::size_t, geo::AddressHash> at;  // index in out.rows
  for (const auto& r : reports) {
    out.total += r.total;
    for (const auto& row : r.rows) {
      const auto [it, fresh] = at.try_emplace(row.address, out.rows.size());
      if (fresh) {
        out.rows.push_back(row);
        continue;
      }
      auto& sum = out.rows[it->second];
      sum.connections += row.connections;
      sum.refused += row.refused;
      if (!sum.country) sum.country = row.country;
    }
  }
  keep_busiest(out.rows, n);
  return out;
}

std::vector<std::pair<geo::Address, std::uint64_t>> TopTalkers::take_suppressed(
    Clock::time_point now) {
  const auto minute = minute_of(now);
  std::vector<std::pair<geo::Address, std::uint64_t>> out;
  std::lock_guard lock(mutex_);
  for (auto& [address, e] : entries_)
    if (const auto due = e.log.take(minute)) out.emplace_back(address, due);
  return out;
}

std::size_t TopTalkers::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace geomx::policy
