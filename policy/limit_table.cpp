#include "policy/limit_table.hpp"

#include <algorithm>

namespace geomx::policy {

LimitTable::Verdict LimitTable::enter(const geo::Address& client, const conf::Limit& limit,
                                      Clock::time_point now, std::optional<Hold>& hold) {
  hold.reset();  // a Hold let go under the lock below would take it again
  const auto key = limit.counted_as(client);
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    // Full: forget the least recently seen clients. One with connections
    // open is not on the list (it would lose its concurrent count); those
    // are bounded by max_connections, and the table shrinks back to
    // capacity as they close.
    while (entries_.size() >= capacity_ && !lru_.empty()) {
      entries_.erase(lru_.back());
      lru_.pop_back();
    }
    it = entries_.emplace(key, Entry{static_cast<double>(limit.burst), now, 0, lru_.end()}).first;
  }
  Entry& e = it->second;
  const Verdict verdict = judge(e, limit, now);
  if (verdict == Verdict::ok && limit.concurrent != 0) {
    ++e.active;
    hold.emplace(shared_from_this(), key);
  }
  // Seen now: at the front of the list, or off it while it has connections open.
  if (e.active != 0) {
    if (e.lru != lru_.end()) {
      lru_.erase(e.lru);
      e.lru = lru_.end();
    }
  } else if (e.lru == lru_.end()) {
    lru_.push_front(key);
    e.lru = lru_.begin();
  } else {
    lru_.splice(lru_.begin(), lru_, e.lru);
  }
  return verdict;
}

// Refills the token bucket to `now` and judges one more connection; ok
// takes its token (the concurrent count is the caller's).
LimitTable::Verdict LimitTable::judge(Entry& e, const conf::Limit& limit, Clock::time_point now) {
  if (limit.rate != 0) {
    const double per_second = limit.rate / std::chrono::duration<double>(limit.per).count();
    if (now > e.refilled) {  // `now` was read before the lock: it may be behind
      const double elapsed = std::chrono::duration<double>(now - e.refilled).count();
      e.tokens = std::min<double>(limit.burst, e.tokens + elapsed * per_second);
      e.refilled = now;
    }
    if (e.tokens < 1) return Verdict::over_rate;
  }
  if (limit.concurrent != 0 && e.active >= limit.concurrent) return Verdict::over_concurrent;
  if (limit.rate != 0) e.tokens -= 1;
  return Verdict::ok;
}

void LimitTable::leave(const geo::Prefix& key) {
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end() || it->second.active == 0) return;
  if (--it->second.active == 0) {  // its last connection: back on the list, as seen now
    lru_.push_front(key);
    it->second.lru = lru_.begin();
  }
}

std::size_t LimitTable::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::vector<std::shared_ptr<LimitTable>> LimitTables::for_config(const conf::Config& config) {
  std::lock_guard lock(mutex_);
  std::map<std::string, std::pair<std::uint32_t, std::shared_ptr<LimitTable>>> next;
  std::vector<std::shared_ptr<LimitTable>> out;
  for (const auto& l : config.limits) {
    auto old = tables_.find(l.name);
    auto table = old != tables_.end() && old->second.first == l.table_size
                     ? old->second.second
                     : std::make_shared<LimitTable>(l.table_size);
    next[l.name] = {l.table_size, table};
    out.push_back(std::move(table));
  }
  tables_ = std::move(next);
  return out;
}

}  // namespace geomx::policy
