// geomx's compiled table against libmaxminddb, on the same data in one run:
// build time and memory of the table from tor-geoipdb, then ns per lookup
// for 1,000,000 addresses per set, geomx vs MMDB_lookup_sockaddr on an .mmdb
// that MaxMind's writer made from the same data. Medians of several runs.
//
// Usage: geo_lookup_bench TOR_GEOIP TOR_GEOIP6 COUNTRY_MMDB [RUNS]
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <random>

#include <fmt/format.h>

#include "geo/mmdb.hpp"
#include "geo/sources.hpp"

using namespace geomx::geo;
using Clock = std::chrono::steady_clock;

namespace {

template <class Fn>
double median_seconds(int runs, Fn fn) {
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto start = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct AddressSet {
  std::string name;
  std::vector<Address> addresses;
  std::vector<sockaddr_in6> v6;
  std::vector<sockaddr_in> v4;
};

sockaddr_in6 to_sockaddr6(u128 bits) {
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  for (int i = 15; i >= 0; --i)
    sa.sin6_addr.s6_addr[i] = static_cast<std::uint8_t>(bits >> (8 * (15 - i)));
  return sa;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    fmt::print(stderr, "usage: {} TOR_GEOIP TOR_GEOIP6 COUNTRY_MMDB [RUNS]\n", argv[0]);
    return 2;
  }
  const std::string geoip = argv[1], geoip6 = argv[2], mmdb_path = argv[3];
  const int runs = argc > 4 ? std::max(1, std::atoi(argv[4])) : 5;
  constexpr int n = 1'000'000;

  GeoTable table;
  const double build = median_seconds(runs, [&] { table = build_table({geoip, geoip6}); });
  const double build_mmdb = median_seconds(runs, [&] { build_table({mmdb_path}); });
  fmt::print("geo table from tor-geoipdb ({} + {})\n", geoip, geoip6);
  fmt::print("  build (read + parse + compile), median of {}: {:.3f} s   [target <= 1.0 s]\n", runs,
             build);
  fmt::print("  build from the .mmdb (walk + compile):      {:.3f} s\n", build_mmdb);
  fmt::print("  intervals: {} IPv4, {} IPv6; table memory {:.1f} MiB   [target <= 32 MiB]\n",
             table.interval_count(Family::v4), table.interval_count(Family::v6),
             table.memory_bytes() / 1048576.0);
  fmt::print(
      "  IPv4: index {:.1f} MiB + intervals {:.1f} MiB; IPv6: index {:.1f} MiB + intervals {:.1f} "
      "MiB\n",
      table.v4_index().node_bytes() / 1048576.0,
      (table.v4_index().memory_bytes() - table.v4_index().node_bytes()) / 1048576.0,
      table.v6_index().node_bytes() / 1048576.0,
      (table.v6_index().memory_bytes() - table.v6_index().node_bytes()) / 1048576.0);

  MmdbFile mmdb(mmdb_path);
  std::mt19937_64 rng(42);
  const GeoData ranges6 = load_range_file(geoip6);
  std::vector<AddressSet> sets(3);
  sets[0].name = "IPv4, uniform over 0.0.0.0/0";
  sets[1].name = "IPv6, inside the data's ranges";
  sets[2].name = "IPv6, uniform over 2000::/3";
  for (int i = 0; i < n; ++i) {
    const auto v4 = static_cast<std::uint32_t>(rng());
    sets[0].addresses.push_back(Address::v4(v4));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(v4);
    sets[0].v4.push_back(sa);
    const auto& r = ranges6.v6[rng() % ranges6.v6.size()].range;
    const u128 random = (u128(rng()) << 64) | rng();
    const u128 in_data =
        r.first + (r.last - r.first == u128_max ? random : random % (r.last - r.first + 1));
    const u128 global = (random >> 3) | (u128{1} << 125);
    sets[1].addresses.push_back(Address::v6(in_data));
    sets[1].v6.push_back(to_sockaddr6(in_data));
    sets[2].addresses.push_back(Address::v6(global));
    sets[2].v6.push_back(to_sockaddr6(global));
  }

  fmt::print("\nns per lookup, median of {} runs of {} lookups (lower is better)\n", runs, n);
  fmt::print("  {:<32} {:>8} {:>14} {:>9} {:>22}\n", "addresses", "geomx", "libmaxminddb", "ratio",
             "agree with libmaxminddb");
  for (auto& set : sets) {
    std::uint64_t sink = 0;
    const double ours = median_seconds(runs, [&] {
      for (const auto& a : set.addresses) sink += table.lookup(a).country.code()[0];
    });
    const double theirs = median_seconds(runs, [&] {
      int error = 0;
      auto lookup = [&](const sockaddr* sa) {
        auto r = MMDB_lookup_sockaddr(&mmdb.get(), sa, &error);
        sink += r.found_entry + r.entry.offset;
      };
      if (!set.v4.empty())
        for (const auto& sa : set.v4) lookup(reinterpret_cast<const sockaddr*>(&sa));
      else
        for (const auto& sa : set.v6) lookup(reinterpret_cast<const sockaddr*>(&sa));
    });
    // Correctness on the same addresses: libmaxminddb's country must be ours.
    std::size_t agree = 0;
    for (std::size_t i = 0; i < set.addresses.size(); i += 10) {
      int error = 0;
      const sockaddr* sa = set.v4.empty() ? reinterpret_cast<const sockaddr*>(&set.v6[i])
                                          : reinterpret_cast<const sockaddr*>(&set.v4[i]);
      auto r = MMDB_lookup_sockaddr(&mmdb.get(), sa, &error);
      std::string want = "ZZ";
      for (const char* key : {"country", "registered_country"}) {
        MMDB_entry_data_s d{};
        if (r.found_entry && want == "ZZ" &&
            MMDB_get_value(&r.entry, &d, key, "iso_code", nullptr) == MMDB_SUCCESS && d.has_data)
          want.assign(d.utf8_string, d.data_size);
      }
      agree += want == table.lookup(set.addresses[i]).country.code();
    }
    fmt::print("  {:<32} {:>8.1f} {:>14.1f} {:>9.3f} {:>15}/{:<6}\n", set.name, ours * 1e9 / n,
               theirs * 1e9 / n, ours / theirs, agree, (set.addresses.size() + 9) / 10);
    if (sink == 42) fmt::print(" ");  // keeps the loops from being optimised away
  }
  fmt::print("\ntargets: ratio geomx/libmaxminddb <= 0.2 (aim 0.1) for IPv4 and IPv6\n");
  return 0;
}
