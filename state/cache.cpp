#include "state/cache.hpp"

#include <algorithm>

#include <boost/asio/post.hpp>

namespace geomx::state {

LocalCache::LocalCache(std::size_t capacity, std::function<Clock::time_point()> now)
    : capacity_(std::max<std::size_t>(1, capacity)), now_(std::move(now)) {}

void LocalCache::get(const std::string& key, Found found) {
  found(get(key));
}

std::optional<std::string> LocalCache::get(const std::string& key) {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  if (it->second.expires <= now) {
    remove(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.value;
}

void LocalCache::put(const std::string& key, std::string value, std::chrono::milliseconds ttl) {
  const auto expires = now_() + std::max(ttl, std::chrono::milliseconds(1));
  std::lock_guard lock(mutex_);
  if (const auto it = entries_.find(key); it != entries_.end()) {
    it->second.value = std::move(value);
    it->second.expires = expires;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return;
  }
  while (entries_.size() >= capacity_) remove(entries_.find(lru_.back()));
  lru_.push_front(key);
  entries_.emplace(key, Entry{std::move(value), expires, lru_.begin()});
}

void LocalCache::erase(const std::string& key) {
  std::lock_guard lock(mutex_);
  if (const auto it = entries_.find(key); it != entries_.end()) remove(it);
}

void LocalCache::remove(std::unordered_map<std::string, Entry>::iterator it) {
  lru_.erase(it->second.lru);
  entries_.erase(it);
}

std::size_t LocalCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

FleetCache::FleetCache(RedisConnection& commands, std::string key_prefix, LocalCache& local)
    : redis_(commands), prefix_(std::move(key_prefix) + "cache:"), local_(local) {}

void FleetCache::get(const std::string& key, Found found) {
  asio::post(redis_.io(),
             [this, alive = std::weak_ptr<int>(alive_), key, found = std::move(found)]() mutable {
               if (!alive.lock()) return found(std::nullopt);
               ++counts_.gets;
               if (!redis_.up()) {
                 ++counts_.local;
                 return found(local_.get(key));
               }
               waiting_.emplace_back(std::move(key), std::move(found));
               // The first of this turn: the gets after it join its MGET.
               if (waiting_.size() == 1)
                 asio::post(redis_.io(), [this, alive = std::weak_ptr<int>(alive_)] {
                   if (alive.lock()) flush();
                 });
             });
}

void FleetCache::flush() {
  auto gets = std::exchange(waiting_, {});
  for (std::size_t first = 0; first < gets.size(); first += max_batch) {
    const auto n = std::min(max_batch, gets.size() - first);
    std::vector<std::string> argv{"MGET"};
    for (std::size_t i = first; i < first + n; ++i) argv.push_back(prefix_ + gets[i].first);
    auto batch = std::make_shared<std::vector<std::pair<std::string, Found>>>(
        std::make_move_iterator(gets.begin() + first),
        std::make_move_iterator(gets.begin() + first + n));
    ++counts_.calls;
    redis_.command(std::move(argv), [this, batch](std::optional<RedisReply> r) {
      const bool whole =
          r && r->type == RedisReply::Type::array && r->elements.size() == batch->size();
      for (std::size_t i = 0; i < batch->size(); ++i) {
        auto& [key, found] = (*batch)[i];
        if (!whole) {  // no answer in time: this node's copy answers
          ++counts_.local;
          found(local_.get(key));
        } else if (r->elements[i].type == RedisReply::Type::string) {
          ++counts_.hits;
          found(std::move(r->elements[i].str));
        } else {
          found(std::nullopt);
        }
      }
    });
  }
}

void FleetCache::put(const std::string& key, std::string value, std::chrono::milliseconds ttl) {
  ttl = std::max(ttl, std::chrono::milliseconds(1));
  local_.put(key, value, ttl);
  asio::post(redis_.io(), [this, alive = std::weak_ptr<int>(alive_), key = prefix_ + key,
                           value = std::move(value), ttl] {
    if (!alive.lock() || !redis_.up()) return;  // kept on this node only
    ++counts_.puts;
    redis_.command({"SET", key, value, "PX", std::to_string(ttl.count())},
                   [](std::optional<RedisReply>) {});
  });
}

void FleetCache::erase(const std::string& key) {
  local_.erase(key);
  asio::post(redis_.io(), [this, alive = std::weak_ptr<int>(alive_), key = prefix_ + key] {
    if (alive.lock() && redis_.up()) redis_.command({"DEL", key}, [](std::optional<RedisReply>) {});
  });
}

}  // namespace geomx::state
