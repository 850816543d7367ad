// What the client's side says before the relay: the PROXY header from a
// trusted proxy, the original destination of a redirected connection, and
// the delayed greeting with its pregreet test.
#include <array>
#include <span>
#include <variant>

#include <fmt/format.h>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "proxy/answer_within.hpp"
#include "proxy/endpoint.hpp"
#include "proxy/original_dst.hpp"
#include "proxy/proxy_protocol.hpp"
#include "proxy/session.hpp"

namespace geomx::proxy {

using namespace asio::experimental::awaitable_operators;

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

asio::awaitable<std::optional<std::string>> Session::cached(const std::string& key) {
  co_return co_await answer_within<std::optional<std::string>>(
      client_.get_executor(), snap_->config.store.timeout,
      [&](auto reply) { state_.cache.load()->get(key, std::move(reply)); });
}

asio::awaitable<void> Session::refuse_pregreet(const conf::Pool& pool) {
  if (pool.pregreet == conf::Pregreet::drop) {
    finish(EndReason::pregreet);
    co_return;
  }
  co_await reply_and_close(fmt::format("554 5.5.1 {} protocol error", hostname()),
                           EndReason::pregreet);
}

asio::awaitable<bool> Session::greet_delay(const conf::Pool& pool) {
  // The greeting-pass cache: a pass skips the delay, a pregreet is refused at once.
  const auto key = fmt::format("greet:{}:{}", pool.name, rec_.client.address.to_string());
  if (pool.greet_ttl.count() > 0 || pool.pregreet_ttl.count() > 0) {
    const auto seen = co_await cached(key);
    if (seen == "pass" && pool.greet_ttl.count() > 0) {
      state_.metrics.greet_cache("pass");
      rec_.greet = "cached";
      co_return true;
    }
    if (seen == "pregreet" && pool.pregreet_ttl.count() > 0 &&
        pool.pregreet != conf::Pregreet::log) {
      state_.metrics.greet_cache("pregreet");
      rec_.pregreet = true;
      rec_.error = fmt::format("talked before the greeting within pregreet_ttl ({})",
                               conf::format_duration(pool.pregreet_ttl));
      co_await refuse_pregreet(pool);
      co_return false;
    }
  }
  const bool passed = co_await wait_greeting(pool);
  if (rec_.pregreet && pool.pregreet_ttl.count() > 0)
    state_.cache.load()->put(key, "pregreet", pool.pregreet_ttl);
  else if (passed && pool.greet_ttl.count() > 0)
    state_.cache.load()->put(key, "pass", pool.greet_ttl);
  co_return passed;
}

// The delayed greeting: an optional 220- teaser now, then greet_delay of
// silence from the client. Anything it sends before is a pregreet.
asio::awaitable<bool> Session::wait_greeting(const conf::Pool& pool) {
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
      if (pool.pregreet != conf::Pregreet::log) {
        co_await refuse_pregreet(pool);
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

}  // namespace geomx::proxy
