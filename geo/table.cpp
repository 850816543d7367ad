#include "geo/table.hpp"

#include <algorithm>
#include <cctype>
#include <unordered_map>

#include <fmt/format.h>

namespace geomx::geo {

std::optional<Country> Country::parse(std::string_view text) {
  if (text.size() != 2) return std::nullopt;
  Country c;
  for (std::size_t i = 0; i < 2; ++i) {
    const auto ch = static_cast<unsigned char>(text[i]);
    if (!std::isalnum(ch)) return std::nullopt;
    c.code_[i] = static_cast<char>(std::toupper(ch));
  }
  return c;
}

GeoTable::GeoTable() : values_{GeoValue{}} {}

std::optional<std::size_t> GeoTable::list_index(std::string_view name) const {
  auto it = std::find(list_names_.begin(), list_names_.end(), name);
  if (it == list_names_.end()) return std::nullopt;
  return static_cast<std::size_t>(it - list_names_.begin());
}

std::size_t GeoTable::interval_count(Family f) const {
  return f == Family::v4 ? v4_.slots().size() : v6_.slots().size();
}

std::size_t GeoTable::memory_bytes() const {
  std::size_t bytes =
      v4_.memory_bytes() + v6_.memory_bytes() + values_.capacity() * sizeof(GeoValue);
  for (const auto& row : alias_map_) bytes += row.capacity() * sizeof(std::uint32_t);
  for (const auto& [asn, org] : organisations_) bytes += sizeof(asn) + sizeof(org) + org.capacity();
  return bytes;
}

std::string_view GeoTable::organisation(std::uint32_t asn) const {
  auto it = std::lower_bound(organisations_.begin(), organisations_.end(), asn,
                             [](const auto& e, std::uint32_t n) { return e.first < n; });
  return it != organisations_.end() && it->first == asn ? std::string_view(it->second) : "";
}

namespace {

template <class Key>
Prefix widest_within(Key key, Range<Key> r) {
  constexpr unsigned width = key_width<Key>;
  unsigned length = width;
  while (length > 0) {
    const Key host = static_cast<Key>(low_mask(width - length + 1, width));
    if ((key & ~host) < r.first || (key | host) > r.last) break;
    --length;
  }
  return Prefix::containing(to_address(key), length);
}

}  // namespace

Prefix GeoTable::network(const Address& a) const {
  if (a.is_v4()) return widest_within(a.v4_bits(), v4_.interval(v4_.interval_of(a.v4_bits())));
  const auto r = v6_.interval(v6_.interval_of(a.v6_bits()));
  const GeoValue& v = values_[v6_.value_at(a.v6_bits())];
  if (v.v4_at == 0) return widest_within(a.v6_bits(), r);
  const auto embedded = static_cast<std::uint32_t>(a.v6_bits() >> (96 - v.v4_at));
  const auto inner = widest_within(embedded, v4_.interval(v4_.interval_of(embedded)));
  return Prefix::containing(Address::v6_raw(a.v6_bits()), v.v4_at + inner.length());
}

RangeSet GeoTable::select(const std::function<bool(const GeoValue&)>& pred) const {
  RangeSet out;
  auto collect = [&](const auto& index, auto& ranges) {
    for (std::size_t i = 0; i < index.slots().size(); ++i) {
      const GeoValue& v = values_[index.slots()[i].value];
      if (v.v4_at == 0 && pred(v)) ranges.push_back(index.interval(i));
    }
  };
  collect(v4_, out.v4);
  collect(v6_, out.v6);
  return out;
}

void TableBuilder::add_database(GeoData data) {
  databases_.push_back(std::move(data));
}

void TableBuilder::add_asn_database(GeoData data) {
  // Aliased IPv6 networks answer with the embedded IPv4 address's AS.
  std::erase_if(data.v6, [](const auto& s) { return s.value.v4_at != 0; });
  asn_databases_.push_back(std::move(data));
}

std::size_t TableBuilder::add_list(std::string name, RangeSet ranges,
                                   std::vector<Country> countries,
                                   std::vector<std::uint32_t> asns) {
  if (lists_.size() == max_lists)
    throw std::length_error(fmt::format("list '{}': at most {} lists", name, max_lists));
  const std::uint64_t bit = std::uint64_t{1} << lists_.size();
  for (Country c : countries) {
    auto it = std::find_if(country_lists_.begin(), country_lists_.end(),
                           [&](const auto& e) { return e.first == c; });
    if (it == country_lists_.end()) it = country_lists_.insert(country_lists_.end(), {c, 0});
    it->second |= bit;
  }
  for (std::uint32_t asn : asns) {
    auto it = std::lower_bound(asn_lists_.begin(), asn_lists_.end(), asn,
                               [](const auto& e, std::uint32_t n) { return e.first < n; });
    if (it == asn_lists_.end() || it->first != asn) it = asn_lists_.insert(it, {asn, 0});
    it->second |= bit;
  }
  list_names_.push_back(std::move(name));
  lists_.push_back(std::move(ranges));
  return lists_.size() - 1;
}

namespace {

struct ValueHash {
  std::size_t operator()(const GeoValue& v) const {
    const auto code = v.country.code();
    return std::hash<std::uint64_t>{}(v.lists * 0x9e3779b97f4a7c15ull ^
                                      (std::uint64_t(v.asn) << 32 |
                                       std::uint64_t(std::uint8_t(code[0])) << 16 |
                                       std::uint64_t(std::uint8_t(code[1])) << 8 | v.v4_at));
  }
};

}  // namespace

class ValueInterner {
 public:
  explicit ValueInterner(std::vector<GeoValue>& values) : values_(values) {
    for (std::uint32_t i = 0; i < values_.size(); ++i) ids_.emplace(values_[i], i);
  }
  std::uint32_t id(const GeoValue& v) {
    auto [it, added] = ids_.try_emplace(v, static_cast<std::uint32_t>(values_.size()));
    if (added) values_.push_back(v);
    return it->second;
  }
  GeoValue value(std::uint32_t id) const { return values_[id]; }

