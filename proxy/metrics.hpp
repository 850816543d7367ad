#pragma once
// Counters for the admin endpoint's /metrics (Prometheus text exposition).
// Label cardinality is bounded by the config (listeners, rules, pools,
// members) except country, which is bounded by the ~250 country codes.
#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "policy/health_board.hpp"
#include "policy/reputation.hpp"
#include "policy/snapshot.hpp"
#include "proxy/session_record.hpp"

namespace geomx::proxy {

// What one request got, for /metrics and the log.
enum class PolicyResult : std::uint8_t {
  greylisted,    // new triplet: deferred
  early,         // retried before the delay: deferred again
  passed,        // retried after the delay, or passed before
  auto_allowed,  // its network passed greylist.auto_allow times
  skipped,       // greylist.skip matched
  blocked,       // a dated block or ban: 554
  dunno,         // not greylisted (another stage, greylisting off)
  store_error,   // the store did not answer within store.timeout: DUNNO
};
inline constexpr std::size_t policy_results = 8;
inline std::string_view to_string(PolicyResult r) {
  static constexpr std::array<std::string_view, policy_results> names{
      "greylisted", "early",   "passed", "auto_allowed",
      "skipped",    "blocked", "dunno",  "store_error"};
  return names[static_cast<std::size_t>(r)];
}

class Metrics {
 public:
  // Counts one finished connection (called with its log line).
  void session(const SessionRecord& r);
  // How long the policy decision took.
  void decision(std::chrono::nanoseconds took);
  // The loaded config: generation 1 at start (reloads add to it).
  void config_loaded(std::uint64_t generation);
  // A reload ended: a success also calls config_loaded.
  void reloaded(bool ok);
  // DNS reputation: a [dnsbl] site's answer for one session, the PTR check's,
  // from the cache or not (`cached`); questions not started at dns.max_in_flight.
  void dns_site(std::string_view site, policy::SiteResult r, bool cached);
  void dns_ptr(std::string_view result, bool cached);
  void dns_not_started();
  // The greeting-pass cache answered: "pass" (no delay) or "pregreet" (refused at once).
  void greet_cache(std::string_view result);
  // The policy listener: a request answered (PolicyResult), a malformed
  // one (closed), a peer outside trusted_proxies (closed). Lock-free.
  void policy_request(PolicyResult r) {
    policy_[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  }
  void policy_malformed() { policy_malformed_.fetch_add(1, std::memory_order_relaxed); }
  void policy_refused() { policy_refused_.fetch_add(1, std::memory_order_relaxed); }
  // Whether a site's refusal of this resolver is to be logged now: once a minute.
  bool dns_refusal_due(std::string_view site, std::chrono::steady_clock::time_point now);
  std::atomic<std::uint32_t> dns_in_flight{0};  // queries on the wire, every thread's

  struct Gauges {
    std::uint32_t active_connections = 0;
    std::uint32_t tarpitted_connections = 0;
    int store_up = -1;  // [store]: 1 or 0; -1: a node alone (not shown)
    // This node's greylist store (nullopt: none here) and its failed writes.
    std::optional<std::size_t> greylist_records = std::nullopt;
    std::uint64_t greylist_write_errors = 0;
  };
  // The whole exposition.
  std::string render(const policy::Snapshot& snapshot, const policy::HealthBoard& health,
                     const Gauges& gauges) const;

  static constexpr std::array<double, 10> decision_buckets{1e-7, 2.5e-7, 5e-7,   1e-6, 2.5e-6,
                                                           5e-6, 1e-5,   2.5e-5, 1e-4, 1e-3};

 private:
  void render_counters(std::string& out) const;
  void count_dns(const std::string& labels, bool cached);  // an answer of either check
  mutable std::mutex mutex_;
  std::map<std::string, std::uint64_t> connections_;  // by rendered labels
  std::map<std::string, std::uint64_t> ends_;         // by end reason
  std::uint64_t bytes_in_ = 0, bytes_out_ = 0, pregreet_ = 0;
  std::array<std::uint64_t, decision_buckets.size() + 1> decision_counts_{};
  double decision_sum_ = 0;
  std::uint64_t generation_ = 0;
  std::uint64_t reloads_ok_ = 0, reloads_failed_ = 0;
  double loaded_at_ = 0;                      // unix time
  std::map<std::string, std::uint64_t> dns_;  // by rendered labels
  std::map<std::string, std::uint64_t, std::less<>> greet_cache_;
  std::map<std::string, std::uint64_t> screen_;  // by rendered labels (pool, result)
  std::uint64_t dns_cache_hits_ = 0, dns_cache_misses_ = 0, dns_not_started_ = 0;
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> dns_refusal_logged_;
  std::array<std::atomic<std::uint64_t>, policy_results> policy_{};
  std::atomic<std::uint64_t> policy_malformed_{0}, policy_refused_{0};
};

}  // namespace geomx::proxy
