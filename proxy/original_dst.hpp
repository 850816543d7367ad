#pragma once
// The address a redirected connection was on its way to: nftables or
// iptables REDIRECT (or DNAT) rewrote it to a transparent listener, and
// conntrack keeps the original (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST).
#include <string>
#include <variant>

#include "conf/config.hpp"

namespace geomx::proxy {

// The original destination of the accepted socket `fd`, or why there is
// none (no NAT entry: the connection was not redirected).
std::variant<conf::Endpoint, std::string> original_destination(int fd);

// Whether `a` is an address of this host (it can be bound).
bool is_local_address(const geo::Address& a);

}  // namespace geomx::proxy
