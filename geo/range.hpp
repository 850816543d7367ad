#pragma once
// Inclusive address ranges over the raw integer of one family: std::uint32_t
// for IPv4, u128 for IPv6. The table, the loaders and the aggregator share them.
#include <cstdint>
#include <limits>
#include <vector>

#include "geo/address.hpp"

namespace geomx::geo {

template <class Key>
struct Range {
  Key first = 0;
  Key last = 0;
  friend bool operator==(const Range&, const Range&) = default;
};

using Range4 = Range<std::uint32_t>;
using Range6 = Range<u128>;

template <class Key>
inline constexpr unsigned key_width = std::is_same_v<Key, std::uint32_t> ? 32 : 128;

template <class Key>
inline constexpr Key key_max = std::is_same_v<Key, std::uint32_t> ? Key(0xffffffffu)
                                                                  : Key(~u128{0});

// Bits needed to represent v (std::bit_width, also for u128).
inline unsigned bit_width_of(std::uint32_t v) {
  return v == 0 ? 0 : 32 - static_cast<unsigned>(__builtin_clz(v));
}
inline unsigned bit_width_of(u128 v) {
  const auto hi = static_cast<std::uint64_t>(v >> 64), lo = static_cast<std::uint64_t>(v);
  if (hi != 0) return 128 - static_cast<unsigned>(__builtin_clzll(hi));
  return lo == 0 ? 0 : 64 - static_cast<unsigned>(__builtin_clzll(lo));
}

template <class Key>
Address to_address(Key bits) {
  if constexpr (std::is_same_v<Key, std::uint32_t>)
    return Address::v4(bits);
  else
    return Address::v6_raw(bits);
}

// IPv4 and IPv6 ranges of one source, kept apart.
struct RangeSet {
  std::vector<Range4> v4;
  std::vector<Range6> v6;
  void add(const Prefix& p);
};

// Sorts and merges overlapping and adjacent ranges in place.
template <class Key>
void merge_ranges(std::vector<Range<Key>>& ranges);

// The fewest prefixes that cover exactly [first, last], ascending.
template <class Key>
void append_prefixes(Range<Key> r, std::vector<Prefix>& out);

// The minimal prefix list covering exactly the addresses of `set`: IPv4 then
// IPv6, ascending. Merges `set` in place first.
std::vector<Prefix> aggregate(RangeSet& set);

}  // namespace geomx::geo
