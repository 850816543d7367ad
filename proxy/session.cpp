// Admission (max_connections, the PROXY header, blocks,
// max_connections_per_ip, [[limit]]s), the decision, and the refusals.
#include "proxy/session.hpp"

#include <array>

#include <fmt/format.h>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include "policy/decide.hpp"
#include "proxy/answer_within.hpp"
#include "proxy/clock.hpp"
#include "proxy/endpoint.hpp"

namespace geomx::proxy {

using namespace asio::experimental::awaitable_operators;

Session::Session(Socket client, const tcp::endpoint& peer, const Runtime& runtime,
                 std::size_t listener, ServerState& state, SessionRegistry& registry)
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

void Session::finish(EndReason end) {
  rec_.end = shutdown_ ? EndReason::shutdown : end;
  rec_.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_);
  if (dns_) dns_->describe(rec_);
  close_both();
  state_.session_ended(rec_);
}

asio::awaitable<state::Fleet::LimitAnswers> Session::ask_fleet(state::Fleet::LimitQuestion q,
                                                               std::shared_ptr<void>& fleet_hold) {
  co_return co_await answer_within<state::Fleet::LimitAnswers>(
      client_.get_executor(), snap_->config.store.timeout,
      [&](auto reply) { fleet_hold = state_.fleet->ask(std::move(q), std::move(reply)); });
}

