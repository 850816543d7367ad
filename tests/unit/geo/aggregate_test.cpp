#include <doctest/doctest.h>

#include <bitset>
#include <ostream>
#include <random>
#include <string>

#include "geo/range.hpp"

using namespace geomx::geo;

namespace {

std::vector<std::string> aggregate_text(std::initializer_list<const char*> prefixes) {
  RangeSet set;
  for (const char* p : prefixes) set.add(parse_prefix(p));
  std::vector<std::string> out;
  for (const auto& p : aggregate(set)) out.push_back(p.to_string());
  return out;
}

using Bits = std::bitset<256>;

// Brute force: the fewest aligned blocks covering exactly `covered` in the
// block [lo, lo + size).
int min_cover(const Bits& covered, unsigned lo, unsigned size) {
  bool all = true, none = true;
  for (unsigned i = lo; i < lo + size; ++i) (covered[i] ? none : all) = false;
  if (all) return 1;
  if (none) return 0;
  return min_cover(covered, lo, size / 2) + min_cover(covered, lo + size / 2, size / 2);
}

// Random prefixes and ranges inside the 256 addresses starting at `base`;
// checks exactness and minimality of aggregate() against brute force.
template <class Key>
void check_against_brute_force(Key base, std::mt19937_64& rng) {
  constexpr unsigned width = key_width<Key>;
  Bits covered;
  RangeSet set;
  auto& ranges = [&]() -> auto& {
    if constexpr (width == 32)
      return set.v4;
    else
      return set.v6;
  }
  ();
  const int n = static_cast<int>(rng() % 12);
  for (int i = 0; i < n; ++i) {
    const unsigned host = static_cast<unsigned>(rng() % 9);  // block of 2^host addresses
    const unsigned start = static_cast<unsigned>(rng() % 256) & ~((1u << host) - 1);
    unsigned end = start + (1u << host) - 1;
    if (rng() % 3 == 0) end = start + static_cast<unsigned>(rng() % (256 - start));  // any range
    for (unsigned a = start; a <= end; ++a) covered[a] = true;
    ranges.push_back({Key(base + start), Key(base + end)});
  }
  const auto prefixes = aggregate(set);
  Bits got;
  for (std::size_t i = 0; i < prefixes.size(); ++i) {
    const auto& p = prefixes[i];
    const Key first = width == 32 ? Key(p.network().v4_bits()) : Key(p.network().v6_bits());
    REQUIRE(first >= base);
    REQUIRE(p.length() >= width - 8);
    const unsigned off = static_cast<unsigned>(first - base);
    for (unsigned a = off; a < off + (1u << (width - p.length())); ++a) {
      REQUIRE_FALSE(got[a]);  // disjoint
      got[a] = true;
    }
    if (i > 0) REQUIRE(prefixes[i - 1] < p);  // ascending
  }
  REQUIRE(got == covered);
  REQUIRE(static_cast<int>(prefixes.size()) == min_cover(covered, 0, 256));
}

}  // namespace

TEST_CASE("aggregate merges adjacent and nested prefixes") {
  CHECK(aggregate_text({"10.0.0.0/24", "10.0.1.0/24"}) == std::vector<std::string>{"10.0.0.0/23"});
  CHECK(aggregate_text({"10.0.1.0/24", "10.0.2.0/24"}) ==
        std::vector<std::string>{"10.0.1.0/24", "10.0.2.0/24"});
  CHECK(aggregate_text(
            {"10.0.0.0/8", "10.1.2.3", "2001:db8::/33", "2001:db8:8000::/33", "1.2.3.4"}) ==
        std::vector<std::string>{"1.2.3.4/32", "10.0.0.0/8", "2001:db8::/32"});
  CHECK(aggregate_text({"0.0.0.0/1", "128.0.0.0/1"}) == std::vector<std::string>{"0.0.0.0/0"});
  CHECK(aggregate_text({"::/1", "8000::/1"}) == std::vector<std::string>{"::/0"});
  CHECK(aggregate_text({"255.255.255.254", "255.255.255.255"}) ==
        std::vector<std::string>{"255.255.255.254/31"});
  CHECK(aggregate_text({}).empty());
}

TEST_CASE("ranges split into the fewest prefixes") {
  std::vector<Prefix> out;
  append_prefixes(Range4{1, 6}, out);
  std::vector<std::string> text;
  for (const auto& p : out) text.push_back(p.to_string());
  CHECK(text == std::vector<std::string>{"0.0.0.1/32", "0.0.0.2/31", "0.0.0.4/31", "0.0.0.6/32"});
  out.clear();
  append_prefixes(Range4{0, 0xffffffffu}, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to_string() == "0.0.0.0/0");
  out.clear();
  append_prefixes(Range6{u128{1}, u128_max}, out);
  CHECK(out.size() == 128);
  CHECK(out.back().to_string() == "8000::/1");
}

TEST_CASE("aggregate is exact and minimal (property test against brute force)") {
  std::mt19937_64 rng(20261122);
  for (int i = 0; i < 3000; ++i) {
    check_against_brute_force<std::uint32_t>(0x0a000000u, rng);
    check_against_brute_force<std::uint32_t>(0xffffff00u, rng);  // ends at the last address
    check_against_brute_force<std::uint32_t>(0, rng);
    check_against_brute_force<u128>(parse_address("2001:db8::").v6_bits(), rng);
    check_against_brute_force<u128>(u128_max - 255, rng);
  }
}
