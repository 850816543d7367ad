#include "proxy/health.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cctype>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "proxy/endpoint.hpp"
#include "proxy/proxy_protocol.hpp"

namespace geomx::proxy {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t max_reply = 16 * 1024;  // a banner or EHLO reply longer than this is broken

struct ProbeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One SMTP reply, all its lines ("250-..." up to "250 ..."); throws on a
// malformed reply or a code other than `want` (first digit only if want < 10).
template <class Stream>
asio::awaitable<std::string> expect(Stream& s, std::string& buf, int want, std::string_view step) {
  std::string reply;
  for (;;) {
    auto [ec, n] =
        co_await asio::async_read_until(s, asio::dynamic_buffer(buf, max_reply), "\r\n", nothrow);
    if (ec)
      throw ProbeError(
          fmt::format("{}: {}", step, ec == asio::error::eof ? "closed" : ec.message()));
    std::string line = buf.substr(0, n - 2);
    buf.erase(0, n);
    const bool codes =
        line.size() >= 3 && std::all_of(line.begin(), line.begin() + 3,
                                        [](unsigned char c) { return std::isdigit(c); });
    if (!codes || (line.size() > 3 && line[3] != ' ' && line[3] != '-'))
      throw ProbeError(fmt::format("{}: not an SMTP reply: \"{}\"", step, line.substr(0, 60)));
    if (!reply.empty() && line.compare(0, 3, reply, 0, 3) != 0)
      throw ProbeError(fmt::format("{}: reply code changed inside a reply", step));
    reply = line;
    if (line.size() == 3 || line[3] == ' ') break;
  }
  const int code = std::stoi(reply.substr(0, 3));
  if (want < 10 ? code / 100 != want : code != want)
    throw ProbeError(fmt::format("{}: \"{}\"", step, reply.substr(0, 80)));
  co_return reply;
}

template <class Stream>
asio::awaitable<void> say(Stream& s, const std::string& line, std::string_view step) {
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(line), nothrow);
  if (ec) throw ProbeError(fmt::format("{}: {}", step, ec.message()));
}

ssl::context& tls_context() {
  // Health checks read the certificate, they do not judge trust: backends'
  // certificates are often self-signed.
  static ssl::context ctx = [] {
    ssl::context c(ssl::context::tls_client);
    c.set_verify_mode(ssl::verify_none);
    return c;
  }();
  return ctx;
}

void read_certificate(SSL* ssl, HealthBoard::Result& r) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) throw ProbeError("STARTTLS: no certificate");
  char subject[256];
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
  r.cert_subject = subject;
  int days = 0, seconds = 0;
  if (ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(cert)) == 1) r.cert_days = days;
  X509_free(cert);
}

asio::awaitable<HealthBoard::Result> run_probe(const conf::Pool& pool, const conf::Member& member) {
  HealthBoard::Result r;
  const auto& h = pool.health;
  tcp::socket s(co_await asio::this_coro::executor);
  auto [ec] = co_await s.async_connect(to_asio(member.address), nothrow);
  if (ec) throw ProbeError("connect: " + ec.message());
  if (h.probe == conf::Probe::tcp) co_return r;
  if (pool.proxy_protocol != conf::ProxyProtocol::none)  // Postfix takes v1 or v2 alike
    co_await say(s, make_proxy_header(conf::ProxyProtocol::v2, nullptr, nullptr), "PROXY");
  std::string buf;
  co_await expect(s, buf, 2, "banner");
  co_await say(s, "EHLO " + h.ehlo + "\r\n", "EHLO");
  co_await expect(s, buf, 250, "EHLO");
  if (h.starttls) {
    co_await say(s, "STARTTLS\r\n", "STARTTLS");
    co_await expect(s, buf, 220, "STARTTLS");
    if (!buf.empty()) throw ProbeError("STARTTLS: bytes after the 220 (response injection)");
    ssl::stream<tcp::socket&> tls(s, tls_context());
    SSL_set_tlsext_host_name(tls.native_handle(), h.ehlo.c_str());
    auto [hec] = co_await tls.async_handshake(ssl::stream_base::client, nothrow);
    if (hec) throw ProbeError("TLS handshake: " + hec.message());
    read_certificate(tls.native_handle(), r);
    co_await say(tls, "QUIT\r\n", "QUIT");
    co_await expect(tls, buf, 221, "QUIT");
    co_return r;
  }
  co_await say(s, "QUIT\r\n", "QUIT");
  co_await expect(s, buf, 221, "QUIT");
  co_return r;
}

