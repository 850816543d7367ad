#include "proxy/original_dst.hpp"

#include <arpa/inet.h>
#include <linux/netfilter_ipv4.h>             // SO_ORIGINAL_DST
#include <linux/netfilter_ipv6/ip6_tables.h>  // IP6T_SO_ORIGINAL_DST
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace geomx::proxy {

std::variant<conf::Endpoint, std::string> original_destination(int fd) {
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0)
    return fmt::format("getsockname: {}", std::strerror(errno));
  // IPv4 clients of a dual-stack IPv6 socket were redirected by the IPv4
  // NAT (geomx's own [::] listeners are IPv6 only; this is for safety).
  const bool v6 = local.ss_family == AF_INET6 &&
                  !IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<const sockaddr_in6*>(&local)->sin6_addr);
  sockaddr_storage dst{};
  len = sizeof dst;
  if (getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IP6T_SO_ORIGINAL_DST : SO_ORIGINAL_DST, &dst,
                 &len) != 0)
    return fmt::format("no original destination ({}: {})",
                       v6 ? "IP6T_SO_ORIGINAL_DST" : "SO_ORIGINAL_DST", std::strerror(errno));
  if (dst.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&dst);
    return conf::Endpoint{geo::Address::v4(ntohl(in->sin_addr.s_addr)), ntohs(in->sin_port)};
  }
  if (dst.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&dst);
    geo::u128 bits = 0;
    for (auto byte : in6->sin6_addr.s6_addr) bits = bits << 8 | byte;
    return conf::Endpoint{geo::Address::v6(bits), ntohs(in6->sin6_port)};
  }
  return fmt::format("original destination of unknown family {}", dst.ss_family);
}

bool is_local_address(const geo::Address& a) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (a.is_v4()) {
    auto* in = reinterpret_cast<sockaddr_in*>(&addr);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(a.v4_bits());
    len = sizeof *in;
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
    in6->sin6_family = AF_INET6;
    for (int i = 0; i < 16; ++i)
      in6->sin6_addr.s6_addr[i] = static_cast<std::uint8_t>(a.v6_bits() >> (8 * (15 - i)));
    len = sizeof *in6;
  }
  const int fd = socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool local = bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0;
  close(fd);
  return local;
}

}  // namespace geomx::proxy
