#include <algorithm>
#include <bit>

#include "geo/range.hpp"

namespace geomx::geo {
namespace {

unsigned trailing_zeros(std::uint32_t v) {
  return v == 0 ? 32 : std::countr_zero(v);
}
unsigned trailing_zeros(u128 v) {
  const auto lo = static_cast<std::uint64_t>(v);
  if (lo != 0) return std::countr_zero(lo);
  const auto hi = static_cast<std::uint64_t>(v >> 64);
  return hi == 0 ? 128 : 64 + std::countr_zero(hi);
}

}  // namespace

void RangeSet::add(const Prefix& p) {
  if (p.family() == Family::v4)
    v4.push_back({p.network().v4_bits(), p.last().v4_bits()});
  else
    v6.push_back({p.network().v6_bits(), p.last().v6_bits()});
}

template <class Key>
void merge_ranges(std::vector<Range<Key>>& ranges) {
  std::sort(ranges.begin(), ranges.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::size_t out = 0;
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (out > 0 &&
        (ranges[out - 1].last == key_max<Key> || ranges[i].first <= ranges[out - 1].last + 1)) {
      ranges[out - 1].last = std::max(ranges[out - 1].last, ranges[i].last);
    } else {
      ranges[out++] = ranges[i];
    }
  }
  ranges.resize(out);
}

template <class Key>
void append_prefixes(Range<Key> r, std::vector<Prefix>& out) {
  constexpr unsigned width = key_width<Key>;
  for (;;) {
    // The largest aligned block that starts at r.first and ends by r.last.
    unsigned k = std::min(trailing_zeros(r.first), width);
    while (k > 0) {
      const Key span = k == width ? key_max<Key> : static_cast<Key>((Key(1) << k) - 1);
      if (static_cast<Key>(r.last - r.first) >= span) break;
      --k;
    }
    out.emplace_back(to_address(r.first), width - k);
    const Key end = r.first + (k == width ? key_max<Key> : static_cast<Key>((Key(1) << k) - 1));
    if (end == r.last) return;
    r.first = end + 1;
  }
}

std::vector<Prefix> aggregate(RangeSet& set) {
  merge_ranges(set.v4);
  merge_ranges(set.v6);
  std::vector<Prefix> out;
  for (const auto& r : set.v4) append_prefixes(r, out);
  for (const auto& r : set.v6) append_prefixes(r, out);
  return out;
}

template void merge_ranges(std::vector<Range4>&);
template void merge_ranges(std::vector<Range6>&);
template void append_prefixes(Range4, std::vector<Prefix>&);
template void append_prefixes(Range6, std::vector<Prefix>&);

}  // namespace geomx::geo
