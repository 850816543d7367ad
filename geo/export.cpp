#include "geo/export.hpp"

#include <algorithm>

#include <fmt/ostream.h>

namespace geomx::geo {
namespace {

void write_nft_set(std::ostream& out, const std::string& set, const char* type,
                   const std::vector<Prefix>& prefixes) {
  fmt::print(out, "add set inet geomx {} {{ type {}; flags interval; }}\n", set, type);
  fmt::print(out, "flush set inet geomx {}\n", set);
  // Elements in chunks keep lines readable and within nft's limits.
  constexpr std::size_t chunk = 512;
  for (std::size_t i = 0; i < prefixes.size(); i += chunk) {
    fmt::print(out, "add element inet geomx {} {{ ", set);
    for (std::size_t j = i; j < std::min(prefixes.size(), i + chunk); ++j)
      fmt::print(out, "{}{}", j == i ? "" : ", ", prefixes[j].to_string());
    out << " }\n";
  }
}

}  // namespace

void write_address_list(std::ostream& out, ExportFormat format, const std::string& name,
                        const std::vector<Prefix>& prefixes) {
  const auto split = std::partition_point(prefixes.begin(), prefixes.end(),
                                          [](const Prefix& p) { return p.family() == Family::v4; });
  const std::vector<Prefix> v4(prefixes.begin(), split), v6(split, prefixes.end());
  switch (format) {
    case ExportFormat::cidr:
      for (const auto& p : prefixes) out << p.to_string() << '\n';
      break;
    case ExportFormat::mikrotik:
      // Idempotent: the entries go to NAME-new (emptied first, in case an
      // import stopped half-way), then replace NAME's in two commands, so a
      // second import leaves the same list, not each entry twice.
      for (const auto& [menu, list] : {std::pair{"/ip firewall address-list", &v4},
                                       std::pair{"/ipv6 firewall address-list", &v6}}) {
        fmt::print(out, "{}\nremove [find list={}-new]\n", menu, name);
        for (const auto& p : *list)
          fmt::print(out, "add list={}-new address={}\n", name, p.to_string());
        fmt::print(out, "remove [find list={0}]\nset [find list={0}-new] list={0}\n", name);
      }
      break;
    case ExportFormat::nft:
      out << "add table inet geomx\n";
      write_nft_set(out, name + "_v4", "ipv4_addr", v4);
      write_nft_set(out, name + "_v6", "ipv6_addr", v6);
      break;
    case ExportFormat::ipset:
      for (const auto& [set, family, list] :
           {std::tuple{name + "_v4", "inet", &v4}, std::tuple{name + "_v6", "inet6", &v6}}) {
        // Filled as SET-new and swapped in: the live set is never empty
        // or half-filled (load with `ipset -exist restore`).
        const auto maxelem = std::max<std::size_t>(65536, list->size());
        fmt::print(out, "create {} hash:net family {} maxelem {}\n", set, family, maxelem);
        fmt::print(out, "create {}-new hash:net family {} maxelem {}\nflush {}-new\n", set, family,
                   maxelem, set);
        for (const auto& p : *list) fmt::print(out, "add {}-new {}\n", set, p.to_string());
        fmt::print(out, "swap {0}-new {0}\ndestroy {0}-new\n", set);
      }
      break;
  }
}

}  // namespace geomx::geo
