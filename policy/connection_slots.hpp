#pragma once
// Connection counts shared by all I/O threads: the global max_connections,
// a small allowance of connections beyond it that are answered with 421
// (the rest are closed at once, so a flood cannot hold descriptors), the
// tarpit's own slots, and max_connections_per_ip on the real client address. Slots are RAII.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "geo/address.hpp"
#include "geo/hash.hpp"

namespace geomx::policy {

class ConnectionSlots {
 public:
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& o) noexcept : owner_(o.owner_), counter_(o.counter_), address_(o.address_) {
      o.owner_ = nullptr;
      o.counter_ = nullptr;
    }
    Slot& operator=(Slot&&) = delete;
    ~Slot() { release(); }
    void release();

   private:
    friend class ConnectionSlots;
    ConnectionSlots* owner_ = nullptr;               // per-IP slot: the map's owner
    std::atomic<std::uint32_t>* counter_ = nullptr;  // counted slot: its counter
    geo::Address address_;
  };

  // A slot among `max` connections in all; nullopt when all are taken.
  std::optional<Slot> enter(std::uint32_t max) { return take(active_, max); }
  // Beyond max_connections: a slot among `max` that get a 421 reply.
  std::optional<Slot> enter_spare(std::uint32_t max) { return take(spare_, max); }
  // A tarpit: a slot among `max` tarpitted clients (they hold no other).
  std::optional<Slot> enter_tarpit(std::uint32_t max) { return take(tarpit_, max); }
  // A slot among `max` from this address (0: no limit); nullopt when full.
  std::optional<Slot> enter_ip(const geo::Address& client, std::uint32_t max);
  std::uint32_t active() const { return active_.load(std::memory_order_relaxed); }
  std::uint32_t tarpitted() const { return tarpit_.load(std::memory_order_relaxed); }

 private:
  static std::optional<Slot> take(std::atomic<std::uint32_t>& counter, std::uint32_t max);

  std::atomic<std::uint32_t> active_{0}, spare_{0}, tarpit_{0};
  std::mutex mutex_;
  std::unordered_map<geo::Address, std::uint32_t, geo::AddressHash> per_ip_;
};

}  // namespace geomx::policy
