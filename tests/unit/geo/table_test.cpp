#include <doctest/doctest.h>

#include <map>
#include <random>

#include "geo/table.hpp"

using namespace geomx::geo;

namespace {

Country cc(const char* code) {
  return *Country::parse(code);
}

Span<std::uint32_t> span4(const char* prefix, const char* country) {
  const auto p = parse_prefix(prefix);
  return {{p.network().v4_bits(), p.last().v4_bits()}, {cc(country), 0, 0}};
}
Span<u128> span6(const char* prefix, const char* country) {
  const auto p = parse_prefix(prefix);
  return {{p.network().v6_bits(), p.last().v6_bits()}, {cc(country), 0, 0}};
}
std::string country_of(const GeoTable& t, const char* ip) {
  return std::string(t.lookup(parse_address(ip)).country.code());
}

// Naive reference: spans in a map, looked up by upper_bound.
template <class Key>
struct Reference {
  std::map<Key, std::pair<Key, Country>> spans;  // first -> (last, country)
  Country at(Key k) const {
    auto it = spans.upper_bound(k);
    if (it == spans.begin()) return {};
    --it;
    return k <= it->second.first ? it->second.second : Country{};
  }
};

// Dense random disjoint spans under `base` (2^bits addresses), so the index
// needs deep child tables; returns the spans and a reference.
template <class Key>
std::pair<std::vector<Span<Key>>, Reference<Key>> random_spans(Key base, unsigned bits, int n,
                                                               std::mt19937_64& rng) {
  const char* codes[] = {"US", "DE", "FR", "CN", "BR", "GB"};
  std::vector<Key> cuts;
  const Key mask = bits >= key_width<Key> ? key_max<Key> : Key((Key(1) << bits) - 1);
  for (int i = 0; i < 2 * n; ++i) cuts.push_back(base + (Key(rng()) & mask));
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<Span<Key>> spans;
  Reference<Key> ref;
  for (std::size_t i = 0; i + 1 < cuts.size(); i += 2) {
    const Country c = cc(codes[rng() % 6]);
    spans.push_back({{cuts[i], cuts[i + 1]}, {c, 0, 0}});
    ref.spans[cuts[i]] = {cuts[i + 1], c};
  }
  return {spans, ref};
}

}  // namespace

TEST_CASE("Country codes") {
  CHECK(Country{}.code() == "ZZ");
  CHECK_FALSE(Country{}.known());
  CHECK(Country::parse("us")->code() == "US");
  CHECK(Country::parse("A1")->known());
  CHECK_FALSE(Country::parse("USA"));
  CHECK_FALSE(Country::parse("U"));
  CHECK_FALSE(Country::parse("U-"));
}

TEST_CASE("an empty table answers ZZ for every address") {
  const GeoTable t = TableBuilder{}.build();
  CHECK(country_of(t, "1.2.3.4") == "ZZ");
  CHECK(country_of(t, "::") == "ZZ");
  CHECK(t.network(parse_address("1.2.3.4")).to_string() == "0.0.0.0/0");
  CHECK(t.network(parse_address("2001:db8::1")).to_string() == "::/0");
}

TEST_CASE("the first database that knows an address wins, unknown is ZZ") {
  TableBuilder b;
  b.add_database({"first", {span4("10.0.0.0/8", "US")}, {span6("2001:db8::/32", "NL")}});
  b.add_database({"second",
                  {span4("10.0.0.0/16", "DE"), span4("11.0.0.0/8", "FR")},
                  {span6("2001:db8::/48", "DE"), span6("2001:db9::/32", "SE")}});
  const GeoTable t = std::move(b).build();
  CHECK(country_of(t, "10.0.1.1") == "US");
  CHECK(country_of(t, "11.1.1.1") == "FR");
  CHECK(country_of(t, "12.0.0.0") == "ZZ");
  CHECK(country_of(t, "9.255.255.255") == "ZZ");
  CHECK(country_of(t, "2001:db8::1") == "NL");
  CHECK(country_of(t, "2001:db9:ffff::") == "SE");
  CHECK(country_of(t, "::ffff:10.0.0.1") == "US");
  CHECK(t.network(parse_address("10.200.0.1")).to_string() == "10.0.0.0/8");
  CHECK(t.network(parse_address("11.0.0.1")).to_string() == "11.0.0.0/8");
  CHECK(t.network(parse_address("12.0.0.1")).to_string() == "12.0.0.0/6");
}

