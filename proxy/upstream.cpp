// The member's side: dial (typed failures), connect with failover, the
// PROXY header and the client's first bytes in one write, action "pass",
// and the hand-over to the relay.
#include "proxy/upstream.hpp"

#include <algorithm>
#include <array>
#include <optional>

#include <fmt/format.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "proxy/endpoint.hpp"
#include "proxy/proxy_protocol.hpp"
#include "proxy/relay.hpp"
#include "proxy/session.hpp"

namespace geomx::proxy {

std::string_view to_string(DialFailure f) {
  switch (f) {
    case DialFailure::none:
      return "none";
    case DialFailure::timed_out:
      return "timed_out";
    case DialFailure::peer_error:
      return "peer_error";
    case DialFailure::local_error:
      return "local_error";
  }
  return "local_error";
}

namespace {

// Errors that say something about the member (count toward its `fall`),
// not about this host (out of descriptors or ports).
bool member_error(const boost::system::error_code& ec) {
  return ec == asio::error::connection_refused || ec == asio::error::connection_reset ||
         ec == asio::error::connection_aborted || ec == asio::error::host_unreachable ||
         ec == asio::error::network_unreachable || ec == asio::error::timed_out;
}

}  // namespace

// Connects backend_ to `endpoint` within `timeout`.
asio::awaitable<DialResult> Session::dial(const conf::Endpoint& endpoint, conf::Duration timeout) {
  backend_ = Socket(client_.get_executor());
  // A plain timer that closes the socket, not `||`: this runs for every
  // session, and the awaitable operators cost a coroutine per operand. Its
  // state is on the heap: an expired timer's handler may run after the
  // connect has completed (and after this frame is gone), so it checks
  // `armed` before it touches the session.
  struct Deadline {
    bool armed = true, fired = false;
  };
  const auto state = std::make_shared<Deadline>();
  asio::steady_timer deadline(client_.get_executor(), timeout);
  deadline.async_wait([this, state](const boost::system::error_code& ec) {
    if (ec || !state->armed) return;
    state->fired = true;
    boost::system::error_code ignored;
    backend_.close(ignored);
  });
  auto [ec] = co_await backend_.async_connect(to_asio(endpoint), nothrow);
  state->armed = false;
  deadline.cancel();
  if (!ec && !state->fired) co_return DialResult{};
  boost::system::error_code ignored;
  backend_.close(ignored);
  if (state->fired) co_return DialResult{DialFailure::timed_out, "connect timed out"};
  co_return DialResult{member_error(ec) ? DialFailure::peer_error : DialFailure::local_error,
                       "connect: " + ec.message()};
}

namespace {

// A session in a member queue: woken on its own thread when a slot is
// released at a member it waits for, by cancelling its wait.
struct TimerWaiter final : policy::SlotWaiter {
  explicit TimerWaiter(asio::any_io_executor e) : executor(std::move(e)) {}
  asio::any_io_executor executor;
  asio::steady_timer* timer = nullptr;  // set and cleared on the session's thread
  std::weak_ptr<TimerWaiter> self;

 private:
  void wake() override {
    asio::post(executor, [w = self.lock()] {
      if (w && w->timer) w->timer->cancel();
    });
  }
};

// A session's place in the queue while it waits: counted in the first
// member's `queued` (max_queue), registered as a waiter at each member it
// found full. Leaving with a signal it did not use passes the signal on.
class QueuePlace {
 public:
  explicit QueuePlace(asio::steady_timer& timer)
      : waiter_(std::make_shared<TimerWaiter>(timer.get_executor())) {
    waiter_->self = waiter_;
    waiter_->timer = &timer;
  }
  ~QueuePlace() {
    waiter_->timer = nullptr;
    for (const auto& m : watched_) m->remove_waiter(waiter_.get());
    if (waiter_->signalled())
      for (const auto& m : watched_) m->wake_one();
    if (counted_) counted_->queued.fetch_sub(1, std::memory_order_relaxed);
  }
  QueuePlace(const QueuePlace&) = delete;
  QueuePlace& operator=(const QueuePlace&) = delete;

