#pragma once
// Health of the pool members: one record per (pool name, member address),
// kept across reloads while the member stays in the config, fed by active probes (SMTP or TCP,
// driven by [pool.NAME.health]) and by the connect failures of real sessions; the balancer skips
// members that are DOWN. A state change is logged once.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "policy/balance.hpp"
#include "policy/health.hpp"
#include "policy/snapshot.hpp"
#include "proxy/log.hpp"

namespace geomx::proxy {

struct MemberHealth {
  MemberHealth(std::string p, conf::Endpoint a) : pool(std::move(p)), address(a) {}
  const std::string pool;
  const conf::Endpoint address;
  std::atomic<bool> up{true};
  std::atomic<std::uint32_t> active{0};  // relayed sessions now (least-conn)
  std::atomic<std::uint64_t> checks{0}, check_failures{0}, connect_failures{0};

  struct Detail {
    policy::HealthState state;
    std::chrono::system_clock::time_point last_change = std::chrono::system_clock::now();
    double last_probe_seconds = 0;
    std::string last_error;         // of the last failed check, "" after a success
    std::optional<long> cert_days;  // STARTTLS probes: days until the certificate expires
    std::string cert_subject;
  };
  Detail detail() const {
    std::lock_guard lock(mutex);
    return detail_;
  }

 private:
  friend class HealthBoard;
  mutable std::mutex mutex;
  Detail detail_;
};

class HealthBoard {
 public:
  explicit HealthBoard(Log& log) : log_(log) {}
  // The record of this member of this pool, made on first use.
  std::shared_ptr<MemberHealth> member(const std::string& pool, const conf::Endpoint& address);
  std::vector<std::shared_ptr<MemberHealth>> all() const;

  struct Result {
    bool ok = false;
    std::string error;  // why it failed
    double seconds = 0;
    std::optional<long> cert_days;
    std::string cert_subject;
  };
  // An active probe's result; logs when the state changes.
  void probed(MemberHealth& m, const conf::Health& h, const Result& r);
  // A real session could not connect: counts toward fall like a failed probe.
  void connect_failed(MemberHealth& m, const conf::Health& h, const std::string& error);

 private:
  void record(MemberHealth& m, const conf::Health& h, bool ok, const std::string& why,
              std::string_view source);
  Log& log_;
  mutable std::mutex mutex_;
  // Held by the HealthViews (and relays) that use them: a member a reload
  // removed is gone from the board once nothing uses it.
  std::map<std::pair<std::string, std::string>, std::weak_ptr<MemberHealth>> members_;
};

// The board as the balancer of one snapshot sees it: [pool][member].
class HealthView final : public policy::MemberStates {
 public:
  HealthView(HealthBoard& board, const policy::Snapshot& snapshot);
  bool up(std::size_t pool, std::size_t member) const override {
    return members_[pool][member]->up.load(std::memory_order_relaxed);
  }
  std::uint32_t active(std::size_t pool, std::size_t member) const override {
    return members_[pool][member]->active.load(std::memory_order_relaxed);
  }
  const std::shared_ptr<MemberHealth>& at(std::size_t pool, std::size_t member) const {
    return members_[pool][member];
  }

 private:
  std::vector<std::vector<std::shared_ptr<MemberHealth>>> members_;
};

// One SMTP (or TCP) probe of a member, bounded by health.timeout: connect;
// a PROXY v2 LOCAL header when the pool sends PROXY (Postfix then logs no
// warning); the whole banner, 2xx; EHLO, 250; with starttls: STARTTLS, 220,
// the TLS handshake and the certificate's subject and days to expiry; QUIT,
// 221.
boost::asio::awaitable<HealthBoard::Result> probe_member(const conf::Pool& pool,
                                                         const conf::Member& member);

}  // namespace geomx::proxy