asio::awaitable<HealthBoard::Result> guarded(const conf::Pool& pool, const conf::Member& member) {
  try {
    auto r = co_await run_probe(pool, member);
    r.ok = true;
    co_return r;
  } catch (const std::exception& e) {
    HealthBoard::Result r;
    r.error = e.what();
    co_return r;
  }
}

}  // namespace

asio::awaitable<HealthBoard::Result> probe_member(const conf::Pool& pool,
                                                  const conf::Member& member) {
  const auto start = std::chrono::steady_clock::now();
  asio::steady_timer deadline(co_await asio::this_coro::executor, pool.health.timeout);
  auto done = co_await (guarded(pool, member) || deadline.async_wait(nothrow));
  HealthBoard::Result r;
  if (done.index() == 0)
    r = std::move(std::get<0>(done));
  else
    r.error = fmt::format("no answer within {}", conf::format_duration(pool.health.timeout));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  co_return r;
}

std::shared_ptr<MemberHealth> HealthBoard::member(const std::string& pool,
                                                  const conf::Endpoint& address) {
  std::lock_guard lock(mutex_);
  auto& slot = members_[{pool, address.to_string()}];
  if (auto m = slot.lock()) return m;
  // Not in any config since the last reload: forget what was (it starts UP).
  std::erase_if(members_, [](const auto& kv) { return kv.second.expired(); });
  auto m = std::make_shared<MemberHealth>(pool, address);
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

void HealthBoard::probed(MemberHealth& m, const conf::Health& h, const Result& r) {
  m.checks.fetch_add(1, std::memory_order_relaxed);
  if (!r.ok) m.check_failures.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(m.mutex);
    m.detail_.last_probe_seconds = r.seconds;
    m.detail_.last_error = r.error;
    if (r.cert_days) {
      m.detail_.cert_days = r.cert_days;
      m.detail_.cert_subject = r.cert_subject;
    }
  }
  record(m, h, r.ok, r.error, "probe");
}

void HealthBoard::connect_failed(MemberHealth& m, const conf::Health& h, const std::string& error) {
  m.connect_failures.fetch_add(1, std::memory_order_relaxed);
  record(m, h, false, error, "session");
}

void HealthBoard::record(MemberHealth& m, const conf::Health& h, bool ok, const std::string& why,
                         std::string_view source) {
  bool changed = false, up = false;
  {
    std::lock_guard lock(m.mutex);
    changed = m.detail_.state.record(ok, h.rise, h.fall);
    up = m.detail_.state.up();
    if (changed) {
      m.detail_.last_change = std::chrono::system_clock::now();
      m.up.store(up, std::memory_order_relaxed);
    }
  }
  if (!changed) return;
  const auto member = m.address.to_string();
  if (up)
    log_.event("health", {{"pool", m.pool},
                          {"member", member},
                          {"state", "up"},
                          {"after", fmt::format("{} successes", h.rise)},
                          {"source", std::string(source)}});
  else
    log_.event("health", {{"pool", m.pool},
                          {"member", member},
                          {"state", "down"},
                          {"after", fmt::format("{} failures", h.fall)},
                          {"source", std::string(source)},
                          {"error", why}});
}

HealthView::HealthView(HealthBoard& board, const policy::Snapshot& snapshot) {
  for (const auto& pool : snapshot.config.pools) {
    auto& row = members_.emplace_back();
    for (const auto& m : pool.members) row.push_back(board.member(pool.name, m.address));
  }
}

}  // namespace geomx::proxy
