#include <doctest/doctest.h>

#include <sstream>

#include "geo/export.hpp"

using namespace geomx::geo;

namespace {
std::string render(ExportFormat f) {
  std::vector<Prefix> list{parse_prefix("1.0.0.0/24"), parse_prefix("10.0.0.0/8"),
                           parse_prefix("2001:db8::/32")};
  std::ostringstream out;
  write_address_list(out, f, "english", list);
  return out.str();
}
}  // namespace

TEST_CASE("export formats") {
  CHECK(render(ExportFormat::cidr) == "1.0.0.0/24\n10.0.0.0/8\n2001:db8::/32\n");
  CHECK(render(ExportFormat::mikrotik) ==
        "/ip firewall address-list\n"
        "remove [find list=english-new]\n"
        "add list=english-new address=1.0.0.0/24\n"
        "add list=english-new address=10.0.0.0/8\n"
        "remove [find list=english]\n"
        "set [find list=english-new] list=english\n"
        "/ipv6 firewall address-list\n"
        "remove [find list=english-new]\n"
        "add list=english-new address=2001:db8::/32\n"
        "remove [find list=english]\n"
        "set [find list=english-new] list=english\n");
  CHECK(render(ExportFormat::nft) ==
        "add table inet geomx\n"
        "add set inet geomx english_v4 { type ipv4_addr; flags interval; }\n"
        "flush set inet geomx english_v4\n"
        "add element inet geomx english_v4 { 1.0.0.0/24, 10.0.0.0/8 }\n"
        "add set inet geomx english_v6 { type ipv6_addr; flags interval; }\n"
        "flush set inet geomx english_v6\n"
        "add element inet geomx english_v6 { 2001:db8::/32 }\n");
  CHECK(render(ExportFormat::ipset) ==
        "create english_v4 hash:net family inet maxelem 65536\n"
        "create english_v4-new hash:net family inet maxelem 65536\n"
        "flush english_v4-new\n"
        "add english_v4-new 1.0.0.0/24\n"
        "add english_v4-new 10.0.0.0/8\n"
        "swap english_v4-new english_v4\n"
        "destroy english_v4-new\n"
        "create english_v6 hash:net family inet6 maxelem 65536\n"
        "create english_v6-new hash:net family inet6 maxelem 65536\n"
        "flush english_v6-new\n"
        "add english_v6-new 2001:db8::/32\n"
        "swap english_v6-new english_v6\n"
        "destroy english_v6-new\n");
}
