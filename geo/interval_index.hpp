#pragma once
// Longest-prefix match flattened into intervals: the address space of one
// family is cut into maximal intervals of constant answer (`slots`, sorted by
// start, the first starting at 0). A DXR-style index finds the interval:
// a direct table on the top 16 bits, then variable-stride child tables only
// where intervals are dense, ending either in a value (the whole bucket has
// one answer) or in a short run of at most `leaf_max` slots scanned without
// branches. Where all boundaries of a bucket lie in one narrower prefix, a
// skip entry tests that prefix once (path compression), so memory stays
// proportional to the number of intervals however they cluster.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "geo/range.hpp"

namespace geomx::geo {

template <class Key>
class IntervalIndex {
 public:
  struct Slot {
    Key start;
    std::uint32_t value;
  };

  IntervalIndex() : IntervalIndex(std::vector<Slot>{{Key(0), 0}}) {}
  // `slots` sorted by start, slots[0].start == 0, starts unique.
  explicit IntervalIndex(std::vector<Slot> slots);

  std::uint32_t value_at(Key key) const noexcept {
    unsigned used = root_bits;
    std::uint32_t e = nodes_[static_cast<std::size_t>(key >> (width - root_bits))];
    for (;;) {
      const std::uint32_t tag = e >> 30;
      if (tag == child_tag) {
        const unsigned stride = (e >> 25) & 31;
        used += stride;
        const auto i = static_cast<std::uint32_t>(key >> (width - used)) & ((1u << stride) - 1);
        e = nodes_[(e & offset_mask) + i];
      } else if (tag == skip_tag) {
        const Skip& k = skips_[e & value_mask];
        const Key top = key & static_cast<Key>(~low_mask(width - k.length, width));
        if (top != k.prefix) return top < k.prefix ? k.below : k.above;
        used = k.length;
        e = k.entry;
      } else {
        break;
      }
    }
    if ((e >> 30) == value_tag) return e & value_mask;
    const Slot* s = slots_.data() + (e & offset_mask);
    const unsigned count = ((e >> 25) & 31) + 1;
    unsigned j = 0;
    for (unsigned i = 1; i < count; ++i) j += s[i].start <= key;
    return s[j].value;
  }

  // Index of the slot whose interval holds `key` (binary search; for tools).
  std::size_t interval_of(Key key) const {
    auto it = std::upper_bound(slots_.begin(), slots_.end(), key,
                               [](Key k, const Slot& s) { return k < s.start; });
    return static_cast<std::size_t>(it - slots_.begin()) - 1;
  }
  Range<Key> interval(std::size_t i) const {
    return {slots_[i].start, i + 1 < slots_.size() ? Key(slots_[i + 1].start - 1) : key_max<Key>};
  }
  const std::vector<Slot>& slots() const { return slots_; }
  std::size_t node_bytes() const {
    return nodes_.capacity() * sizeof(std::uint32_t) + skips_.capacity() * sizeof(Skip);
  }
  std::size_t memory_bytes() const { return node_bytes() + slots_.capacity() * sizeof(Slot); }

 private:
  static constexpr unsigned width = key_width<Key>;
  static constexpr unsigned root_bits = 16;
  static constexpr unsigned leaf_max = 8;
  static constexpr std::uint32_t value_tag = 0, range_tag = 1, child_tag = 2, skip_tag = 3;

  // Every boundary inside a bucket lies in prefix/length: addresses of the
  // bucket before it answer `below`, after it `above`, inside it `entry`.
  struct Skip {
    Key prefix;
    std::uint32_t below, above, entry;
    unsigned length;
  };
  static constexpr std::uint32_t offset_mask = (1u << 25) - 1, value_mask = (1u << 30) - 1;

  // The buckets of a node are consecutive, so the slots they hold are found
  // in one forward sweep (first: the slot holding `lo`), not a search each.
  void fill_node(std::size_t offset, Key lo, unsigned used, unsigned stride, std::size_t first);
  // The bucket starting at lo (its first `used` bits fixed) holds slots
  // first..last.
  std::uint32_t make_entry(Key lo, unsigned used, std::size_t first, std::size_t last);
  static std::uint32_t checked(std::size_t offset) {
    if (offset > offset_mask) throw std::length_error("geo table too large for its index");
    return static_cast<std::uint32_t>(offset);
  }

