#pragma once
// DNS zones for a NAT pool (seed 000): one PTR per address in reverse zones
// (IPv4 per /24, IPv6 per nibble-aligned network) and, on request, the
// forward zone with the matching A/AAAA records, so that every NAT address
// passes a forward-confirmed reverse DNS check. Pure: zone texts out.
#include <cstdint>
#include <string>
#include <vector>

#include "geo/address.hpp"

namespace geomx::geo {

struct PtrZoneOptions {
  // The host name of each address: {a} {b} {c} {d} are an IPv4 address's
  // octets, {ip} the address with '-' between its parts: "192-0-2-1", or
  // all eight IPv6 groups, "2001-db8-5-0-0-0-0-2a".
  std::string name_template;
  std::vector<std::string> name_servers;  // NS records (at least one)
  std::string hostmaster;                 // SOA RNAME; default hostmaster.<zone>
  std::uint32_t serial = 0;               // the SOA serial (YYYYMMDDnn)
  std::uint32_t ttl = 3600;
  bool forward = false;  // also the A/AAAA zone of the names
};

struct Zone {
  std::string origin;       // "2.0.192.in-addr.arpa", without the final dot
  std::string text;         // the master file
  std::size_t records = 0;  // PTR (or A/AAAA) records
};

inline constexpr std::uint64_t max_ptr_addresses = 1 << 20;

// Throws std::invalid_argument naming what is wrong: a template that gives
// an invalid or the same name to two addresses, networks beyond
// max_ptr_addresses, no name server.
std::vector<Zone> ptr_zones(const std::vector<Prefix>& networks, const PtrZoneOptions& o);

// YYYYMMDD01 for the UTC day of `unix_seconds`.
std::uint32_t dated_serial(std::int64_t unix_seconds);

}  // namespace geomx::geo
