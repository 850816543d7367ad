#pragma once
// Longest-prefix match flattened into intervals: the address space of one
// family is cut into maximal intervals of constant answer (`slots`, sorted by
// start, the first starting at 0). A DXR-style index finds the interval:
// a direct table on the top 16 bits, then variable-stride child tables only
// where intervals are dense, ending either in a value (the whole bucket has
// one answer) or in a short run of at most `leaf_max` slots scanned without
// branches. Memory stays proportional to the number of intervals.
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
    while ((e >> 30) == child_tag) {
      const unsigned stride = (e >> 25) & 31;
      used += stride;
      const auto i = static_cast<std::uint32_t>(key >> (width - used)) & ((1u << stride) - 1);
      e = nodes_[(e & offset_mask) + i];
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
  std::size_t node_bytes() const { return nodes_.capacity() * sizeof(std::uint32_t); }
  std::size_t memory_bytes() const {
    return nodes_.capacity() * sizeof(std::uint32_t) + slots_.capacity() * sizeof(Slot);
  }

 private:
  static constexpr unsigned width = key_width<Key>;
  static constexpr unsigned root_bits = 16;
  static constexpr unsigned leaf_max = std::is_same_v<Key, std::uint32_t> ? 8 : 8;
  static constexpr std::uint32_t value_tag = 0, range_tag = 1, child_tag = 2;
  static constexpr std::uint32_t offset_mask = (1u << 25) - 1, value_mask = (1u << 30) - 1;

  void fill_node(std::size_t offset, Key lo, unsigned used, unsigned stride);
  std::uint32_t make_entry(Key lo, Key hi, unsigned used);
  static std::uint32_t checked(std::size_t offset) {
    if (offset > offset_mask) throw std::length_error("geo table too large for its index");
    return static_cast<std::uint32_t>(offset);
  }

  std::vector<std::uint32_t> nodes_;
  std::vector<Slot> slots_;
};

template <class Key>
IntervalIndex<Key>::IntervalIndex(std::vector<Slot> slots) : slots_(std::move(slots)) {
  if (slots_.empty() || slots_.front().start != 0)
    throw std::invalid_argument("interval index: slots must start at address 0");
  nodes_.resize(std::size_t{1} << root_bits);
  fill_node(0, Key(0), 0, root_bits);
  nodes_.shrink_to_fit();
  slots_.shrink_to_fit();
}

template <class Key>
void IntervalIndex<Key>::fill_node(std::size_t offset, Key lo, unsigned used, unsigned stride) {
  used += stride;
  const unsigned host = width - used;
  const Key span = static_cast<Key>(low_mask(host, width));
  for (std::size_t i = 0; i < (std::size_t{1} << stride); ++i) {
    const Key b_lo = lo | static_cast<Key>(Key(i) << host);
    nodes_[offset + i] = make_entry(b_lo, b_lo | span, used);
  }
}

template <class Key>
std::uint32_t IntervalIndex<Key>::make_entry(Key lo, Key hi, unsigned used) {
  const std::size_t i0 = interval_of(lo);
  const std::size_t count = interval_of(hi) - i0 + 1;
  if (count == 1) {
    if (slots_[i0].value > value_mask) throw std::length_error("geo table: too many values");
    return (value_tag << 30) | slots_[i0].value;
  }
  if (count <= leaf_max)
    return (range_tag << 30) | (static_cast<std::uint32_t>(count - 1) << 25) | checked(i0);
  // About one interval per child bucket; `count > 1` implies host bits remain.
  const unsigned stride =
      std::clamp<unsigned>(std::bit_width(count - 1), 1, std::min<unsigned>(16, width - used));
  const std::size_t child = nodes_.size();
  nodes_.resize(child + (std::size_t{1} << stride));
  fill_node(child, lo, used, stride);
  return (child_tag << 30) | (stride << 25) | checked(child);
}

}  // namespace geomx::geo