// The [[limit]]s whose scope the client is in, in config order; the first
// one it exceeds decides: 421 now, a tarpit, or a dated block (ban).
asio::awaitable<bool> Session::within_limits(const std::vector<std::size_t>& limits) {
  const auto now = Clock::now();
  for (const auto i : limits) {
    const conf::Limit& limit = snap_->config.limits[i];
    std::optional<policy::LimitTable::Hold> hold;
    auto verdict = runtime_.limit_tables[i]->enter(rec_.client.address, limit, now, hold);
    // Within this node's count: the fleet's may be over (this node sees a
    // part of the client's connections). Unanswered: this node's count decides.
    const bool fleet = state_.fleet && state_.fleet->up();
    const auto client = fleet ? limit.counted_as(rec_.client.address).to_string() : std::string();
    // The rate and the hold are asked at once: one round trip, not two.
    if (verdict == policy::LimitTable::Verdict::ok && fleet && (limit.rate > 0 || hold)) {
      state::Fleet::LimitQuestion q{limit.name, client};
      if (limit.rate > 0) {
        q.rate = limit.rate;
        q.burst = limit.burst;
        q.per_us = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(limit.per).count());
      }
      if (hold) q.concurrent = limit.concurrent;
      std::shared_ptr<void> fleet_hold;  // the fleet's count of this connection, if asked
      const auto [rate_ok, hold_ok] = co_await ask_fleet(std::move(q), fleet_hold);
      if (rate_ok && !*rate_ok)
        verdict = policy::LimitTable::Verdict::over_rate;
      else if (hold_ok && !*hold_ok)
        verdict = policy::LimitTable::Verdict::over_concurrent;
      if (verdict != policy::LimitTable::Verdict::ok)
        hold.reset();  // fleet_hold, granted or not, is given back as it goes out of scope
      else if (fleet_hold)
        hold->attach(std::move(fleet_hold));  // given back with this node's count
    }
    if (verdict == policy::LimitTable::Verdict::ok) {
      if (hold) holds_.push_back(std::move(*hold));
      continue;
    }
    rec_.action = conf::to_string(limit.action);
    rec_.error =
        fmt::format("limit {}: {}", limit.name,
                    verdict == policy::LimitTable::Verdict::over_rate
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
      policy::Block b{
          limit.counted_as(rec_.client.address), rec_.error, unix,
          unix + std::chrono::duration_cast<std::chrono::seconds>(limit.ban_for).count(),
          "limit:" + limit.name};
      // Queued: the block list's writer keeps it (an fsync must not stall this thread).
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

// `421` a byte a second for server.tarpit_duration: it costs the bot, not us.
// A tarpitted client holds a slot of tarpit_max instead of max_connections,
// so a tarpit full of bots does not refuse the next legitimate client.
asio::awaitable<void> Session::tarpit(std::string_view reply) {
  auto pit = state_.slots.enter_tarpit(snap_->config.server.tarpit_max);
  if (!pit) {
    rec_.error = "tarpit full (server.tarpit_max): replied at once";
    co_await reply_and_close(reply, EndReason::tarpitted);
    co_return;
  }
  slot_.emplace(std::move(*pit));
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

// max_connections: a slot, or a few beyond it told why (a flood is closed
// at once). Then the client itself: a block, or max_connections_per_ip.
asio::awaitable<bool> Session::admit() {
  const auto& server = snap_->config.server;
  if (auto slot = state_.slots.enter(server.max_connections)) {
    slot_.emplace(std::move(*slot));
  } else {
    auto spare = state_.slots.enter_spare(std::max<std::uint32_t>(16, server.max_connections / 4));
    if (!spare) {
      rec_.error = "closed without a reply: too many connections waiting for one";
      finish(EndReason::too_busy);
      co_return false;
    }
    co_await reply_and_close(fmt::format("421 4.3.2 {} too busy, try again later", hostname()),
                             EndReason::too_busy);
    co_return false;
  }
  if (listener_.proxy_protocol != conf::ProxyProtocol::none && !co_await read_proxy_header())
    co_return false;
  if (listener_.mode == conf::ListenerMode::transparent && !co_await read_original_destination())
    co_return false;
  if (const auto block = state_.blocks.find(rec_.client.address, unix_now())) {
    rec_.error = fmt::format("blocked by {} ({}{}{})", block->cidr.to_string(), block->origin,
                             block->comment.empty() ? "" : ": ", block->comment);
    co_await reply_and_close(fmt::format("554 5.7.1 {} access denied", hostname()),
                             EndReason::blocked);
    co_return false;
  }
  const auto& client = rec_.client.address;
  const auto counted = geo::Prefix::containing(
      client, client.is_v4() ? server.per_ip_prefix_v4 : server.per_ip_prefix_v6);
  if (auto slot = state_.slots.enter_ip(counted.network(), server.max_connections_per_ip)) {
    ip_slot_.emplace(std::move(*slot));
    co_return true;
  }
  co_await reply_and_close(
      fmt::format("421 4.7.0 {} too many connections from your address", hostname()),
      EndReason::too_many_from_ip);
  co_return false;
}

asio::awaitable<policy::Decision> Session::decide() {
  // The questions go out now, whatever the rules: a greet delay hides
  // their latency, and the log line has their answers.
  if (snap_->lookups) {
    dns_ = std::make_shared<DnsCheck>(client_.get_executor(), snap_, state_, rec_.client.address);
    dns_->start(snap_->lookups);
  }
  const auto sequence = state_.sequence.fetch_add(1, std::memory_order_relaxed);
  const policy::Client client{rec_.client.address, listener_index_};
  auto timed = [&](const policy::Reputation* reputation) {
    const auto begin = Clock::now();
    auto d = policy::decide(client, *snap_, *view_, sequence, reputation);
    state_.metrics.decision(Clock::now() - begin);
    return d;
  };
  policy::Decision d = timed(nullptr);
  // A rule reached reads DNS answers (a rule before it never waits).
  while (d.waits) {
    co_await dns_->wait(d.waits, start_ + snap_->config.dns.timeout);
    d = timed(&dns_->reputation());
  }
  co_return d;
}

asio::awaitable<void> Session::run() {
  if (!co_await admit()) co_return;
  policy::Decision d = co_await decide();
  const conf::Rule& rule = snap_->config.rules[d.rule];
  rec_.country = d.country;
  rec_.asn = d.asn;
  if (d.asn) rec_.as_org = snap_->table.organisation(d.asn);
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
  if (pool.screen.mode == conf::ScreenMode::smtp && !co_await screen(pool, d.pool, d.order.front()))
    co_return;
  if (!co_await connect(std::move(d.order), d.pool, pool)) co_return;
  const bool replayed = screen_ || pool.proxy_protocol == conf::ProxyProtocol::xclient;
  if (replayed ? !co_await replay(pool) : !co_await send_first(pool)) co_return;
  if (shutdown_) {  // the drain closed it while the first bytes went out
    finish(EndReason::shutdown);
    co_return;
  }
  relay(pool);
}

asio::awaitable<void> run_session(Socket socket, tcp::endpoint peer, std::string listener,
                                  ServerState& state, SessionRegistry& registry) {
  SessionCount::Hold counted(state.sessions);  // so a drain never waits for a ghost
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
    SessionRegistry::Registration registered(registry, session, co_await asio::this_coro::executor);
    co_await session.run();
  } catch (const std::exception& e) {
    state.log.event("session_error", {{"error", e.what()}});
  }
}

}  // namespace geomx::proxy
