#include "policy/balance.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "geo/hash.hpp"

namespace geomx::policy {
namespace {

using geo::mix64;

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// The member whose weighted share of [0, total) holds `point`.
std::size_t by_weight(const conf::Pool& pool, const std::vector<std::size_t>& primaries,
                      std::uint64_t point) {
  if (primaries.empty()) return 0;
  for (std::size_t i = 0; i < primaries.size(); ++i) {
    const std::uint32_t w = pool.members[primaries[i]].weight;
    if (point < w) return i;
    point -= w;
  }
  return primaries.size() - 1;
}

// Rotates `primaries` so that position `first` comes first, keeping the cycle.
void rotate_to(std::vector<std::size_t>& primaries, std::size_t first) {
  std::rotate(primaries.begin(), primaries.begin() + static_cast<std::ptrdiff_t>(first),
              primaries.end());
}

}  // namespace

std::vector<std::size_t> fallback_order(const conf::Pool& pool, std::size_t pool_index,
                                        const geo::Address& client, const MemberStates& states,
                                        std::uint64_t sequence) {
  std::vector<std::size_t> order, backups;
  for (std::size_t i = 0; i < pool.members.size(); ++i)
    (pool.members[i].backup ? backups : order).push_back(i);
  std::uint64_t total = 0;
  for (auto i : order) total += pool.members[i].weight;

  switch (pool.balance) {
    case conf::Balance::source_split: {
      // Contiguous slices of the address space in member order, by weight:
      // two equal members split at 128.0.0.0 and 8000::.
      const std::uint64_t top = client.is_v4() ? std::uint64_t{client.v4_bits()} << 32
                                               : static_cast<std::uint64_t>(client.v6_bits() >> 64);
      const auto point = static_cast<std::uint64_t>((unsigned __int128)top * total >> 64);
      rotate_to(order, by_weight(pool, order, point));
      break;
    }
    case conf::Balance::hash: {
      // Weighted rendezvous hashing on the client's /24 or /64: a client
      // sticks to a member, and a new member takes only its own share.
      const std::uint64_t key = client.is_v4() ? client.v4_bits() >> 8
                                               : static_cast<std::uint64_t>(client.v6_bits() >> 64);
      std::vector<std::pair<double, std::size_t>> scored;
      for (auto i : order) {
        const std::uint64_t h = mix64(mix64(key) ^ fnv1a(pool.members[i].address.to_string()));
        const double u = (static_cast<double>(h >> 11) + 0.5) / 9007199254740992.0;  // (0,1)
        scored.emplace_back(-static_cast<double>(pool.members[i].weight) / std::log(u), i);
      }
      std::sort(scored.begin(), scored.end(), [](auto& a, auto& b) { return a.first > b.first; });
      for (std::size_t k = 0; k < scored.size(); ++k) order[k] = scored[k].second;
      break;
    }
    case conf::Balance::round_robin:
      rotate_to(order, by_weight(pool, order, total ? sequence % total : 0));
      break;
    case conf::Balance::least_conn: {
      // Fewest connections per unit of weight, counting the new one (as
      // haproxy does, so weights also split idle members); ties rotate with
      // the sequence so that equal members share the load.
      rotate_to(order, order.empty() ? 0 : sequence % order.size());
      auto load = [&](std::size_t m, std::size_t other) {
        return (std::uint64_t{states.active(pool_index, m)} + 1) * pool.members[other].weight;
      };
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t a, std::size_t b) { return load(a, b) < load(b, a); });
      break;
    }
    case conf::Balance::first:
      break;
  }
  order.insert(order.end(), backups.begin(), backups.end());
  return order;
}

}  // namespace geomx::policy
