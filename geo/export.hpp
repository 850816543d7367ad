#pragma once
// Router address lists from the table: plain CIDRs, MikroTik RouterOS
// scripts, nftables sets and ipset restore files.
#include <ostream>
#include <string>
#include <vector>

#include "geo/address.hpp"

namespace geomx::geo {

enum class ExportFormat { cidr, mikrotik, nft, ipset };

// Writes `prefixes` (IPv4 first, then IPv6, as aggregate() returns them) as
// an address list called `name`.
void write_address_list(std::ostream& out, ExportFormat format, const std::string& name,
                        const std::vector<Prefix>& prefixes);

}  // namespace geomx::geo
