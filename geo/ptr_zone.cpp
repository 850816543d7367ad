#include "geo/ptr_zone.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "geo/range.hpp"

namespace geomx::geo {
namespace {

// A host name of LDH labels of 1 to 63 characters, 253 at most, no dot at
// either end (RFC 1123).
bool valid_host_name(const std::string& name) {
  if (name.empty() || name.size() > 253 || name.front() == '.' || name.back() == '.') return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      if (label == 0 || label > 63 || name[i - 1] == '-' || name[i - label] == '-') return false;
      label = 0;
      continue;
    }
    const auto c = static_cast<unsigned char>(name[i]);
    if (!std::isalnum(c) && c != '-') return false;
    ++label;
  }
  return true;
}

std::string name_of(const std::string& tmpl, const Address& a) {
  // IPv4 "192-0-2-1"; IPv6 all eight groups, "2001-db8-5-0-0-0-0-2a" (a
  // compressed "::" would leave "--" or a '-' at a label's end).
  std::string ip;
  if (a.is_v4()) {
    ip = a.to_string();
    std::replace(ip.begin(), ip.end(), '.', '-');
  } else {
    for (int g = 7; g >= 0; --g)
      ip += fmt::format("{}{:x}", g == 7 ? "" : "-",
                        static_cast<unsigned>(a.v6_bits() >> (16 * g) & 0xffff));
  }
  std::string out;
  for (std::size_t i = 0; i < tmpl.size();) {
    if (tmpl[i] != '{') {
      out += tmpl[i++];
      continue;
    }
    const auto close = tmpl.find('}', i);
    if (close == std::string::npos)
      throw std::invalid_argument(fmt::format("--name '{}': '{{' without '}}'", tmpl));
    const std::string key = tmpl.substr(i + 1, close - i - 1);
    if (key == "ip") {
      out += ip;
    } else if (key.size() == 1 && key[0] >= 'a' && key[0] <= 'd') {
      if (!a.is_v4())
        throw std::invalid_argument(fmt::format(
            "--name '{}': {{{}}} is an IPv4 octet; name IPv6 addresses with {{ip}}", tmpl, key));
      out += std::to_string((a.v4_bits() >> (8 * (3 - (key[0] - 'a')))) & 0xff);
    } else {
      throw std::invalid_argument(fmt::format(
          "--name '{}': unknown field {{{}}} (use {{a}} {{b}} {{c}} {{d}} or {{ip}})", tmpl, key));
    }
    i = close + 1;
  }
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (!valid_host_name(out))
    throw std::invalid_argument(
        fmt::format("--name '{}' gives '{}' for {}: not a host name", tmpl, out, a.to_string()));
  return out;
}

// The reverse name of `a` (without the final dot) and the zone it is in:
// IPv4 the /24, IPv6 the network's length rounded down to a nibble.
std::string reverse_name(const Address& a, unsigned labels_v6 = 32) {
  if (a.is_v4()) {
    const auto b = a.v4_bits();
    return fmt::format("{}.{}.{}.{}.in-addr.arpa", b & 0xff, b >> 8 & 0xff, b >> 16 & 0xff,
                       b >> 24);
  }
  std::string out;
  const u128 bits = a.v6_bits();
  for (unsigned i = 32 - labels_v6; i < 32; ++i)
    out += fmt::format("{:x}.", static_cast<unsigned>(bits >> (4 * i) & 0xf));
  return out + "ip6.arpa";
}

std::string zone_of(const Address& a, unsigned v6_length) {
  if (a.is_v4()) {
    const auto name = reverse_name(a);
    return name.substr(name.find('.') + 1);
  }
  return reverse_name(Prefix::containing(a, v6_length).network(), v6_length / 4);
}

std::string header(const std::string& origin, const PtrZoneOptions& o) {
  const std::string rname = o.hostmaster.empty() ? "hostmaster." + origin : o.hostmaster;
  std::string text = fmt::format(
      "; written by geomx ptr-zone\n$ORIGIN {}.\n$TTL {}\n"
      "@ IN SOA {}. {}. ( {} 3600 900 1209600 3600 )\n",
      origin, o.ttl, o.name_servers.front(), rname, o.serial);
  for (const auto& ns : o.name_servers) text += fmt::format("@ IN NS {}.\n", ns);
  return text;
}

}  // namespace