 private:
  std::vector<GeoValue>& values_;
  std::unordered_map<GeoValue, std::uint32_t, ValueHash> ids_;
};

namespace {

enum class EventKind : std::uint8_t { database_end, list_end, database_start, list_start };

template <class Key>
struct Event {
  Key key;
  std::uint32_t value;  // database_start: interned value
  std::uint16_t index;  // database or list index
  EventKind kind;
};

// The start and end events of every database span and list range, in
// address order (ends before starts at the same address).
template <class Key>
std::vector<Event<Key>> sweep_events(const std::vector<const std::vector<Span<Key>>*>& databases,
                                     const std::vector<const std::vector<Range<Key>>*>& lists,
                                     ValueInterner& interner) {
  using enum EventKind;
  std::vector<Event<Key>> events;
  for (std::uint16_t d = 0; d < databases.size(); ++d) {
    for (const auto& s : *databases[d]) {
      GeoValue base{s.value.country, s.value.asn, 0, s.value.v4_at};
      events.push_back({s.range.first, interner.id(base), d, database_start});
      if (s.range.last != key_max<Key>)
        events.push_back({Key(s.range.last + 1), 0, d, database_end});
    }
  }
  for (std::uint16_t l = 0; l < lists.size(); ++l) {
    for (const auto& r : *lists[l]) {
      events.push_back({r.first, 0, l, list_start});
      if (r.last != key_max<Key>) events.push_back({Key(r.last + 1), 0, l, list_end});
    }
  }
  auto before = [](const Event<Key>& a, const Event<Key>& b) {
    return a.key < b.key || (a.key == b.key && a.kind < b.kind);
  };
  if (!std::is_sorted(events.begin(), events.end(), before))
    std::sort(events.begin(), events.end(), before);
  return events;
}

// Sweeps the events in address order and emits the maximal intervals of
// constant answer. `databases` holds the country databases, then (from
// `country_dbs` on) the ASN ones; `member_bits` gives the list bits that
// follow from a value's country and AS.
template <class Key, class MemberBits>
std::vector<typename IntervalIndex<Key>::Slot> sweep(
    const std::vector<const std::vector<Span<Key>>*>& databases, std::size_t country_dbs,
    const std::vector<const std::vector<Range<Key>>*>& lists, MemberBits member_bits,
    ValueInterner& interner) {
  using enum EventKind;
  const auto events = sweep_events(databases, lists, interner);
  constexpr std::uint32_t none = ~0u;
  std::vector<std::uint32_t> active(databases.size(), none);
  std::vector<std::uint32_t> depth(lists.size(), 0);
  std::uint64_t members = 0;
  GeoValue unknown;
  unknown.lists = member_bits(unknown);
  std::vector<typename IntervalIndex<Key>::Slot> slots{{Key(0), interner.id(unknown)}};
  auto first_active = [&](std::size_t from, std::size_t to) {
    for (std::size_t d = from; d < to; ++d)
      if (active[d] != none) return active[d];
    return none;
  };
  for (std::size_t i = 0; i < events.size();) {
    const Key key = events[i].key;
    for (; i < events.size() && events[i].key == key; ++i) {
      const Event<Key>& e = events[i];
      switch (e.kind) {
        case database_start:
          active[e.index] = e.value;
          break;
        case database_end:
          active[e.index] = none;
          break;
        case list_start:
          if (depth[e.index]++ == 0) members |= std::uint64_t{1} << e.index;
          break;
        case list_end:
          if (--depth[e.index] == 0) members &= ~(std::uint64_t{1} << e.index);
          break;
      }
    }
    GeoValue value;  // ZZ unless a database knows
    if (const auto c = first_active(0, country_dbs); c != none) value = interner.value(c);
    // An aliased address takes its AS, like its country, from IPv4.
    if (const auto a = first_active(country_dbs, active.size()); a != none && value.v4_at == 0)
      value.asn = interner.value(a).asn;
    value.lists = members;
    if (value.v4_at == 0) value.lists |= member_bits(value);
    const std::uint32_t id = interner.id(value);
    if (slots.back().start == key) {
      slots.back().value = id;
      if (slots.size() > 1 && slots[slots.size() - 2].value == id) slots.pop_back();
    } else if (slots.back().value != id) {
      slots.push_back({key, id});
    }
  }
  return slots;
}

template <class Key>
void check_disjoint(const std::string& source, std::vector<Span<Key>>& spans) {
  auto by_first = [](const auto& a, const auto& b) { return a.range.first < b.range.first; };
  if (!std::is_sorted(spans.begin(), spans.end(), by_first))
    std::sort(spans.begin(), spans.end(), by_first);
  for (std::size_t i = 1; i < spans.size(); ++i)
    if (spans[i].range.first <= spans[i - 1].range.last)
      throw std::invalid_argument(fmt::format("{}: overlapping ranges {} and {}", source,
                                              to_address(spans[i - 1].range.first).to_string(),
                                              to_address(spans[i].range.first).to_string()));
}

}  // namespace

std::uint64_t TableBuilder::country_lists(Country c) const {
  for (const auto& [country, bits] : country_lists_)
    if (country == c) return bits;
  return 0;
}

std::uint64_t TableBuilder::asn_lists(std::uint32_t asn) const {
  auto it = std::lower_bound(asn_lists_.begin(), asn_lists_.end(), asn,
                             [](const auto& e, std::uint32_t n) { return e.first < n; });
  return it != asn_lists_.end() && it->first == asn ? it->second : 0;
}

// For every aliased IPv6 value, the value for each possible IPv4 answer:
// its country (and the lists that follow from it) with the IPv6 lists.
void TableBuilder::link_aliases(GeoTable& table, ValueInterner& interner) const {
  const std::size_t n = table.values_.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (table.values_[i].v4_at == 0) continue;
    if (table.alias_map_.size() == 256) throw std::length_error("geo table: too many aliases");
    std::vector<std::uint32_t> row(n);
    for (std::size_t j = 0; j < n; ++j) {
      const GeoValue v4 = table.values_[j];
      row[j] = interner.id(
          GeoValue{v4.country, v4.asn,
                   table.values_[i].lists | country_lists(v4.country) | asn_lists(v4.asn), 0, 0});
    }
    table.values_[i].alias = static_cast<std::uint8_t>(table.alias_map_.size());
    table.alias_map_.push_back(std::move(row));
  }
}

