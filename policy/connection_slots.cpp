#include "policy/connection_slots.hpp"

namespace geomx::policy {

void ConnectionSlots::Slot::release() {
  if (counter_) counter_->fetch_sub(1, std::memory_order_relaxed);
  if (owner_) {
    std::lock_guard lock(owner_->mutex_);
    auto it = owner_->per_ip_.find(address_);
    if (it != owner_->per_ip_.end() && --it->second == 0) owner_->per_ip_.erase(it);
  }
  counter_ = nullptr;
  owner_ = nullptr;
}

std::optional<ConnectionSlots::Slot> ConnectionSlots::take(std::atomic<std::uint32_t>& counter,
                                                           std::uint32_t max) {
  if (counter.fetch_add(1, std::memory_order_relaxed) >= max) {
    counter.fetch_sub(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  std::optional<Slot> s(std::in_place);
  s->counter_ = &counter;
  return s;
}

std::optional<ConnectionSlots::Slot> ConnectionSlots::enter_ip(const geo::Address& client,
                                                               std::uint32_t max) {
  std::optional<Slot> s(std::in_place);
  if (max == 0) return s;  // no limit: nothing to count
  std::lock_guard lock(mutex_);
  auto& n = per_ip_[client];
  if (n >= max) return std::nullopt;  // n >= 1 here: the entry stays
  ++n;
  s->owner_ = this;
  s->address_ = client;
  return s;
}

}  // namespace geomx::policy
