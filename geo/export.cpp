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
      out << "/ip firewall address-list\n";
      for (const auto& p : v4) fmt::print(out, "add list={} address={}\n", name, p.to_string());
      out << "/ipv6 firewall address-list\n";
      for (const auto& p : v6) fmt::print(out, "add list={} address={}\n", name, p.to_string());
      break;
    case ExportFormat::nft:
      out << "add table inet geomx\n";
      write_nft_set(out, name + "_v4", "ipv4_addr", v4);
      write_nft_set(out, name + "_v6", "ipv6_addr", v6);
      break;
    case ExportFormat::ipset:
      for (const auto& [set, family, list] :
           {std::tuple{name + "_v4", "inet", &v4}, std::tuple{name + "_v6", "inet6", &v6}}) {
        fmt::print(out, "create {} hash:net family {} maxelem {}\n", set, family,
                   std::max<std::size_t>(65536, list->size()));
        fmt::print(out, "flush {}\n", set);
        for (const auto& p : *list) fmt::print(out, "add {} {}\n", set, p.to_string());
      }
      break;
  }
}

}  // namespace geomx::geo
