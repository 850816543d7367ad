#pragma once
// Health of the pool members: one record per (pool name, member address),
// kept across reloads while the member stays in the config, fed by active
// probes and by the connect failures of real sessions; the balancer skips
// members that are DOWN. Pure: results and the time come in, and a state
// change comes out for the caller to log (once).
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/balance.hpp"
#include "policy/health.hpp"
#include "policy/snapshot.hpp"

namespace geomx::policy {

// How a probe ended, as haproxy's healthcheck_status: one word each; the
// detail says what was seen. local_error is this host's fault (out of
// descriptors, buffers or ports): it says nothing of the member.
enum class ProbeStatus {
  ok,
  connect_failed,
  timeout,
  send_failed,
  bad_reply,
  tls_failed,
  local_error,
  error
};
std::string_view to_string(ProbeStatus);

struct ProbeResult {
  ProbeStatus status = ProbeStatus::error;
  std::string detail;  // "connect: Connection refused", "EHLO: \"554 go away\"", ...
  double seconds = 0;
  std::optional<long> cert_days;  // STARTTLS probes: days until the certificate expires
  std::string cert_subject;
  std::string ehlo;  // SMTP probes: the EHLO reply, every line with its CRLF
  bool ok() const { return status == ProbeStatus::ok; }
};

// A session waiting for a slot at members that are at max_connections:
// signalled (once until it rearms) when a slot is released at one of them,
// instead of polling. wake() runs on the releasing thread and hands the
// news to the waiter's own.
class SlotWaiter {
 public:
  virtual ~SlotWaiter() = default;
  // True when this call signalled it (it was not already).
  bool signal() {
    if (signalled_.exchange(true)) return false;
    wake();
    return true;
  }
  bool signalled() const { return signalled_.load(); }
  void rearm() { signalled_.store(false); }

 private:
  virtual void wake() = 0;
  std::atomic<bool> signalled_{false};
};

struct MemberHealth {
  using Clock = std::chrono::system_clock;
  MemberHealth(std::string p, conf::Endpoint a, Clock::time_point now)
      : pool(std::move(p)), address(a) {
    detail_.last_change = now;
  }
  const std::string pool;
  const conf::Endpoint address;
  std::atomic<bool> up{true};
  std::atomic<std::uint32_t> active{0};  // sessions at it now: dialling or relayed (MemberSlot)
  std::atomic<std::uint32_t> queued{0};  // sessions waiting for a slot at it (max_connections)
  std::atomic<std::uint64_t> checks{0}, check_failures{0}, connect_failures{0};
  std::atomic<std::uint64_t> local_errors{0};  // probes this host could not make

  struct Detail {
    HealthState state;
    Clock::time_point last_change;
    double last_probe_seconds = 0;
    std::string last_error;         // of the last failed check, "" after a success
    std::optional<long> cert_days;  // STARTTLS probes: days until the certificate expires
    std::string cert_subject;
  };
  Detail detail() const {
    std::lock_guard lock(mutex);
    return detail_;
  }
  // The member's EHLO reply as its last SMTP probe saw it ("" before one
  // did): what a screen pool's clients are offered.
  std::string capabilities() const {
    std::lock_guard lock(mutex);
    return capabilities_;
  }

  // The sessions waiting for a slot here, first come first woken. A waiter
  // registers before its last try for a slot, so a release after that try
  // finds it.
  void add_waiter(std::shared_ptr<SlotWaiter> w);
  void remove_waiter(const SlotWaiter* w);
  // A slot was released: signals the first waiter not signalled yet.
  void wake_one();

 private:
  friend class HealthBoard;
  mutable std::mutex mutex;
  Detail detail_;
  std::string capabilities_;
  std::mutex waiters_mutex_;
  std::deque<std::shared_ptr<SlotWaiter>> waiters_;
  std::atomic<std::uint32_t> waiting_{0};  // waiters_.size(), read without the lock
};

// A member went UP or DOWN: what the log says of it.
struct HealthChange {
  bool up = false;
  std::uint32_t after = 0;  // rise successes or fall failures in a row
  std::string_view source;  // "probe" or "session"
  std::string error;        // DOWN: the last failure
};

// A session's place at a member, from its dial until its relay ends:
// counted in `active` (least-conn, the metric, max_connections).
class MemberSlot {
 public:
  MemberSlot() = default;
  // A place among `max` (0: no limit), or nullopt when all are taken.
  static std::optional<MemberSlot> take(std::shared_ptr<MemberHealth> member, std::uint32_t max);
  MemberSlot(MemberSlot&& o) noexcept : member_(std::move(o.member_)) {}
  MemberSlot& operator=(MemberSlot&& o) noexcept {
    if (this != &o) {
      release();
      member_ = std::move(o.member_);
    }
    return *this;
  }
  ~MemberSlot() { release(); }
  MemberHealth* get() const { return member_.get(); }
  MemberHealth* operator->() const { return member_.get(); }
  explicit operator bool() const { return member_ != nullptr; }

 private:
  // Sequentially consistent with take() and add_waiter(): either the
  // waiter's try sees the free slot or this sees the waiter.
  void release() {
    if (!member_) return;
    member_->active.fetch_sub(1);
    member_->wake_one();
    member_.reset();
  }
  std::shared_ptr<MemberHealth> member_;
};

class HealthBoard {
 public:
  using Clock = MemberHealth::Clock;
  // The record of this member of this pool, made on first use.
  std::shared_ptr<MemberHealth> member(const std::string& pool, const conf::Endpoint& address,
                                       Clock::time_point now);
  std::vector<std::shared_ptr<MemberHealth>> all() const;

  // An active probe's result; a local_error is counted apart and changes
  // nothing else.
  std::optional<HealthChange> probed(MemberHealth& m, const conf::Health& h, const ProbeResult& r,
                                     Clock::time_point now);
  // A real session could not connect: counts toward fall like a failed probe.
  std::optional<HealthChange> connect_failed(MemberHealth& m, const conf::Health& h,
                                             const std::string& error, Clock::time_point now);

 private:
  static std::optional<HealthChange> record(MemberHealth& m, const conf::Health& h, bool ok,
                                            const std::string& why, std::string_view source,
                                            Clock::time_point now);
  mutable std::mutex mutex_;
  // Held by the HealthViews (and relays) that use them: a member a reload
  // removed is gone from the board once nothing uses it.
  std::map<std::pair<std::string, std::string>, std::weak_ptr<MemberHealth>> members_;
};

// The board as the balancer of one snapshot sees it: [pool][member].
class HealthView final : public MemberStates {
 public:
  // Records made now (members new to the board) start UP at `now`.
  HealthView(HealthBoard& board, const Snapshot& snapshot, HealthBoard::Clock::time_point now);
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

}  // namespace geomx::policy