GeoTable TableBuilder::build() && {
  GeoTable table;
  ValueInterner interner(table.values_);
  std::vector<const std::vector<Span<std::uint32_t>>*> db4;
  std::vector<const std::vector<Span<u128>>*> db6;
  for (auto* group : {&databases_, &asn_databases_}) {
    for (auto& db : *group) {
      check_disjoint(db.source, db.v4);
      check_disjoint(db.source, db.v6);
      db4.push_back(&db.v4);
      db6.push_back(&db.v6);
    }
  }
  const std::size_t country_dbs = databases_.size();
  auto member_bits = [this](const GeoValue& v) {
    return country_lists(v.country) | (v.asn ? asn_lists(v.asn) : 0);
  };
  std::vector<const std::vector<Range4>*> list4;
  std::vector<const std::vector<Range6>*> list6;
  for (auto& l : lists_) {
    list4.push_back(&l.v4);
    list6.push_back(&l.v6);
  }
  table.v4_ = IntervalIndex<std::uint32_t>(sweep(db4, country_dbs, list4, member_bits, interner));
  table.v6_ = IntervalIndex<u128>(sweep(db6, country_dbs, list6, member_bits, interner));
  link_aliases(table, interner);
  table.list_names_ = std::move(list_names_);
  // The first ASN database that names an AS names it.
  for (auto& db : asn_databases_)
    for (auto& org : db.organisations) table.organisations_.push_back(std::move(org));
  std::stable_sort(table.organisations_.begin(), table.organisations_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  table.organisations_.erase(
      std::unique(table.organisations_.begin(), table.organisations_.end(),
                  [](const auto& a, const auto& b) { return a.first == b.first; }),
      table.organisations_.end());
  table.has_asn_ = !asn_databases_.empty();
  return table;
}

}  // namespace geomx::geo