  std::vector<std::uint32_t> nodes_;
  std::vector<Skip> skips_;
  std::vector<Slot> slots_;
};

template <class Key>
IntervalIndex<Key>::IntervalIndex(std::vector<Slot> slots) : slots_(std::move(slots)) {
  if (slots_.empty() || slots_.front().start != 0)
    throw std::invalid_argument("interval index: slots must start at address 0");
  nodes_.resize(std::size_t{1} << root_bits);
  fill_node(0, Key(0), 0, root_bits, 0);
  nodes_.shrink_to_fit();
  skips_.shrink_to_fit();
  slots_.shrink_to_fit();
}

template <class Key>
void IntervalIndex<Key>::fill_node(std::size_t offset, Key lo, unsigned used, unsigned stride,
                                   std::size_t first) {
  used += stride;
  const unsigned host = width - used;
  const Key span = static_cast<Key>(low_mask(host, width));
  const std::size_t buckets = std::size_t{1} << stride;
  for (std::size_t i = 0; i < buckets; ++i) {
    const Key b_lo = lo | static_cast<Key>(Key(i) << host), b_hi = b_lo | span;
    if (first + 1 == slots_.size() || slots_[first + 1].start > b_hi) {
      // A run of buckets inside slot `first` (up to the bucket where the
      // next slot starts) answers its value.
      std::size_t run = buckets - i;
      if (first + 1 < slots_.size()) {
        const Key before_next = static_cast<Key>(slots_[first + 1].start - b_lo) >> host;
        if (before_next < Key(run)) run = static_cast<std::size_t>(before_next);
      }
      const std::uint32_t entry = make_entry(b_lo, used, first, first);
      std::fill_n(nodes_.begin() + static_cast<std::ptrdiff_t>(offset + i), run, entry);
      i += run - 1;
      if (first + 1 < slots_.size() && i + 1 < buckets &&
          slots_[first + 1].start == Key(lo | static_cast<Key>(Key(i + 1) << host)))
        ++first;
      continue;
    }
    std::size_t last = first;
    while (last + 1 < slots_.size() && slots_[last + 1].start <= b_hi) ++last;
    nodes_[offset + i] = make_entry(b_lo, used, first, last);  // may grow nodes_
    // The next bucket starts at b_hi + 1: in slot `last`, or in the next one
    // if that starts exactly there.
    first = last + 1 < slots_.size() && i + 1 < buckets && slots_[last + 1].start == Key(b_hi + 1)
                ? last + 1
                : last;
  }
}

template <class Key>
std::uint32_t IntervalIndex<Key>::make_entry(Key lo, unsigned used, std::size_t first,
                                             std::size_t last) {
  const std::size_t i0 = first, count = last - first + 1;
  if (count == 1) {
    if (slots_[i0].value > value_mask) throw std::length_error("geo table: too many values");
    return (value_tag << 30) | slots_[i0].value;
  }
  if (count <= leaf_max)
    return (range_tag << 30) | (static_cast<std::uint32_t>(count - 1) << 25) | checked(i0);
  // About one interval per child bucket; `count > 1` implies host bits remain.
  const unsigned stride =
      std::clamp<unsigned>(std::bit_width(count - 1), 1, std::min<unsigned>(16, width - used));
  // If a child table would put every boundary in one bucket, skip to the
  // prefix they share instead.
  const Key first_start = slots_[i0 + 1].start, last_start = slots_[last].start;
  const unsigned common = width - bit_width_of(Key(first_start ^ last_start));
  if (common >= used + stride) {
    const Key prefix = first_start & static_cast<Key>(~low_mask(width - common, width));
    // Every boundary lies in the prefix: it starts in slot i0, or in i0 + 1
    // when that begins exactly at the prefix, and ends in `last`.
    const std::size_t inner_first = first_start == prefix ? i0 + 1 : i0;
    const std::uint32_t inner = make_entry(prefix, common, inner_first, last);
    skips_.push_back({prefix, slots_[i0].value, slots_[last].value, inner, common});
    if (skips_.size() - 1 > value_mask)
      throw std::length_error("geo table too large for its index");
    return (skip_tag << 30) | static_cast<std::uint32_t>(skips_.size() - 1);
  }
  const std::size_t child = nodes_.size();
  nodes_.resize(child + (std::size_t{1} << stride));
  fill_node(child, lo, used, stride, i0);
  return (child_tag << 30) | (stride << 25) | checked(child);
}

}  // namespace geomx::geo
