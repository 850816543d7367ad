#pragma once
// One session's DNS reputation: every [dnsbl] site and the forward-
// confirmed reverse DNS (PTR, then A/AAAA of each name), started at accept
// and answered in parallel from the cache (this node's or the fleet's) or
// the thread's resolver. The session waits only for what a rule it reaches
// reads, and at most until dns.timeout after accept.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "policy/reputation.hpp"
#include "proxy/dns.hpp"
#include "proxy/server_state.hpp"
#include "proxy/session_record.hpp"

namespace geomx::proxy {

class DnsCheck : public std::enable_shared_from_this<DnsCheck> {
 public:
  using Clock = std::chrono::steady_clock;
  DnsCheck(const asio::any_io_executor& executor, std::shared_ptr<const policy::Snapshot> snapshot,
           ServerState& state, const geo::Address& client);
  // Asks what `lookups` (policy::Needs bits) names.
  void start(std::uint8_t lookups);
  // Until what `needs` names is known, or `deadline`: then the sites that
  // have not answered count 0 (timeout), and an unanswered PTR check is
  // not confirmed.
  asio::awaitable<void> wait(std::uint8_t needs, Clock::time_point deadline);
  const policy::Reputation& reputation() const { return rep_; }
  // The answers so far, for the log line.
  void describe(SessionRecord& r) const;
  // Each [dnsbl] site's answer (none: not in yet), and the PTR name ("unknown": not confirmed).
  const std::vector<std::optional<policy::SiteResult>>& sites() const { return sites_; }
  const std::string& ptr() const { return ptr_; }

 private:
  using Answer = Resolver::Answer;
  using Done = std::function<void(DnsCheck&, const Answer&, bool cached)>;
  // From the cache, else the resolver (and then into the cache); `done`
  // runs on this session's thread while the session lives.
  void ask(std::string name, Resolver::Type type, Done done);
  void site_answered(std::size_t i, const Answer& a, bool cached);
  void ptr_answered(const Answer& a, bool cached);
  void forward_answered(const std::string& name, const Answer& a);
  void ptr_done(bool confirmed, std::string_view result, bool cached);
  void changed() { changed_.cancel(); }

  asio::any_io_executor executor_;
  std::thread::id thread_;  // the session's
  std::shared_ptr<const policy::Snapshot> snap_;
  ServerState& state_;
  geo::Address client_;
  policy::Reputation rep_;
  std::vector<std::optional<policy::SiteResult>> sites_;  // parallel to config.dnsbl_sites
  std::size_t sites_left_ = 0;
  std::size_t forward_left_ = 0;  // PTR names whose A/AAAA have not answered
  bool ptr_cached_ = false;
  std::string ptr_;             // the confirmed name, or "unknown"
  asio::steady_timer changed_;  // cancelled at every answer
};

}  // namespace geomx::proxy
