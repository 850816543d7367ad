#include "proxy/original_dst.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "proxy/endpoint.hpp"

// The kernel's headers last: they defer to glibc's (netinet/in.h, net/if.h,
// which Asio includes) only when those came first.
#include <linux/netfilter_ipv4.h>             // SO_ORIGINAL_DST
#include <linux/netfilter_ipv6/ip6_tables.h>  // IP6T_SO_ORIGINAL_DST

namespace geomx::proxy {

std::variant<conf::Endpoint, std::string> original_destination(int fd, bool v6) {
  boost::asio::ip::tcp::endpoint dst;
  auto len = static_cast<socklen_t>(dst.capacity());
  if (getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IP6T_SO_ORIGINAL_DST : SO_ORIGINAL_DST,
                 dst.data(), &len) != 0)
    return fmt::format("no original destination ({}: {})",
                       v6 ? "IP6T_SO_ORIGINAL_DST" : "SO_ORIGINAL_DST", std::strerror(errno));
  dst.resize(len);
  return from_asio(dst);
}

bool is_local_address(const geo::Address& a) {
  const auto ep = to_asio({a, 0});
  const int fd = socket(ep.protocol().family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool local = bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) == 0;
  close(fd);
  return local;
}

}  // namespace geomx::proxy
