// A screen = "smtp" pool's two halves around connect(): the screen itself
// (our 220, postscreen's deep protocol tests over the client's commands,
// policy/smtp_screen.hpp) and the replay that hands the live session to
// the member (PROXY header or XCLIENT, its 220, the client's own EHLO, its
// 250, then the client's pending command), after which the relay takes it.
#include <strings.h>

#include <algorithm>
#include <array>
#include <string>

#include <fmt/format.h>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "policy/smtp_screen.hpp"
#include "proxy/endpoint.hpp"
#include "proxy/proxy_protocol.hpp"
#include "proxy/session.hpp"
#include "proxy/smtp_reply.hpp"

namespace geomx::proxy {
namespace {

using namespace asio::experimental::awaitable_operators;
constexpr std::size_t max_reply =
    16 * 1024;  // a member's reply line or reply longer than this is broken

// An XCLIENT attribute value (RFC 3461 xtext, as Postfix decodes it).
std::string xtext(std::string_view v) {
  std::string out;
  for (const unsigned char c : v) {
    if (c < 33 || c > 126 || c == '+' || c == '=')
      out += fmt::format("+{:02X}", c);
    else
      out += static_cast<char>(c);
  }
  return out;
}

}  // namespace

asio::awaitable<bool> Session::tell(std::string_view text) {
  auto [ec, n] = co_await asio::async_write(client_, asio::buffer(text), nothrow);
  rec_.bytes_out += n;
  if (!ec) co_return true;
  if (screen_ && rec_.screen.empty()) note_screen(false);
  finish(shutdown_ ? EndReason::shutdown : EndReason::client_closed);
  co_return false;
}

void Session::note_screen(bool handed_off) {
  std::string failed;
  for (std::size_t i = 0; i < conf::screen_tests; ++i)
    if (screen_->failed()[i])
      failed += fmt::format("{}{}", failed.empty() ? "" : ",",
                            conf::to_string(static_cast<conf::ScreenTest>(i)));
  rec_.screen = !failed.empty() ? failed : handed_off ? "pass" : "unfinished";
  rec_.helo = screen_->helo_name();
}

asio::awaitable<bool> Session::screen(const conf::Pool& pool, std::size_t pool_index,
                                      std::size_t first) {
  const auto key = fmt::format("screen:{}:{}", pool.name, rec_.client.address.to_string());
  if (pool.screen.ttl.count() > 0 && co_await cached(key) == "pass") {
    rec_.screen = "cached";
    co_return true;  // straight to the byte relay
  }
  // The capabilities of the member the balancer chose first (the hand-off
  // may fail over to another: Postfix members of one pool match).
  screen_ = std::make_unique<policy::SmtpScreen>(pool.screen, hostname(),
                                                 view_->at(pool_index, first)->capabilities());
  if (!co_await tell(screen_->banner())) co_return false;
  // A pregreet the pool only logs is the client's first bytes.
  std::string in(pending_.begin(), pending_.end());
  std::vector<std::uint8_t>().swap(pending_);
  asio::steady_timer timer(client_.get_executor());
  std::array<char, 4096> buf;
  for (;;) {
    if (in.empty()) {
      timer.expires_after(pool.idle_timeout);
      auto r = co_await (client_.async_wait(tcp::socket::wait_read, nothrow) ||
                         timer.async_wait(nothrow));
      boost::system::error_code ec;
      const std::size_t n = r.index() == 1 || std::get<0>(std::get<0>(r))
                                ? 0
                                : client_.read_some(asio::buffer(buf), ec);
      if (n == 0) {
        note_screen(false);
        if (r.index() == 1)
          rec_.error = fmt::format("no command within idle_timeout {}",
                                   conf::format_duration(pool.idle_timeout));
        finish(shutdown_        ? EndReason::shutdown
               : r.index() == 1 ? EndReason::idle_timeout
                                : EndReason::client_closed);
        co_return false;
      }
      rec_.bytes_in += n;
      in.assign(buf.data(), n);
    }
    boost::system::error_code ec;
    const auto step = screen_->feed(in, client_.available(ec) > 0);
    in.clear();
    switch (step.next) {
      case policy::SmtpScreen::Next::read:
        if (!step.reply.empty() && !co_await tell(step.reply)) co_return false;
        continue;
      case policy::SmtpScreen::Next::handoff:
        note_screen(true);
        if (!step.reply.empty() && !co_await tell(step.reply)) co_return false;
        // A pass is kept only without failures: a test that only logs is
        // run again next time, as postscreen's "ignore".
        if (pool.screen.ttl.count() > 0 && screen_->failed().none())
          state_.cache.load()->put(key, "pass", pool.screen.ttl);
        co_return true;
      case policy::SmtpScreen::Next::close:
        note_screen(false);
        if (!step.reply.empty() && !co_await tell(step.reply)) co_return false;
        finish(step.failed ? EndReason::screened : EndReason::client_closed);
        co_return false;
      case policy::SmtpScreen::Next::drop:
        note_screen(false);
        finish(EndReason::screened);
        co_return false;
    }
  }
}

// One reply of the member's, all its lines; nullopt (and rec_.error) when
// it is malformed, not `want` (its first digit) or not there within `timeout`.
asio::awaitable<std::optional<std::string>> Session::member_reply(std::string& buf, char want,
                                                                  std::string_view step,
                                                                  conf::Duration timeout,
                                                                  std::string& refusal) {
  asio::steady_timer timer(client_.get_executor(), timeout);
  std::string reply;
  for (;;) {
    auto r = co_await (
        asio::async_read_until(backend_, asio::dynamic_buffer(buf, max_reply), "\r\n", nothrow) ||
        timer.async_wait(nothrow));
    if (r.index() == 1) {
      rec_.error =
          fmt::format("replay: {}: no answer within {}", step, conf::format_duration(timeout));
      co_return std::nullopt;
    }
    const auto [ec, n] = std::get<0>(r);
    if (ec) {
      rec_.error =
          fmt::format("replay: {}: {}", step, ec == asio::error::eof ? "closed" : ec.message());
      co_return std::nullopt;
    }
    const std::string line = buf.substr(0, n - 2);
    buf.erase(0, n);
    const auto kind = reply_line(line, reply);
    if (kind == ReplyLine::malformed || kind == ReplyLine::code_changed ||
        reply.size() + line.size() > max_reply) {
      rec_.error = fmt::format("replay: {}: \"{}\"", step, line.substr(0, 80));
      co_return std::nullopt;
    }
    reply += line + "\r\n";
    if (kind != ReplyLine::last) continue;
    if (line[0] == want) co_return reply;
    // Well-formed but not `want`: the member's policy for this client (a
    // client's own HELO, its address at anvil), not a broken member.
    rec_.error = fmt::format("replay: {}: the member refused: \"{}\"", step, line.substr(0, 80));
    refusal = std::move(reply);
    co_return std::nullopt;
  }
}

asio::awaitable<bool> Session::replay(const conf::Pool& pool) {
  auto fail = [&] {
    // The member failed the session: counted against it, as a connect.
    if (const auto change = state_.health.connect_failed(*member_.get(), pool.health, rec_.error,
                                                         policy::HealthBoard::Clock::now()))
      state_.log.health(*member_.get(), *change);
  };
  boost::system::error_code ec;
  const conf::Endpoint dest = dest_ ? *dest_ : from_asio(client_.local_endpoint(ec));
  std::string out;
  if (pool.proxy_protocol == conf::ProxyProtocol::v1 ||
      pool.proxy_protocol == conf::ProxyProtocol::v2)
    out = make_proxy_header(pool.proxy_protocol, &rec_.client, &dest);
  std::string buf, refusal;
  auto say = [&](std::string text) -> asio::awaitable<bool> {
    auto [wec, n] = co_await asio::async_write(backend_, asio::buffer(text), nothrow);
    if (!wec) co_return true;
    rec_.error = "replay: writing to the member failed: " + wec.message();
    co_return false;
  };
  // One step after another (no co_await inside && or ||: g++ 12 has bugs there).
  bool ok = true;
  if (!out.empty()) ok = co_await say(std::move(out));
  if (ok)
    ok = (co_await member_reply(buf, '2', "banner", pool.connect_timeout, refusal)).has_value();
  // Unscreened (a pass within screen_ttl): the client gets the member's
  // greeting to XCLIENT and says its own EHLO.
  const bool screened = screen_ != nullptr;
  std::optional<std::string> greeting;
  if (ok && pool.proxy_protocol == conf::ProxyProtocol::xclient) {
    const auto& a = rec_.client.address;
    const bool named = !rec_.ptr.empty() && rec_.ptr != "unknown";
    std::string x =
        fmt::format("XCLIENT ADDR={}{} PORT={} NAME={}", a.is_v4() ? "" : "IPV6:", a.to_string(),
                    rec_.client.port, named ? xtext(rec_.ptr) : "[UNAVAILABLE]");
    if (screened && !screen_->helo_name().empty()) x += " HELO=" + xtext(screen_->helo_name());
    if (screened) x += screen_->esmtp() ? " PROTO=ESMTP" : " PROTO=SMTP";
    ok = co_await say(x + "\r\n");
    if (ok) {
      greeting = co_await member_reply(buf, '2', "XCLIENT", pool.connect_timeout, refusal);
      ok = greeting.has_value();
    }
  }
  if (ok && screened && !screen_->helo_line().empty()) {
    ok = co_await say(screen_->helo_line());
    if (ok)
      ok = (co_await member_reply(buf, '2', screen_->esmtp() ? "EHLO" : "HELO",
                                  pool.connect_timeout, refusal))
               .has_value();
  }
  if (!ok && !refusal.empty()) {
    // Passed on as the answer to the client's command, then closed; the
    // member is not counted failed: the client could make it fail at will.
    if (co_await tell(refusal)) finish(EndReason::server_closed);
    co_return false;
  }
  if (!ok) {
    fail();
    co_await reply_and_close(
        fmt::format("421 4.3.2 {} service temporarily unavailable", hostname()),
        EndReason::connect_failed);
    co_return false;
  }
  if (!screened && !co_await tell(*greeting + buf)) co_return false;
  // The pending command (or a pregreet the pool only logs).
  std::string pending =
      screened ? screen_->pending() : std::string(pending_.begin(), pending_.end());
  // After STARTTLS nothing in plaintext may reach the member (the command
  // injection of CVE-2011-0411): only its line, whatever followed it.
  if (screened && pending.size() >= 8 && strncasecmp(pending.c_str(), "STARTTLS", 8) == 0)
    pending.resize(std::min(pending.size(), pending.find('\n') + 1));
  std::vector<std::uint8_t>().swap(pending_);
  screen_.reset();
  if (!pending.empty() && !co_await say(std::move(pending))) {
    finish(EndReason::server_closed);
    co_return false;
  }
  // Bytes the member sent after its EHLO reply belong to the client.
  if (screened && !buf.empty() && !co_await tell(buf)) co_return false;
  co_return true;
}

}  // namespace geomx::proxy
