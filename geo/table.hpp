#pragma once
// The one compiled lookup table: every address of both families maps to a
// GeoValue (country, list memberships). Immutable once built; lookups never
// allocate and never touch libmaxminddb.
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "geo/address.hpp"
#include "geo/interval_index.hpp"
#include "geo/range.hpp"

namespace geomx::geo {

// A two-character country code as the databases spell it (ISO 3166-1
// alpha-2, plus codes such as EU or A1); ZZ means no database knows.
class Country {
 public:
  constexpr Country() = default;
  // Two letters or digits, upper-cased; nullopt for anything else.
  static std::optional<Country> parse(std::string_view text);
  bool known() const { return code_ != std::array<char, 2>{'Z', 'Z'}; }
  std::string_view code() const { return {code_.data(), 2}; }
  friend auto operator<=>(const Country&, const Country&) = default;

 private:
  std::array<char, 2> code_{'Z', 'Z'};
};

inline constexpr std::size_t max_lists = 64;

struct GeoValue {
  Country country;
  std::uint32_t asn = 0;    // autonomous system (from [geo] asn_databases); 0: unknown
  std::uint64_t lists = 0;  // bit i set: the address is in list i
  // IPv6 only, from .mmdb aliases (2002::/16, ::/96, ...): nonzero means the
  // answer is that of the IPv4 address embedded at this bit offset.
  std::uint8_t v4_at = 0;
  std::uint8_t alias = 0;  // with v4_at: which row of the table's alias map
  friend bool operator==(const GeoValue&, const GeoValue&) = default;
};

template <class Key>
struct Span {
  Range<Key> range;
  GeoValue value;
};

// What one database knows, per family, sorted and non-overlapping: a
// country database's spans carry countries, an ASN database's carry asn
// (and its organisations, sorted by number).
struct GeoData {
  std::string source;
  std::vector<Span<std::uint32_t>> v4;
  std::vector<Span<u128>> v6;
  std::vector<std::pair<std::uint32_t, std::string>> organisations = {};
};

class GeoTable {
 public:
  GeoTable();

  const GeoValue& lookup(const Address& a) const noexcept {
    if (a.is_v4()) return values_[v4_.value_at(a.v4_bits())];
    const GeoValue& v = values_[v6_.value_at(a.v6_bits())];
    if (v.v4_at == 0) return v;
    // An aliased address: the embedded IPv4 address's country, with the
    // list memberships of the IPv6 address itself.
    const auto embedded = static_cast<std::uint32_t>(a.v6_bits() >> (96 - v.v4_at));
    return values_[alias_map_[v.alias][v4_.value_at(embedded)]];
  }
  // The largest network around `a` in which every address has a's answer.
  Prefix network(const Address& a) const;

  // The organisation an ASN database names for `asn` ("" if none).
  std::string_view organisation(std::uint32_t asn) const;
  bool has_asn_data() const { return has_asn_; }
  const std::vector<std::string>& list_names() const { return list_names_; }
  std::optional<std::size_t> list_index(std::string_view name) const;
  std::size_t interval_count(Family f) const;
  std::size_t memory_bytes() const;
  const IntervalIndex<std::uint32_t>& v4_index() const { return v4_; }
  const IntervalIndex<u128>& v6_index() const { return v6_; }
  // Every address of both families whose answer satisfies `pred`, as ranges.
  // Aliased IPv6 ranges are left out: their addresses answer as IPv4.
  RangeSet select(const std::function<bool(const GeoValue&)>& pred) const;

 private:
  friend class TableBuilder;
  std::vector<GeoValue> values_;
  // alias_map_[v.alias][IPv4 value] = the value an aliased IPv6 address answers
  std::vector<std::vector<std::uint32_t>> alias_map_;
  IntervalIndex<std::uint32_t> v4_;
  IntervalIndex<u128> v6_;
  std::vector<std::string> list_names_;
  std::vector<std::pair<std::uint32_t, std::string>> organisations_;  // sorted by asn
  bool has_asn_ = false;
};

class ValueInterner;

class TableBuilder {
 public:
  // Country databases in priority order: for each address the first
  // database that knows it wins.
  void add_database(GeoData data);
  // ASN databases, in priority order too: they set GeoValue::asn only.
  void add_asn_database(GeoData data);
  // A named list: the networks in `ranges` and every address whose country
  // is in `countries` or whose AS is in `asns`. Its index is the bit in
  // GeoValue::lists.
  std::size_t add_list(std::string name, RangeSet ranges, std::vector<Country> countries = {},
                       std::vector<std::uint32_t> asns = {});
  GeoTable build() &&;

 private:
  std::uint64_t country_lists(Country c) const;
  std::uint64_t asn_lists(std::uint32_t asn) const;
  void link_aliases(GeoTable& table, ValueInterner& interner) const;

  std::vector<GeoData> databases_;
  std::vector<GeoData> asn_databases_;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> asn_lists_;  // asn -> list bits, sorted
  std::vector<std::string> list_names_;
  std::vector<RangeSet> lists_;
  std::vector<std::pair<Country, std::uint64_t>> country_lists_;  // country -> list bits
};

}  // namespace geomx::geo
