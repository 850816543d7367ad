#include "policy/health_board.hpp"

namespace geomx::policy {

std::string_view to_string(ProbeStatus s) {
  switch (s) {
    case ProbeStatus::ok:
      return "ok";
    case ProbeStatus::connect_failed:
      return "connect_failed";
    case ProbeStatus::timeout:
      return "timeout";
    case ProbeStatus::send_failed:
      return "send_failed";
    case ProbeStatus::bad_reply:
      return "bad_reply";
    case ProbeStatus::tls_failed:
      return "tls_failed";
    case ProbeStatus::local_error:
      return "local_error";
    case ProbeStatus::error:
      return "error";
  }
  return "error";
}

std::shared_ptr<MemberHealth> HealthBoard::member(const std::string& pool,
                                                  const conf::Endpoint& address,
                                                  Clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto& slot = members_[{pool, address.to_string()}];
  if (auto m = slot.lock()) return m;
  // Not in any config since the last reload: forget what was (it starts UP).
  std::erase_if(members_, [](const auto& kv) { return kv.second.expired(); });
  auto m = std::make_shared<MemberHealth>(pool, address, now);
  members_[{pool, address.to_string()}] = m;
  return m;
}

std::vector<std::shared_ptr<MemberHealth>> HealthBoard::all() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<MemberHealth>> out;
  for (const auto& [key, weak] : members_)
    if (auto m = weak.lock()) out.push_back(std::move(m));
  return out;
}

std::optional<HealthChange> HealthBoard::probed(MemberHealth& m, const conf::Health& h,
                                                const ProbeResult& r, Clock::time_point now) {
  if (r.status == ProbeStatus::local_error) {
    m.local_errors.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  m.checks.fetch_add(1, std::memory_order_relaxed);
  if (!r.ok()) m.check_failures.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(m.mutex);
    m.detail_.last_probe_seconds = r.seconds;
    m.detail_.last_error = r.detail;
    if (!r.ehlo.empty()) m.capabilities_ = r.ehlo;
    if (r.cert_days) {
      m.detail_.cert_days = r.cert_days;
      m.detail_.cert_subject = r.cert_subject;
    }
  }
  return record(m, h, r.ok(), r.detail, "probe", now);
}

std::optional<HealthChange> HealthBoard::connect_failed(MemberHealth& m, const conf::Health& h,
                                                        const std::string& error,
                                                        Clock::time_point now) {
  m.connect_failures.fetch_add(1, std::memory_order_relaxed);
  return record(m, h, false, error, "session", now);
}

std::optional<HealthChange> HealthBoard::record(MemberHealth& m, const conf::Health& h, bool ok,
                                                const std::string& why, std::string_view source,
                                                Clock::time_point now) {
  std::lock_guard lock(m.mutex);
  if (!m.detail_.state.record(ok, h.rise, h.fall)) return std::nullopt;
  const bool up = m.detail_.state.up();
  m.detail_.last_change = now;
  m.up.store(up, std::memory_order_relaxed);
  return HealthChange{up, up ? h.rise : h.fall, source, up ? std::string() : why};
}

HealthView::HealthView(HealthBoard& board, const Snapshot& snapshot,
                       HealthBoard::Clock::time_point now) {
  for (const auto& pool : snapshot.config.pools) {
    auto& row = members_.emplace_back();
    for (const auto& m : pool.members) row.push_back(board.member(pool.name, m.address, now));
  }
}

std::optional<MemberSlot> MemberSlot::take(std::shared_ptr<MemberHealth> member,
                                           std::uint32_t max) {
  auto& active = member->active;
  if (max == 0) {
    active.fetch_add(1, std::memory_order_relaxed);
  } else {
    auto n = active.load();
    do {
      if (n >= max) return std::nullopt;
    } while (!active.compare_exchange_weak(n, n + 1));
  }
  MemberSlot slot;
  slot.member_ = std::move(member);
  return slot;
}

void MemberHealth::add_waiter(std::shared_ptr<SlotWaiter> w) {
  std::lock_guard lock(waiters_mutex_);
  waiters_.push_back(std::move(w));
  waiting_.store(static_cast<std::uint32_t>(waiters_.size()));
}

void MemberHealth::remove_waiter(const SlotWaiter* w) {
  std::lock_guard lock(waiters_mutex_);
  std::erase_if(waiters_, [w](const auto& x) { return x.get() == w; });
  waiting_.store(static_cast<std::uint32_t>(waiters_.size()));
}

void MemberHealth::wake_one() {
  if (waiting_.load() == 0) return;  // the common case: nobody waits, no lock
  std::lock_guard lock(waiters_mutex_);
  for (const auto& w : waiters_)
    if (w->signal()) return;
}

}  // namespace geomx::policy
