// One client connection, start to end: PROXY header in, limits, decision,
// reject/drop/tarpit or the routed path (greet delay with pregreet
// detection, connect with failover, PROXY header out, relay), and one log
// line whatever the end.
#include <array>
#include <memory>
#include <span>
#include <variant>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "policy/decide.hpp"
#include "proxy/endpoint.hpp"
#include "proxy/original_dst.hpp"
#include "proxy/proxy_protocol.hpp"
#include "proxy/relay.hpp"
#include "proxy/server.hpp"

namespace geomx::proxy {
namespace {

using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t max_pending = 4096;  // client bytes held before relaying

class Session final : public SessionRegistry::Member {
 public:
  Session(Socket client, const tcp::endpoint& peer, const Runtime& runtime, std::size_t listener,
          ServerState& state, SessionRegistry& registry)
      : runtime_(runtime),
        client_(std::move(client)),
        backend_(client_.get_executor()),
        state_(state),
        snap_(runtime.snapshot),
        listener_(snap_->config.listeners[listener]),
        listener_index_(listener),
        start_(Clock::now()),
        registry_(registry),
        view_(runtime.view) {
    rec_.conn = state.next_conn.fetch_add(1, std::memory_order_relaxed);
    rec_.listener = listener_.name;
    rec_.peer = from_asio(peer);
    rec_.client = rec_.peer;
  }

  asio::awaitable<void> run();

  // SessionRegistry::Member. Until the relay, every wait has its own deadline.
  void check_idle(Clock::time_point) override {}
  void shut_down() override {
    shutdown_ = true;
    close_both();
  }

 private:
  const std::string& hostname() const { return snap_->config.server.hostname; }
  asio::awaitable<void> reply_and_close(std::string_view line, EndReason end);
  asio::awaitable<bool> read_proxy_header();
  asio::awaitable<bool> read_original_destination();
  asio::awaitable<std::string> dial(const conf::Endpoint& endpoint, conf::Duration timeout,
                                    bool& fault);
  asio::awaitable<void> pass();
  asio::awaitable<void> tarpit(std::string_view reply);
  asio::awaitable<bool> within_limits(const std::vector<std::size_t>& limits);
  asio::awaitable<bool> greet_delay(const conf::Pool& pool);
  asio::awaitable<bool> connect(std::vector<std::size_t> order, std::size_t pool_index,
                                const conf::Pool& pool);
  asio::awaitable<bool> send_first(const conf::Pool& pool);
  void relay(const conf::Pool& pool);
  void close_both() {
    boost::system::error_code ec;
    client_.close(ec);
    backend_.close(ec);
  }
  void finish(EndReason end) {
    rec_.end = shutdown_ ? EndReason::shutdown : end;
    rec_.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_);
    close_both();
    state_.session_ended(rec_);
  }

