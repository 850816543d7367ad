#include "policy/reputation.hpp"

#include <algorithm>

namespace geomx::policy {
namespace {

std::string reversed(const geo::Address& a) {
  std::string out;
  if (a.is_v4()) {
    const auto v = a.v4_bits();
    for (int shift = 0; shift < 32; shift += 8) {
      out += std::to_string((v >> shift) & 0xff);
      out += '.';
    }
    return out;
  }
  const geo::u128 v = a.v6_bits();
  for (int shift = 0; shift < 128; shift += 4) {
    out += "0123456789abcdef"[static_cast<unsigned>(v >> shift) & 0xf];
    out += '.';
  }
  return out;
}

}  // namespace

std::uint8_t needs(const conf::Match& m) {
  return static_cast<std::uint8_t>((m.needs_dnsbl() ? needs_dnsbl : 0) |
                                   (m.fcrdns ? needs_fcrdns : 0));
}

std::string dnsbl_name(const geo::Address& client, std::string_view zone) {
  return reversed(client).append(zone);
}

std::string reverse_name(const geo::Address& client) {
  return reversed(client).append(client.is_v4() ? "in-addr.arpa" : "ip6.arpa");
}

bool refuses_resolver(std::uint32_t reply) {
  return (reply >> 8) == 0x7fffff || reply == 0x7f0000ff;
}

std::string_view to_string(SiteResult r) {
  switch (r) {
    case SiteResult::listed:
      return "listed";
    case SiteResult::not_listed:
      return "not_listed";
    case SiteResult::refused:
      return "refused";
    case SiteResult::error:
      return "error";
    case SiteResult::timeout:
      return "timeout";
  }
  return "error";
}

SiteResult judge(const conf::DnsblSite& site, const std::vector<std::uint32_t>& replies) {
  if (std::any_of(replies.begin(), replies.end(), refuses_resolver)) return SiteResult::refused;
  return std::any_of(replies.begin(), replies.end(), [&](std::uint32_t r) { return site.lists(r); })
             ? SiteResult::listed
             : SiteResult::not_listed;
}

}  // namespace geomx::policy
