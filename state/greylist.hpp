#pragma once
// Where greylisting keeps its triplets and client networks
// (policy/greylist.hpp): one interface, two stores.
//
// LocalGreyStore: this node's memory, persisted under state_dir (a
// snapshot, greylist.db, and a journal of changes since, greylist.journal;
// each change is written to the journal before the request is answered, so
// a kill -9 loses nothing; the journal is folded into a new snapshot on a
// thread of its own as it grows). Bounded: past `capacity` records the
// expired go, then the least recently seen tenth.
//
// CacheGreyStore: the fleet's (FleetCache: Redis, with this node's copy
// while Redis is down), so a retry that lands on another MX is recognised.
#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "policy/greylist.hpp"
#include "state/cache.hpp"

namespace geomx::state {

class GreyStore {
 public:
  virtual ~GreyStore() = default;
  using Found = std::function<void(std::optional<policy::GreyRecord>)>;
  // The record of `key`, while it lives; from any thread, `found` on any.
  virtual void get(const policy::GreyKey& key, Found found) = 0;
  // Keeps `record` for `ttl` from now, replacing what was there.
  virtual void put(const policy::GreyKey& key, const policy::GreyRecord& record,
                   std::chrono::seconds ttl) = 0;
  // Records held here (nullopt: the store does not say).
  virtual std::optional<std::size_t> size() const = 0;
  // Whether get() calls `found` before it returns (this node's memory).
  virtual bool immediate() const = 0;
  virtual std::string where() const = 0;
};

class LocalGreyStore final : public GreyStore {
 public:
  // `state_dir` empty: memory only. `now` gives unix seconds. Throws
  // std::runtime_error when a file is there and cannot be read (it is not
  // replaced); a file that is not a greylist store is renamed aside and
  // said in problems().
  // `read_only` (geomx explain): reads the files and changes nothing there
  // (no journal opened, nothing renamed or cut; put() keeps in memory).
  LocalGreyStore(std::string state_dir, std::size_t capacity, std::function<std::int64_t()> now,
                 bool read_only = false);
  ~LocalGreyStore() override;
  void get(const policy::GreyKey& key, Found found) override;
  std::optional<policy::GreyRecord> get(const policy::GreyKey& key);
  void put(const policy::GreyKey& key, const policy::GreyRecord& record,
           std::chrono::seconds ttl) override;
  std::optional<std::size_t> size() const override;
  bool immediate() const override { return true; }
  std::string where() const override { return dir_.empty() ? "memory" : journal_; }
  const std::vector<std::string>& problems() const { return problems_; }
  // Journal writes and compactions that failed (a full disk): those records
  // are in memory only, until a restart folds them into the snapshot.
  std::uint64_t write_errors() const { return write_errors_.load(); }
  // Waits for a snapshot being written (tests, and the destructor).
  void settle();

  // One record as the files hold it (little-endian on the machines we run on).
  struct Stored {
    policy::GreyKey key;
    std::uint32_t first, last, passes, expires;
  };
  static_assert(sizeof(Stored) == 32);

 private:
  struct Value {
    std::uint32_t first, last, passes, expires;
  };
  struct KeyHash {
    std::size_t operator()(const policy::GreyKey& k) const;  // the key is SHA-256: its bytes
  };
  void load();
  std::string snapshot_data() const;  // the map as a snapshot file holds it
  void read_file(const std::string& path);
  void append(const Stored& s);       // mutex_ held
  void compact();                     // mutex_ held
  void make_room(std::uint32_t now);  // mutex_ held

  std::string dir_, snapshot_, journal_, old_journal_;
  std::size_t capacity_;
  std::function<std::int64_t()> now_;
  mutable std::mutex mutex_;
  std::unordered_map<policy::GreyKey, Value, KeyHash> map_;
  int fd_ = -1;              // the journal, O_APPEND
  off_t journal_bytes_ = 0;  // its size: a short write is cut back to it
  bool stuck_ = false;       // a compaction failed: none until a restart
  std::size_t journal_records_ = 0;
  bool read_only_ = false;
  std::thread writer_;    // the snapshot being written
  bool writing_ = false;  // guarded by mutex_
  std::vector<std::string> problems_;
  std::atomic<std::uint64_t> write_errors_{0};
};

// Values as policy::encode writes them, keyed "grey:HEX" in the cache.
class CacheGreyStore final : public GreyStore {
 public:
  explicit CacheGreyStore(Cache& cache, std::string where)
      : cache_(cache), where_(std::move(where)) {}
  void get(const policy::GreyKey& key, Found found) override;
  void put(const policy::GreyKey& key, const policy::GreyRecord& record,
           std::chrono::seconds ttl) override;
  std::optional<std::size_t> size() const override { return std::nullopt; }
  bool immediate() const override { return false; }
  std::string where() const override { return where_; }

 private:
  Cache& cache_;
  std::string where_;
};

}  // namespace geomx::state