  const Runtime& runtime_;  // run_session holds it while this runs
  Socket client_, backend_;
  ServerState& state_;
  std::shared_ptr<const policy::Snapshot> snap_;  // the whole session uses the one it began with
  const conf::Listener& listener_;
  std::size_t listener_index_;
  Clock::time_point start_;
  std::optional<conf::Endpoint> dest_;  // ... as the PROXY header or the NAT gave it
  SessionRecord rec_;
  std::string member_name_;
  std::vector<std::uint8_t> pending_;  // client bytes to relay once connected
  bool shutdown_ = false;
  SessionRegistry& registry_;
  std::optional<ConnectionLimits::Slot> slot_, ip_slot_;  // held until the relay ends
  std::shared_ptr<const HealthView> view_;                // the members' health
  std::shared_ptr<MemberHealth> member_;                  // the one connected to
  std::vector<LimitTable::Hold> holds_;                   // [[limit]] concurrent counts
  std::unique_ptr<OwnConnections::Entry> own_;            // action "pass": our end, while it lasts
};

// The [[limit]]s whose scope the client is in, in config order; the first
// one it exceeds decides: 421 now, a tarpit, or a dated block (ban).
asio::awaitable<bool> Session::within_limits(const std::vector<std::size_t>& limits) {
  const auto now = Clock::now();
  for (const auto i : limits) {
    const conf::Limit& limit = snap_->config.limits[i];
    std::optional<LimitTable::Hold> hold;
    const auto verdict = runtime_.limit_tables[i]->enter(rec_.client.address, limit, now, hold);
    if (verdict == LimitTable::Verdict::ok) {
      if (hold) holds_.push_back(std::move(*hold));
      continue;
    }
    rec_.action = conf::to_string(limit.action);
    rec_.error =
        fmt::format("limit {}: {}", limit.name,
                    verdict == LimitTable::Verdict::over_rate
                        ? fmt::format("over {}/{}", limit.rate, conf::format_duration(limit.per))
                        : fmt::format("over {} at once", limit.concurrent));
    const auto reply =
        fmt::format("421 4.7.0 {} too many connections, try again later", hostname());
    if (limit.action == conf::LimitAction::tarpit) {
      co_await tarpit(reply);
      co_return false;
    }
    if (limit.action == conf::LimitAction::ban) {
      const auto unix = unix_now();
      Block b{geo::Prefix::containing(rec_.client.address, rec_.client.address.is_v4()
                                                               ? limit.aggregate_v4
                                                               : limit.aggregate_v6),
              rec_.error, unix,
              unix + std::chrono::duration_cast<std::chrono::seconds>(limit.ban_for).count(),
              "limit:" + limit.name};
      // Written to disk on the control thread: an fsync must not stall this one.
      if (state_.ban) state_.ban(std::move(b));
    }
    co_await reply_and_close(reply, EndReason::limited);
    co_return false;
  }
  co_return true;
}

asio::awaitable<void> Session::reply_and_close(std::string_view line, EndReason end) {
  const std::string text = std::string(line) + "\r\n";
  const auto limit = snap_->config.server.reply_timeout;
  asio::steady_timer deadline(client_.get_executor(), limit);
  auto r = co_await (asio::async_write(client_, asio::buffer(text), nothrow) ||
                     deadline.async_wait(nothrow));
  if (r.index() == 0 && !std::get<0>(std::get<0>(r))) rec_.bytes_out += text.size();
  // Close gracefully: the client reads the reply instead of a reset.
  boost::system::error_code ec;
  client_.shutdown(tcp::socket::shutdown_send, ec);
  deadline.expires_after(std::min<conf::Duration>(limit, std::chrono::seconds(2)));
  std::array<char, 512> sink;
  for (;;) {
    auto d = co_await (client_.async_read_some(asio::buffer(sink), nothrow) ||
                       deadline.async_wait(nothrow));
    if (d.index() == 1 || std::get<0>(std::get<0>(d))) break;
    rec_.bytes_in += std::get<1>(std::get<0>(d));
  }
  finish(end);
}

// The PROXY header, within listener.proxy_timeout from the accept, from a
// trusted peer only. Bytes after it are the client's and are kept.
asio::awaitable<bool> Session::read_proxy_header() {
  const bool trusted =
      std::any_of(listener_.trusted_proxies.begin(), listener_.trusted_proxies.end(),
                  [&](const geo::Prefix& p) { return p.contains(rec_.peer.address); });
  if (!trusted) {
    rec_.error = "peer is not in trusted_proxies";
    finish(EndReason::untrusted_proxy);
    co_return false;
  }
  std::array<std::uint8_t, max_proxy_header> buf;
  std::size_t have = 0;
  asio::steady_timer deadline(client_.get_executor(), listener_.proxy_timeout);
  for (;;) {
    auto r = co_await (
        client_.async_read_some(asio::buffer(buf.data() + have, buf.size() - have), nothrow) ||
        deadline.async_wait(nothrow));
    if (r.index() == 1) {
      rec_.error = "no complete PROXY header before proxy_timeout";
      break;
    }
    auto [ec, n] = std::get<0>(r);
    if (ec) {
      rec_.error = have == 0 ? "closed before the PROXY header" : "closed inside the PROXY header";
      break;
    }
    have += n;
    rec_.bytes_in += n;
    const auto parsed = parse_proxy_header(std::span(buf.data(), have), listener_.proxy_protocol);
    if (parsed.status == ParseStatus::incomplete && have < buf.size()) continue;
    if (parsed.status != ParseStatus::complete) {
      rec_.error = parsed.status == ParseStatus::invalid ? parsed.error : "PROXY header too long";
      break;
    }
    if (parsed.header.source) {
      rec_.client = *parsed.header.source;
      dest_ = parsed.header.destination;
    }
    pending_.assign(buf.begin() + static_cast<std::ptrdiff_t>(parsed.header.length),
                    buf.begin() + static_cast<std::ptrdiff_t>(have));
    co_return true;
  }
  finish(EndReason::proxy_header_error);  // nothing is sent: the peer is a proxy, not a client
  co_return false;
}

// A transparent listener's client dialled someone else; the NAT says whom.
// Without a NAT entry, or dialling geomx itself, relaying would loop.
asio::awaitable<bool> Session::read_original_destination() {
  boost::system::error_code ec;
  const auto local = from_asio(client_.local_endpoint(ec));
  // IPv4 clients of a dual-stack socket come through the IPv4 NAT.
  auto dst = original_destination(client_.native_handle(), !local.address.is_v4());
  bool looped = state_.own.contains(rec_.peer);
  if (!looped && is_local_address(rec_.peer.address)) {
    // From this host: maybe geomx's own pass connection, whose accept here
    // can come before the dialling session has noted its end. Give it that
    // moment (only connections from local addresses wait).
    asio::steady_timer moment(client_.get_executor(), std::chrono::milliseconds(2));
    co_await moment.async_wait(nothrow);
    looped = state_.own.contains(rec_.peer);
  }
  if (looped) {
    rec_.error =
        fmt::format("looped: {} is geomx's own relay; exclude geomx's user from the REDIRECT",
                    rec_.peer.to_string());
  } else if (auto* why = std::get_if<std::string>(&dst)) {
    rec_.error = *why;
  } else {
    const auto& d = std::get<conf::Endpoint>(dst);
    // The listener it came in on, another listener's address, or a port a
    // wildcard listener serves on an address of this host.
    const auto& listeners = snap_->config.listeners;
    const auto any = [&](auto pred) {
      return std::any_of(listeners.begin(), listeners.end(), pred);
    };
    const bool ours = d == local || any([&](const conf::Listener& l) { return l.address == d; }) ||
                      (any([&](const conf::Listener& l) {
                         return l.address.port == d.port && l.address.address.is_unspecified() &&
                                l.address.address.is_v4() == d.address.is_v4();
                       }) &&
                       is_local_address(d.address));
    if (!ours) {
      dest_ = d;
      co_return true;
    }
    rec_.error = fmt::format("not redirected: {} is geomx's own listener", d.to_string());
  }
  co_await reply_and_close(fmt::format("554 5.4.6 {} routing loop detected", hostname()),
                           EndReason::not_redirected);
  co_return false;
}

// Action "pass": to the address the client dialled, as it sent it (no
// PROXY header: the peer is someone else's server).
asio::awaitable<void> Session::pass() {
  static const conf::Pool relay_settings;  // the pool defaults: connect, idle and fin timeouts
  rec_.member = dest_->to_string();
  bool fault = false;
  const std::string why = co_await dial(*dest_, relay_settings.connect_timeout, fault);
  if (shutdown_) {  // the drain closed the socket under the connect
    finish(EndReason::shutdown);
    co_return;
  }
  if (!why.empty()) {
    rec_.error = fmt::format("{} {}", dest_->to_string(), why);
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

// `421` a byte a second for server.tarpit_duration: it costs the bot, not us.
asio::awaitable<void> Session::tarpit(std::string_view reply) {
  const std::string text = std::string(reply) + "\r\n";
  const auto until = Clock::now() + snap_->config.server.tarpit_duration;
  asio::steady_timer tick(client_.get_executor());
  for (std::size_t i = 0; i < text.size() && Clock::now() < until; ++i) {
    auto [ec, n] = co_await asio::async_write(client_, asio::buffer(&text[i], 1), nothrow);
    if (ec) break;
    rec_.bytes_out += n;
    tick.expires_after(std::chrono::seconds(1));
    co_await tick.async_wait(nothrow);
  }
  finish(EndReason::tarpitted);
}

// The delayed greeting: an optional 220- teaser now, then greet_delay of
// silence from the client. Anything it sends before is a pregreet.
asio::awaitable<bool> Session::greet_delay(const conf::Pool& pool) {
  if (!pool.greet_banner.empty()) {
    const std::string teaser = pool.greet_banner + "\r\n";
    auto [ec, n] = co_await asio::async_write(client_, asio::buffer(teaser), nothrow);
    if (ec) {
      finish(EndReason::client_closed);
      co_return false;
    }
    rec_.bytes_out += n;
  }
  asio::steady_timer delay(client_.get_executor(), pool.greet_delay);
  std::array<std::uint8_t, 1024> buf;
  for (bool talked = !pending_.empty();;) {
    if (talked && !rec_.pregreet) {
      rec_.pregreet = true;
      if (pool.pregreet == conf::Pregreet::drop) {
        finish(EndReason::pregreet);
        co_return false;
      }
      if (pool.pregreet == conf::Pregreet::reject) {
        co_await reply_and_close(fmt::format("554 5.5.1 {} protocol error", hostname()),
                                 EndReason::pregreet);
        co_return false;
      }
    }
    // Wait for readability rather than racing a read against the timer:
    // a read that completes in the same tick as the timer would lose bytes.
    auto r =
        co_await (client_.async_wait(tcp::socket::wait_read, nothrow) || delay.async_wait(nothrow));
    if (r.index() == 1) co_return true;  // the delay is over
    boost::system::error_code ec;
    const std::size_t n =
        std::get<0>(std::get<0>(r)) ? 0 : client_.read_some(asio::buffer(buf), ec);
    if (n == 0) {
      finish(EndReason::client_closed);
      co_return false;
    }
    rec_.bytes_in += n;
    talked = true;
    if (pool.pregreet != conf::Pregreet::log) continue;
    // pregreet = "log": keep what it said for the member, whole or not at all.
    if (pending_.size() + n > max_pending) {
      rec_.error = fmt::format("pregreet of more than {} bytes", max_pending);
      finish(EndReason::pregreet);
      co_return false;
    }
    pending_.insert(pending_.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
  }
}

// Members in the policy's order; refused or timed out: the next one.
// Errors that say something about the member (count toward its `fall`),
// not about this host (out of descriptors or ports).
bool member_error(const boost::system::error_code& ec) {
  return ec == asio::error::connection_refused || ec == asio::error::connection_reset ||
         ec == asio::error::connection_aborted || ec == asio::error::host_unreachable ||
         ec == asio::error::network_unreachable || ec == asio::error::timed_out;
}

// Connects backend_ to `endpoint` within `timeout`: "" or why not, and
// whether that says something about the peer (`fault`: it counts toward a
// member's `fall`) rather than about this host (out of descriptors or ports).
asio::awaitable<std::string> Session::dial(const conf::Endpoint& endpoint, conf::Duration timeout,
                                           bool& fault) {
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
  if (!ec && !state->fired) co_return std::string();
  fault = state->fired || member_error(ec);
  boost::system::error_code ignored;
  backend_.close(ignored);
  co_return state->fired ? "connect timed out" : "connect: " + ec.message();
}

asio::awaitable<bool> Session::connect(std::vector<std::size_t> order, std::size_t pool_index,
                                       const conf::Pool& pool) {
  std::string failures;
  for (auto m : order) {
    if (!view_->up(pool_index, m)) continue;  // DOWN now (maybe since the decision)
    const auto& endpoint = pool.members[m].address;
    bool fault = false;
    const std::string why = co_await dial(endpoint, pool.connect_timeout, fault);
    if (shutdown_) break;
    if (why.empty()) {
      rec_.member = endpoint.to_string();
      member_ = view_->at(pool_index, m);
      co_return true;
    }
    failures += fmt::format("{}{} {}", failures.empty() ? "" : ", ", endpoint.to_string(), why);
    if (fault) state_.health.connect_failed(*view_->at(pool_index, m), pool.health, why);
  }
  rec_.error = failures.empty() ? "no member up" : failures;
  co_await reply_and_close(fmt::format("421 4.3.2 {} service temporarily unavailable", hostname()),
                           EndReason::connect_failed);
  co_return false;
}

// The PROXY header and whatever the client already sent, in one write:
// Postfix reads the header with one peek.
asio::awaitable<bool> Session::send_first(const conf::Pool& pool) {
  std::string header;
  if (pool.proxy_protocol != conf::ProxyProtocol::none) {
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
  start_relay({std::move(client_), std::move(backend_), std::move(rec_), std::move(snap_), pool,
               start_, std::move(slot_), std::move(ip_slot_), std::move(member_), std::move(holds_),
               std::move(own_)},
              state_, registry_);
}

asio::awaitable<void> Session::run() {
  const auto& server = snap_->config.server;
  if (auto slot = state_.limits.enter(server.max_connections)) {
    slot_.emplace(std::move(*slot));
  } else {
    // A few beyond the limit are told why; a flood is closed at once.
    auto spare = state_.limits.enter_spare(std::max<std::uint32_t>(16, server.max_connections / 4));
    if (!spare) {
      rec_.error = "closed without a reply: too many connections waiting for one";
      finish(EndReason::too_busy);
      co_return;
    }
    co_await reply_and_close(fmt::format("421 4.3.2 {} too busy, try again later", hostname()),
                             EndReason::too_busy);
    co_return;
  }
  if (listener_.proxy_protocol != conf::ProxyProtocol::none && !co_await read_proxy_header())
    co_return;
  if (listener_.mode == conf::ListenerMode::transparent && !co_await read_original_destination())
    co_return;
  if (const auto block = state_.blocks.find(rec_.client.address, unix_now())) {
    rec_.error = fmt::format("blocked by {} ({}{}{})", block->cidr.to_string(), block->origin,
                             block->comment.empty() ? "" : ": ", block->comment);
    co_await reply_and_close(fmt::format("554 5.7.1 {} access denied", hostname()),
                             EndReason::blocked);
    co_return;
  }
  if (auto slot = state_.limits.enter_ip(rec_.client.address, server.max_connections_per_ip)) {
    ip_slot_.emplace(std::move(*slot));
  } else {
    co_await reply_and_close(
        fmt::format("421 4.7.0 {} too many connections from your address", hostname()),
        EndReason::too_many_from_ip);
    co_return;
  }
  const auto sequence = state_.sequence.fetch_add(1, std::memory_order_relaxed);
  const auto decide_start = Clock::now();
  policy::Decision d =
      policy::decide({rec_.client.address, listener_index_}, *snap_, *view_, sequence);
  state_.metrics.decision(Clock::now() - decide_start);
  const conf::Rule& rule = snap_->config.rules[d.rule];
  rec_.country = d.country;
  rec_.rule = rule.name;
  rec_.action = conf::to_string(d.action);
  if (!d.limits.empty() && !co_await within_limits(d.limits)) co_return;
  switch (d.action) {
    case conf::Action::reject:
      co_await reply_and_close(rule.reply, EndReason::rejected);
      co_return;
    case conf::Action::drop:
      finish(EndReason::dropped);
      co_return;
    case conf::Action::tarpit:
      co_await tarpit(rule.reply);
      co_return;
    case conf::Action::pass:
      co_await pass();
      co_return;
    case conf::Action::route:
      break;
  }
  const conf::Pool& pool = snap_->config.pools[d.pool];
  rec_.pool = pool.name;
  if (!d.member) {
    co_await reply_and_close(
        fmt::format("421 4.3.2 {} service temporarily unavailable", hostname()),
        EndReason::no_member);
    co_return;
  }
  if (pool.greet_delay.count() > 0 && !co_await greet_delay(pool)) co_return;
  if (!co_await connect(std::move(d.order), d.pool, pool)) co_return;
  if (!co_await send_first(pool)) co_return;
  if (shutdown_) {  // the drain closed it while the first bytes went out
    finish(EndReason::shutdown);
    co_return;
  }
  relay(pool);
}

}  // namespace

asio::awaitable<void> run_session(Socket socket, tcp::endpoint peer, std::string listener,
                                  ServerState& state, SessionRegistry& registry) {
  // Counted however the session ends, so a drain never waits for a ghost.
  struct Count {
    std::atomic<std::uint32_t>& n;
    explicit Count(std::atomic<std::uint32_t>& c) : n(c) { n.fetch_add(1); }
    ~Count() { n.fetch_sub(1); }
  } count(state.sessions);
  try {
    // A reload closes a removed listener's sockets before it swaps the
    // runtime, so the listener is there; if not, close rather than guess.
    const auto runtime = state.current();
    const auto index = runtime->listener(listener);
    if (!index) {
      state.log.event("session_error", {{"error", "listener no longer configured"},
                                        {"listener", listener},
                                        {"client", from_asio(peer).to_string()}});
      co_return;
    }
    Session session(std::move(socket), peer, *runtime, *index, state, registry);
    struct Registered {
      SessionRegistry& registry;
      SessionRegistry::Handle handle;
      ~Registered() { registry.remove(handle); }
    } registered{registry, registry.add(session, co_await asio::this_coro::executor)};
    co_await session.run();
  } catch (const std::exception& e) {
    state.log.event("session_error", {{"error", e.what()}});
  }
}

}  // namespace geomx::proxy
