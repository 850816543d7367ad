#pragma once
// [[limit]]: per-client token buckets (connection rate) and concurrent
// connection counts, per address or per prefix (aggregate_v4/_v6), in a
// table of fixed size: when it is full the least recently seen client with
// no connection open is forgotten (in constant time), so a flood of random
// sources costs no more memory than table_size entries. A client whose last
// connection closes counts as seen then. One table per limit, kept across
// reloads while the limit keeps its name and table_size.
#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "conf/config.hpp"
#include "geo/address.hpp"
#include "geo/hash.hpp"

namespace geomx::policy {

class LimitTable : public std::enable_shared_from_this<LimitTable> {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LimitTable(std::uint32_t capacity) : capacity_(capacity) {}

  // Holds one of the client's concurrent connections until destroyed.
  class Hold {
   public:
    Hold(std::shared_ptr<LimitTable> t, geo::Prefix k) : table_(std::move(t)), key_(k) {}
    Hold(Hold&&) noexcept = default;
    Hold& operator=(Hold&&) = delete;
    ~Hold() {
      if (table_) table_->leave(key_);
    }
    // Let go with this hold (the fleet's count of the same connection).
    void attach(std::shared_ptr<void> also) { also_ = std::move(also); }

   private:
    std::shared_ptr<LimitTable> table_;
    geo::Prefix key_;
    std::shared_ptr<void> also_;
  };

  enum class Verdict { ok, over_rate, over_concurrent };
  // Counts one connection from `client` against `limit`; with a concurrent
  // limit and an ok verdict, `hold` keeps its slot (whatever it held
  // before is let go first).
  Verdict enter(const geo::Address& client, const conf::Limit& limit, Clock::time_point now,
                std::optional<Hold>& hold);
  std::size_t size() const;

 private:
  struct Entry {
    double tokens = 0;
    Clock::time_point refilled;
    std::uint32_t active = 0;
    std::list<geo::Prefix>::iterator lru;  // lru_.end() while active != 0
  };
  static Verdict judge(Entry& e, const conf::Limit& limit, Clock::time_point now);
  void leave(const geo::Prefix& key);
  mutable std::mutex mutex_;
  std::uint32_t capacity_;
  std::list<geo::Prefix> lru_;  // clients with no connection open, most recently seen first
  std::unordered_map<geo::Prefix, Entry, geo::AddressHash> entries_;
};

// The tables of the running limits, by name.
class LimitTables {
 public:
  // The table of each limit of `config` (the same one as before for a limit
  // whose name and table_size stayed); tables of removed limits are dropped.
  std::vector<std::shared_ptr<LimitTable>> for_config(const conf::Config& config);

 private:
  std::mutex mutex_;
  std::map<std::string, std::pair<std::uint32_t, std::shared_ptr<LimitTable>>> tables_;
};

}  // namespace geomx::policy