  // Registers at `m` (once): true when this is new, and the caller tries
  // for a slot once more (one released before now woke nobody).
  bool watch(const std::shared_ptr<policy::MemberHealth>& m) {
    if (std::find(watched_.begin(), watched_.end(), m) != watched_.end()) return false;
    watched_.push_back(m);
    m->add_waiter(waiter_);
    return true;
  }
  // No longer waits at `m` (it holds a slot there).
  void unwatch(const std::shared_ptr<policy::MemberHealth>& m) {
    const auto it = std::find(watched_.begin(), watched_.end(), m);
    if (it == watched_.end()) return;
    m->remove_waiter(waiter_.get());
    watched_.erase(it);
  }
  // A place in `first`'s queue, unless max_queue are there already.
  bool join(policy::MemberHealth& first, std::uint32_t max_queue) {
    if (counted_) return true;
    if (first.queued.fetch_add(1, std::memory_order_relaxed) >= max_queue) {
      first.queued.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    counted_ = &first;
    return true;
  }
  policy::SlotWaiter& waiter() { return *waiter_; }

 private:
  std::shared_ptr<TimerWaiter> waiter_;
  std::vector<std::shared_ptr<policy::MemberHealth>> watched_;
  policy::MemberHealth* counted_ = nullptr;
};

}  // namespace

// The members in fallback order, each UP one dialled once. A member at its
// max_connections is skipped; when every one left is, the session waits in
// the first one's queue (up to pool.queue_timeout and pool.max_queue) until
// a slot is released at any of them, on any thread, then tries them again;
// at least once a second, for members that came UP meanwhile. Health probes
// take no slot: they never wait behind clients.
asio::awaitable<bool> Session::connect(std::vector<std::size_t> order, std::size_t pool_index,
                                       const conf::Pool& pool) {
  std::string failures;
  std::vector<bool> dialled_once(pool.members.size(), false);
  const auto queue_until = Clock::now() + pool.queue_timeout;
  asio::steady_timer wait(client_.get_executor());
  queue_wait_ = &wait;
  struct Forget {
    asio::steady_timer*& wait;
    ~Forget() { wait = nullptr; }
  } forget{queue_wait_};
  std::optional<QueuePlace> place;  // made when a member is first found full
  for (;;) {
    bool full = false;
    for (auto m : order) {
      if (dialled_once[m] || !view_->up(pool_index, m))
        continue;  // DOWN now (maybe since the decision)
      const auto& member = view_->at(pool_index, m);
      const auto max = pool.members[m].max_connections;
      auto slot = policy::MemberSlot::take(member, max);
      if (!slot) {
        if (!place) place.emplace(wait);
        if (place->watch(member)) slot = policy::MemberSlot::take(member, max);
      }
      if (!slot) {
        full = true;
        continue;
      }
      if (place) place->unwatch(member);  // a release of this slot is for the others
      dialled_once[m] = true;
      const auto& endpoint = pool.members[m].address;
      const DialResult dialled = co_await dial(endpoint, pool.connect_timeout);
      if (shutdown_) break;
      if (dialled.ok()) {
        rec_.member = endpoint.to_string();
        member_ = std::move(*slot);
        co_return true;
      }
      failures += fmt::format("{}{} {}", failures.empty() ? "" : ", ", endpoint.to_string(),
                              dialled.detail);
      if (!dialled.peer_fault()) continue;
      auto& record = *member;
      if (const auto change = state_.health.connect_failed(record, pool.health, dialled.detail,
                                                           policy::HealthBoard::Clock::now()))
        state_.log.health(record, *change);
    }
    if (!full || shutdown_) break;
    if (!place->join(*view_->at(pool_index, order.front()), pool.max_queue)) {
      rec_.error = fmt::format(
          "{}every member left at max_connections, and the queue full "
          "(max_queue {})",
          failures.empty() ? "" : failures + "; ", pool.max_queue);
      co_await reply_and_close(
          fmt::format("421 4.3.2 {} service temporarily unavailable", hostname()),
          EndReason::member_full);
      co_return false;
    }
    if (Clock::now() >= queue_until) {
      rec_.error = fmt::format("{}every member left at max_connections for queue_timeout {}",
                               failures.empty() ? "" : failures + "; ",
                               conf::format_duration(pool.queue_timeout));
      co_await reply_and_close(
          fmt::format("421 4.3.2 {} service temporarily unavailable", hostname()),
          EndReason::member_full);
      co_return false;
    }
    if (!place->waiter().signalled()) {  // a release during this round: try again at once
      wait.expires_at(std::min(queue_until, Clock::now() + std::chrono::seconds(1)));
      co_await wait.async_wait(nothrow);
    }
    place->waiter().rearm();
    if (shutdown_) break;
  }
  rec_.error = failures.empty() ? "no member up" : failures;
  co_await reply_and_close(fmt::format("421 4.3.2 {} service temporarily unavailable", hostname()),
                           EndReason::connect_failed);
  co_return false;
}

// Action "pass": to the address the client dialled, as it sent it (no
// PROXY header: the peer is someone else's server).
asio::awaitable<void> Session::pass() {
  static const conf::Pool relay_settings;  // the pool defaults: connect, idle and fin timeouts
  rec_.member = dest_->to_string();
  const DialResult dialled = co_await dial(*dest_, relay_settings.connect_timeout);
  if (shutdown_) {  // the drain closed the socket under the connect
    finish(EndReason::shutdown);
    co_return;
  }
  if (!dialled.ok()) {
    rec_.error = fmt::format("{} {}", dest_->to_string(), dialled.detail);
    co_await reply_and_close(fmt::format("421 4.4.1 {} no answer from host", hostname()),
                             EndReason::connect_failed);
    co_return;
  }
  boost::system::error_code ec;
  const auto ours = backend_.local_endpoint(ec);
  if (!ec) own_ = state_.own.add(from_asio(ours));
  if (!co_await send_first(relay_settings)) co_return;
  if (shutdown_) {
    finish(EndReason::shutdown);
    co_return;
  }
  relay(relay_settings);
}

// The PROXY header and whatever the client already sent, in one write:
// Postfix reads the header with one peek.
asio::awaitable<bool> Session::send_first(const conf::Pool& pool) {
  std::string header;
  // (An XCLIENT pool's sessions are replayed, never sent here.)
  if (pool.proxy_protocol == conf::ProxyProtocol::v1 ||
      pool.proxy_protocol == conf::ProxyProtocol::v2) {
    boost::system::error_code ec;  // otherwise: the address the client connected to
    const conf::Endpoint dest = dest_ ? *dest_ : from_asio(client_.local_endpoint(ec));
    header = make_proxy_header(pool.proxy_protocol, &rec_.client, &dest);
  }
  if (header.empty() && pending_.empty()) co_return true;
  const std::array<asio::const_buffer, 2> first{asio::buffer(header), asio::buffer(pending_)};
  auto [ec, n] = co_await asio::async_write(backend_, first, nothrow);
  std::vector<std::uint8_t>().swap(pending_);  // an idle session keeps no heap it does not need
  if (!ec) co_return true;
  rec_.error = "writing to the member failed: " + ec.message();
  finish(EndReason::server_closed);
  co_return false;
}

// From here on the session is a Relay: the coroutine (and its frames) end.
void Session::relay(const conf::Pool& pool) {
  // Relay each write as the peers made it: Nagle would hold back the
  // second of two small writes (an SMTP reply after a partial one).
  boost::system::error_code ignored;
  client_.set_option(tcp::no_delay(true), ignored);
  backend_.set_option(tcp::no_delay(true), ignored);
  if (dns_) dns_->describe(rec_);  // what has answered by now
  start_relay({std::move(client_), std::move(backend_), std::move(rec_), std::move(snap_), pool,
               start_, std::move(slot_), std::move(ip_slot_), std::move(member_), std::move(holds_),
               std::move(own_)},
              state_, registry_);
}

}  // namespace geomx::proxy