std::uint32_t dated_serial(std::int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return static_cast<std::uint32_t>((tm.tm_year + 1900) * 1000000 + (tm.tm_mon + 1) * 10000 +
                                    tm.tm_mday * 100 + 1);
}

std::vector<Zone> ptr_zones(const std::vector<Prefix>& networks, const PtrZoneOptions& o) {
  if (o.name_servers.empty()) throw std::invalid_argument("at least one --ns is needed");
  for (const auto& ns : o.name_servers)
    if (!valid_host_name(ns))
      throw std::invalid_argument(fmt::format("--ns '{}' is not a host name", ns));
  if (networks.empty()) throw std::invalid_argument("no network given");
  std::uint64_t total = 0;
  for (const auto& p : networks) {
    const unsigned width = p.family() == Family::v4 ? 32 : 128;
    const unsigned host_bits = width - p.length();
    if (host_bits > 20 || (total += std::uint64_t{1} << host_bits) > max_ptr_addresses)
      throw std::invalid_argument(
          fmt::format("{}: more than {} addresses in all; a NAT pool is smaller", p.to_string(),
                      max_ptr_addresses));
  }
  // origin -> (owner -> target); std::map keeps the zones and records sorted.
  std::map<std::string, std::map<std::string, std::string>> reverse;
  std::map<std::string, std::pair<std::string, Address>> names;  // name -> (ip, address)
  for (const auto& p : networks) {
    const unsigned v6_zone = p.length() / 4 * 4;
    const unsigned width = p.family() == Family::v4 ? 32 : 128;
    const std::uint64_t count = std::uint64_t{1} << (width - p.length());
    for (std::uint64_t i = 0; i < count; ++i) {
      const Address a = p.family() == Family::v4
                            ? Address::v4(p.network().v4_bits() + static_cast<std::uint32_t>(i))
                            : Address::v6_raw(p.network().v6_bits() + i);
      const std::string name = name_of(o.name_template, a);
      const auto [it, added] = names.try_emplace(name, a.to_string(), a);
      if (!added && it->second.second != a)
        throw std::invalid_argument(
            fmt::format("--name '{}' gives '{}' to both {} and {}: add fields to tell them apart",
                        o.name_template, name, it->second.first, a.to_string()));
      const std::string origin = zone_of(a, v6_zone);
      std::string owner = reverse_name(a);
      owner.resize(owner.size() - origin.size() - 1);
      reverse[origin][owner] = name;
    }
  }
  std::vector<Zone> zones;
  for (const auto& [origin, records] : reverse) {
    Zone z{origin, header(origin, o), records.size()};
    for (const auto& [owner, target] : records)
      z.text += fmt::format("{} IN PTR {}.\n", owner, target);
    zones.push_back(std::move(z));
  }
  if (o.forward) {
    // The zone is the names' longest common parent.
    auto labels = [](const std::string& n) {
      std::vector<std::string> out;
      for (std::size_t at = 0;;) {
        const auto dot = n.find('.', at);
        out.push_back(n.substr(at, dot - at));
        if (dot == std::string::npos) break;
        at = dot + 1;
      }
      std::reverse(out.begin(), out.end());
      return out;
    };
    std::vector<std::string> common = labels(names.begin()->first);
    for (const auto& [name, ip] : names) {
      const auto l = labels(name);
      std::size_t n = 0;
      while (n < common.size() && n + 1 < l.size() && common[n] == l[n]) ++n;
      common.resize(n);
    }
    if (common.empty())
      throw std::invalid_argument("--forward: the names share no parent domain to be a zone");
    std::string origin;
    for (auto it = common.rbegin(); it != common.rend(); ++it)
      origin += (origin.empty() ? "" : ".") + *it;
    for (const auto& ns : o.name_servers)
      if (ns == origin || ns.ends_with("." + origin))
        throw std::invalid_argument(fmt::format(
            "--forward: name server {} is inside the zone {}, which would need its address "
            "(glue) too; name servers outside it serve it",
            ns, origin));
    Zone z{origin, header(origin, o), names.size()};
    for (const auto& [name, entry] : names)
      z.text += fmt::format("{} IN {} {}\n", name.substr(0, name.size() - origin.size() - 1),
                            entry.second.is_v4() ? "A" : "AAAA", entry.first);
    zones.push_back(std::move(z));
  }
  return zones;
}

}  // namespace geomx::geo