TEST_CASE("split boundaries: 127.255.255.255 vs 128.0.0.0, ::/1 vs 8000::/1, first and last") {
  TableBuilder b;
  b.add_database({"split",
                  {span4("0.0.0.0/1", "AA"), span4("128.0.0.0/1", "BB")},
                  {span6("::/1", "AA"), span6("8000::/1", "BB")}});
  const GeoTable t = std::move(b).build();
  CHECK(country_of(t, "0.0.0.0") == "AA");
  CHECK(country_of(t, "127.255.255.255") == "AA");
  CHECK(country_of(t, "128.0.0.0") == "BB");
  CHECK(country_of(t, "255.255.255.255") == "BB");
  CHECK(country_of(t, "::") == "AA");
  CHECK(country_of(t, "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "AA");
  CHECK(country_of(t, "8000::") == "BB");
  CHECK(country_of(t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "BB");
  CHECK(t.network(parse_address("127.0.0.1")).to_string() == "0.0.0.0/1");
  CHECK(t.network(parse_address("ffff::1")).to_string() == "8000::/1");
}

TEST_CASE("lists: overlapping ranges, membership bits, names") {
  TableBuilder b;
  b.add_database({"db", {span4("10.0.0.0/8", "US")}, {}});
  RangeSet english, blocked;
  english.add(parse_prefix("10.1.0.0/16"));
  english.add(parse_prefix("10.1.2.0/24"));  // overlaps: still one membership
  english.add(parse_prefix("2001:db8::/32"));
  blocked.add(parse_prefix("10.1.2.3"));
  CHECK(b.add_list("english", english) == 0);
  CHECK(b.add_list("blocked", blocked) == 1);
  const GeoTable t = std::move(b).build();
  CHECK(t.list_names() == std::vector<std::string>{"english", "blocked"});
  CHECK(t.list_index("blocked") == 1u);
  CHECK_FALSE(t.list_index("nope"));
  CHECK(t.lookup(parse_address("10.1.2.3")).lists == 0b11);
  CHECK(t.lookup(parse_address("10.1.2.4")).lists == 0b01);
  CHECK(t.lookup(parse_address("10.1.255.255")).lists == 0b01);
  CHECK(t.lookup(parse_address("10.2.0.0")).lists == 0);
  CHECK(t.lookup(parse_address("10.2.0.0")).country.code() == "US");
  CHECK(t.lookup(parse_address("2001:db8:ffff::")).lists == 0b01);
  CHECK(t.network(parse_address("10.1.2.3")).to_string() == "10.1.2.3/32");
}

TEST_CASE("lookups equal a naive reference on dense random data (both families)") {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 20; ++round) {
    CAPTURE(round);
    // Dense v4 under 10.0.0.0/12 (deep children) and sparse over the whole space.
    auto [s4, r4] = random_spans<std::uint32_t>(0x0a000000u, 20, 3000, rng);
    auto [w4, rw4] = random_spans<std::uint32_t>(0, 32, 200, rng);
    // v6: dense in the low 40 bits of a /88 (long chains of children) and near the top.
    const u128 base6 = parse_address("2001:db8:1234:5678:9a00::").v6_bits();
    auto [s6, r6] = random_spans<u128>(base6, 40, 3000, rng);
    auto [t6, rt6] = random_spans<u128>(u128_max - ((u128{1} << 30) - 1), 30, 500, rng);
    TableBuilder b;
    b.add_database({"dense", s4, s6});
    b.add_database({"wide", w4, t6});
    const GeoTable t = std::move(b).build();
    auto expect4 = [&](std::uint32_t k) {
      const Country c = r4.at(k);
      return c.known() ? c : rw4.at(k);
    };
    auto expect6 = [&](u128 k) {
      const Country c = r6.at(k);
      return c.known() ? c : rt6.at(k);
    };
    auto probe4 = [&](std::uint32_t k) {
      const Address a = Address::v4(k);
      REQUIRE(t.lookup(a).country == expect4(k));
      const Prefix n = t.network(a);
      REQUIRE(n.contains(a));
      REQUIRE(t.lookup(n.network()).country == expect4(k));
      REQUIRE(t.lookup(n.last()).country == expect4(k));
    };
    auto probe6 = [&](u128 k) {
      const Address a = Address::v6_raw(k);
      REQUIRE(t.lookup(a).country == expect6(k));
    };
    for (const auto& s : s4) {
      for (auto k : {s.range.first, s.range.last, s.range.first - 1, s.range.last + 1}) probe4(k);
    }
    for (const auto& s : s6) {
      for (auto k : {s.range.first, s.range.last, s.range.first - 1, s.range.last + 1}) probe6(k);
    }
    for (const auto& s : t6) probe6(s.range.last);
    for (int i = 0; i < 20000; ++i) {
      probe4(0x0a000000u + static_cast<std::uint32_t>(rng() & 0xfffff));
      probe4(static_cast<std::uint32_t>(rng()));
      probe6(base6 + (u128(rng()) & ((u128{1} << 40) - 1)));
      probe6(u128_max - (rng() & ((1u << 30) - 1)));
    }
  }
}

TEST_CASE("select returns exactly the ranges whose answer matches") {
  TableBuilder b;
  b.add_database({"db",
                  {span4("1.0.0.0/24", "AU"), span4("1.0.1.0/24", "CN"), span4("1.0.2.0/23", "AU")},
                  {span6("2001:db8::/32", "AU")}});
  const GeoTable t = std::move(b).build();
  auto set = t.select([](const GeoValue& v) { return v.country.code() == "AU"; });
  REQUIRE(set.v4.size() == 2);
  CHECK(set.v4[0] == Range4{0x01000000u, 0x010000ffu});
  CHECK(set.v4[1] == Range4{0x01000200u, 0x010003ffu});
  REQUIRE(set.v6.size() == 1);
  auto unknown = t.select([](const GeoValue& v) { return !v.country.known(); });
  CHECK(unknown.v4.size() == 2);  // below 1.0.0.0 and above 1.0.3.255
  CHECK(unknown.v4.front().first == 0);
  CHECK(unknown.v4.back().last == 0xffffffffu);
}

TEST_CASE("overlapping ranges within one database are rejected") {
  TableBuilder b;
  b.add_database({"bad", {span4("10.0.0.0/8", "US"), span4("10.1.0.0/16", "DE")}, {}});
  CHECK_THROWS_WITH(std::move(b).build(), "bad: overlapping ranges 10.0.0.0 and 10.1.0.0");
}

TEST_CASE("clustered data (IPv6 hosts grouped in /64s) keeps the index small and exact") {
  // 20,000 /64s far apart, five single hosts in each: every bucket's
  // boundaries sit in one narrow prefix, which skip entries compress.
  std::mt19937_64 rng(3);
  RangeSet hosts;
  std::vector<u128> probes;
  for (int g = 0; g < 20000; ++g) {
    const u128 net = (u128{0x2a00} << 112) | (u128(rng()) << 64 & (u128_max << 64 >> 16));
    for (int h = 0; h < 5; ++h) {
      const u128 a = net | (rng() & 0xffff);
      hosts.v6.push_back({a, a});
      probes.push_back(a);
    }
  }
  TableBuilder b;
  b.add_list("hosts", hosts);
  const GeoTable t = std::move(b).build();
  const double per_interval = static_cast<double>(t.v6_index().node_bytes()) /
                              static_cast<double>(t.interval_count(Family::v6));
  MESSAGE("IPv6 index: " << t.v6_index().node_bytes() << " bytes for "
                         << t.interval_count(Family::v6) << " intervals");
  CHECK(per_interval < 64);
  for (u128 a : probes) {
    REQUIRE(t.lookup(Address::v6_raw(a)).lists == 1);
    const bool neighbour_listed = std::find(probes.begin(), probes.end(), a + 1) != probes.end();
    if (!neighbour_listed) REQUIRE(t.lookup(Address::v6_raw(a + 1)).lists == 0);
  }
}

TEST_CASE("the index equals a binary search where boundaries fall on bucket edges") {
  // Starts aligned to 2^a (a up to 28 for IPv4, 124 for IPv6) put boundaries
  // exactly where root and child buckets begin and end, and leave long runs
  // of buckets inside one interval.
  std::mt19937_64 rng(11);
  auto random_key = [&]<class Key>(Key) {
    if constexpr (sizeof(Key) > 8)
      return Key((u128(rng()) << 64) | rng());
    else
      return static_cast<Key>(rng());
  };
  auto check = [&]<class Key>(Key, unsigned max_align, int n) {
    std::vector<Key> starts{Key(0)};
    for (int i = 0; i < n; ++i) {
      const unsigned align = static_cast<unsigned>(rng() % (max_align / 4 + 1)) * 4;
      const Key k = random_key(Key{});
      starts.push_back(align == 0 ? k : Key(k & ~Key((Key(1) << align) - 1)));
    }
    std::sort(starts.begin(), starts.end());
    starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
    std::vector<typename IntervalIndex<Key>::Slot> slots;
    for (Key s : starts) slots.push_back({s, static_cast<std::uint32_t>(rng() % 7)});
    const IntervalIndex<Key> index(slots);
    auto probe = [&](Key k) { REQUIRE(index.value_at(k) == slots[index.interval_of(k)].value); };
    for (Key s : starts) {
      probe(s);
      probe(Key(s - 1));
      probe(Key(s + 1));
    }
    for (int i = 0; i < 20000; ++i) probe(random_key(Key{}));
  };
  for (int round = 0; round < 10; ++round) {
    CAPTURE(round);
    check(std::uint32_t{}, 28, round % 2 == 0 ? 50 : 5000);
    check(u128{}, 124, round % 2 == 0 ? 50 : 5000);
  }
}

namespace {

Span<std::uint32_t> asn4(const char* prefix, std::uint32_t asn) {
  const auto p = parse_prefix(prefix);
  return {{p.network().v4_bits(), p.last().v4_bits()}, {{}, asn, 0, 0}};
}
Span<u128> asn6(const char* prefix, std::uint32_t asn) {
  const auto p = parse_prefix(prefix);
  return {{p.network().v6_bits(), p.last().v6_bits()}, {{}, asn, 0, 0}};
}

}  // namespace

TEST_CASE("ASN databases: a layer of their own, across country boundaries, in lists") {
  TableBuilder b;
  b.add_database({"countries",
                  {span4("10.0.0.0/8", "US"), span4("11.0.0.0/8", "DE")},
                  {span6("2001:db8::/32", "NL")}});
  // AS 64496 spans the US/DE edge; a second ASN database fills only gaps.
  b.add_asn_database(
      {"asn-a",
       {asn4("10.128.0.0/9", 64496), asn4("11.0.0.0/9", 64496), asn4("12.0.0.0/8", 4200000001u)},
       {asn6("2001:db8:1::/48", 64511)},
       {{64496, "Example Net"}, {64511, "Example Six"}}});
  b.add_asn_database({"asn-b",
                      {asn4("10.0.0.0/8", 65000), asn4("11.0.0.0/8", 65001)},
                      {},
                      {{64496, "Shadowed Name"}, {65000, "Second"}}});
  const auto bit = b.add_list("by-as", {}, {}, {64496, 64511});
  const auto bit_de = b.add_list("de-or-as", {}, {cc("DE")}, {65000});
  const GeoTable t = std::move(b).build();
  auto at = [&](const char* ip) { return t.lookup(parse_address(ip)); };
  CHECK(t.has_asn_data());
  CHECK(at("10.200.0.1").asn == 64496);
  CHECK(at("10.200.0.1").country == cc("US"));
  CHECK(at("11.1.0.1").asn == 64496);
  CHECK(at("11.1.0.1").country == cc("DE"));
  CHECK(at("10.1.0.1").asn == 65000);  // only the second database knows it
  CHECK(at("11.200.0.1").asn == 65001);
  CHECK(at("12.0.0.1").asn == 4200000001u);
  CHECK(at("12.0.0.1").country == Country{});  // an AS alone gives no country
  CHECK(at("13.0.0.1").asn == 0);
  CHECK(at("2001:db8:1::5").asn == 64511);
  CHECK(at("2001:db8:2::5").asn == 0);
  CHECK(t.organisation(64496) == "Example Net");  // the first database names it
  CHECK(t.organisation(65000) == "Second");
  CHECK(t.organisation(1) == "");
  // Lists by AS, and by country or AS.
  CHECK((at("10.200.0.1").lists >> bit & 1) == 1);
  CHECK((at("2001:db8:1::5").lists >> bit & 1) == 1);
  CHECK((at("10.1.0.1").lists >> bit & 1) == 0);
  CHECK((at("10.1.0.1").lists >> bit_de & 1) == 1);    // AS 65000
  CHECK((at("11.200.0.1").lists >> bit_de & 1) == 1);  // DE
  CHECK((at("10.200.0.1").lists >> bit_de & 1) == 0);
  // network() is the run of equal answers: the AS cuts 10/8 in two.
  CHECK(t.network(parse_address("10.1.0.1")).to_string() == "10.0.0.0/9");
}

TEST_CASE("no ASN database: every address is AS 0 and has_asn_data is false") {
  TableBuilder b;
  b.add_database({"countries", {span4("10.0.0.0/8", "US")}, {}});
  const GeoTable t = std::move(b).build();
  CHECK_FALSE(t.has_asn_data());
  CHECK(t.lookup(parse_address("10.0.0.1")).asn == 0);
}
