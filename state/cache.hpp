#pragma once
// A cache of values by key, each with its own time to live: what DNS
// answers, screening passes and greylist triplets are kept in. Callers name
// their keys ("dns:...", "pass:..."): the cache does not read them.
//
// LocalCache keeps them in this process, in a bounded table (the least
// recently used goes first when it is full). FleetCache keeps them in Redis
// for the whole fleet, and in a LocalCache too: that answers while the
// store is down or slow, so a node finds its own entries through an outage
// (the others' are not there; a cache may miss). While Redis is up it is
// the truth: an entry put on this node during an outage is not found once
// Redis is back, and one another node erased is gone here too.
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "state/redis.hpp"

namespace geomx::state {

class Cache {
 public:
  virtual ~Cache() = default;
  using Found = std::function<void(std::optional<std::string>)>;
  // The value of `key` while it lives, or nullopt. From any thread;
  // `found` runs on any thread (at once, or on the store's).
  virtual void get(const std::string& key, Found found) = 0;
  // Keeps `value` for `ttl` (at least 1 ms), replacing what was there.
  virtual void put(const std::string& key, std::string value, std::chrono::milliseconds ttl) = 0;
  virtual void erase(const std::string& key) = 0;
};

class LocalCache final : public Cache {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LocalCache(std::size_t capacity = 100'000,
                      std::function<Clock::time_point()> now = &Clock::now);
  void get(const std::string& key, Found found) override;
  std::optional<std::string> get(const std::string& key);
  void put(const std::string& key, std::string value, std::chrono::milliseconds ttl) override;
  void erase(const std::string& key) override;
  std::size_t size() const;

 private:
  struct Entry {
    std::string value;
    Clock::time_point expires;
    std::list<std::string>::iterator lru;
  };
  void remove(std::unordered_map<std::string, Entry>::iterator it);  // mutex_ held
  mutable std::mutex mutex_;
  std::size_t capacity_;
  std::function<Clock::time_point()> now_;
  std::list<std::string> lru_;  // most recently used first
  std::unordered_map<std::string, Entry> entries_;
};

// Keys in Redis: KEY_PREFIX + "cache:" + key, with the TTL as PX. The gets
// of one turn of the store's loop go in one MGET (up to max_batch keys).
class FleetCache final : public Cache {
 public:
  FleetCache(RedisConnection& commands, std::string key_prefix, LocalCache& local);
  void get(const std::string& key, Found found) override;
  void put(const std::string& key, std::string value, std::chrono::milliseconds ttl) override;
  void erase(const std::string& key) override;

  struct Counts {
    std::uint64_t gets = 0, hits = 0, local = 0;  // local: answered by this node's copy
    std::uint64_t puts = 0, calls = 0;            // calls: MGETs
  };
  const Counts& counts() const { return counts_; }  // on the store's thread
  static constexpr std::size_t max_batch = 256;

 private:
  void flush();  // on the store's thread
  RedisConnection& redis_;
  std::string prefix_;
  LocalCache& local_;
  std::vector<std::pair<std::string, Found>> waiting_;    // the store's thread only
  Counts counts_;                                         // the store's thread only
  std::shared_ptr<int> alive_ = std::make_shared<int>();  // posted work outliving this does nothing
};

}  // namespace geomx::state
