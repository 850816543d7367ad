#pragma once
// Which member of a pool serves a client, and in which order the others are
// tried when it is down. Pure: health, load and the round-robin sequence are
// passed in.
#include <cstdint>
#include <vector>

#include "conf/config.hpp"

namespace geomx::policy {

// What the proxy knows about the members right now.
class MemberStates {
 public:
  virtual ~MemberStates() = default;
  virtual bool up(std::size_t pool, std::size_t member) const = 0;
  virtual std::uint32_t active(std::size_t pool, std::size_t member) const = 0;
};

// Every member up and idle: what `geomx explain` assumes.
class AllUp final : public MemberStates {
 public:
  bool up(std::size_t, std::size_t) const override { return true; }
  std::uint32_t active(std::size_t, std::size_t) const override { return 0; }
};

// Members in the order to try them: the primary members by the pool's
// balance mode (the first is the one the client belongs to), then the backup
// members in config order. Stable for a given client, sequence and load.
std::vector<std::size_t> fallback_order(const conf::Pool& pool, std::size_t pool_index,
                                        const geo::Address& client, const MemberStates& states,
                                        std::uint64_t sequence);

}  // namespace geomx::policy
