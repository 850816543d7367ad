#pragma once
// The address a redirected connection was on its way to: nftables or
// iptables REDIRECT (or DNAT) rewrote it to a transparent listener, and
// conntrack keeps the original (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST).
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <variant>

#include "conf/config.hpp"
#include "geo/hash.hpp"

namespace geomx::proxy {

// The original destination of the accepted socket `fd` (`v6`: an IPv6
// connection, redirected by the IPv6 NAT), or why there is none (no NAT
// entry: the connection was not redirected).
std::variant<conf::Endpoint, std::string> original_destination(int fd, bool v6);

// Whether `a` is an address of this host (it can be bound).
bool is_local_address(const geo::Address& a);

// The local ends of geomx's own `pass` connections while they last. A
// redirected connection that comes from one of them is geomx's own relay
// come back (a REDIRECT that does not exclude geomx's user): refused, so
// the loop ends at the first hop or so instead of at max_connections_per_ip.
// (Registered once the connect completes; the accept of the looped
// connection may come first, so the session waits a moment for it.)
class OwnConnections {
 public:
  class Entry {
   public:
    Entry(OwnConnections& owner, const conf::Endpoint& e) : owner_(owner), endpoint_(e) {}
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    ~Entry() {
      std::lock_guard lock(owner_.mutex_);
      owner_.set_.erase(endpoint_);
    }

   private:
    OwnConnections& owner_;
    conf::Endpoint endpoint_;
  };

  std::unique_ptr<Entry> add(const conf::Endpoint& local) {
    std::lock_guard lock(mutex_);
    set_.insert(local);
    return std::make_unique<Entry>(*this, local);
  }
  bool contains(const conf::Endpoint& e) const {
    std::lock_guard lock(mutex_);
    return set_.contains(e);
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_set<conf::Endpoint, geo::AddressHash> set_;
};

}  // namespace geomx::proxy
