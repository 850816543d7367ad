#include "daemon/probe.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cctype>

#include <fmt/format.h>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include "proxy/endpoint.hpp"
#include "proxy/io.hpp"
#include "proxy/proxy_protocol.hpp"
#include "proxy/smtp_reply.hpp"

namespace geomx::daemon {
namespace {

namespace ssl = asio::ssl;
using namespace asio::experimental::awaitable_operators;
using policy::ProbeResult;
using policy::ProbeStatus;
using proxy::nothrow;
using proxy::tcp;
constexpr std::size_t max_reply = 16 * 1024;  // a banner or EHLO reply longer than this is broken

// This host's fault, not the member's: out of descriptors, buffers or
// local ports (a flood of clients must not make a member look DOWN).
bool local_error(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors ||
         ec == boost::system::errc::too_many_files_open_in_system ||
         ec == asio::error::no_buffer_space || ec == boost::system::errc::address_not_available;
}

struct ProbeError : std::runtime_error {
  ProbeError(ProbeStatus s, const std::string& what) : std::runtime_error(what), status(s) {}
  ProbeStatus status;
};

// One SMTP reply, all its lines ("250-..." up to "250 ..."); throws on a
// malformed reply or a code other than `want` (first digit only if want < 10).
// `all`: every line of it, each with its CRLF.
template <class Stream>
asio::awaitable<std::string> expect(Stream& s, std::string& buf, int want, std::string_view step,
                                    std::string* all = nullptr) {
  std::string reply;
  for (;;) {
    auto [ec, n] =
        co_await asio::async_read_until(s, asio::dynamic_buffer(buf, max_reply), "\r\n", nothrow);
    if (ec)
      throw ProbeError(
          ProbeStatus::bad_reply,
          fmt::format("{}: {}", step, ec == asio::error::eof ? "closed" : ec.message()));
    std::string line = buf.substr(0, n - 2);
    buf.erase(0, n);
    const auto kind = proxy::reply_line(line, reply);
    if (kind == proxy::ReplyLine::malformed)
      throw ProbeError(ProbeStatus::bad_reply,
                       fmt::format("{}: not an SMTP reply: \"{}\"", step, line.substr(0, 60)));
    if (kind == proxy::ReplyLine::code_changed)
      throw ProbeError(ProbeStatus::bad_reply,
                       fmt::format("{}: reply code changed inside a reply", step));
    reply = line;
    if (all) *all += line + "\r\n";
    if (kind == proxy::ReplyLine::last) break;
  }
  const int code = std::stoi(reply.substr(0, 3));
  if (want < 10 ? code / 100 != want : code != want)
    throw ProbeError(ProbeStatus::bad_reply, fmt::format("{}: \"{}\"", step, reply.substr(0, 80)));
  co_return reply;
}

template <class Stream>
asio::awaitable<void> say(Stream& s, const std::string& line, std::string_view step) {
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(line), nothrow);
  if (ec) throw ProbeError(ProbeStatus::send_failed, fmt::format("{}: {}", step, ec.message()));
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

void read_certificate(SSL* ssl, ProbeResult& r) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) throw ProbeError(ProbeStatus::tls_failed, "STARTTLS: no certificate");
  char subject[256];
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
  r.cert_subject = subject;
  int days = 0, seconds = 0;
  if (ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(cert)) == 1) r.cert_days = days;
  X509_free(cert);
}

asio::awaitable<ProbeResult> run_probe(const conf::Pool& pool, const conf::Member& member) {
  ProbeResult r;
  const auto& h = pool.health;
  tcp::socket s(co_await asio::this_coro::executor);
  auto [ec] = co_await s.async_connect(proxy::to_asio(member.address), nothrow);
  if (ec)
    throw ProbeError(local_error(ec) ? ProbeStatus::local_error : ProbeStatus::connect_failed,
                     "connect: " + ec.message());
  if (h.probe == conf::Probe::tcp) co_return r;
  // Postfix takes v1 or v2 alike; an XCLIENT member is probed as it is.
  if (pool.proxy_protocol == conf::ProxyProtocol::v1 ||
      pool.proxy_protocol == conf::ProxyProtocol::v2)
    co_await say(s, proxy::make_proxy_header(conf::ProxyProtocol::v2, nullptr, nullptr), "PROXY");
  std::string buf;
  co_await expect(s, buf, 2, "banner");
  co_await say(s, "EHLO " + h.ehlo + "\r\n", "EHLO");
  co_await expect(s, buf, 250, "EHLO", &r.ehlo);
  if (h.starttls) {
    co_await say(s, "STARTTLS\r\n", "STARTTLS");
    co_await expect(s, buf, 220, "STARTTLS");
    if (!buf.empty())
      throw ProbeError(ProbeStatus::tls_failed,
                       "STARTTLS: bytes after the 220 (response injection)");
    ssl::stream<tcp::socket&> tls(s, tls_context());
    SSL_set_tlsext_host_name(tls.native_handle(), h.ehlo.c_str());
    auto [hec] = co_await tls.async_handshake(ssl::stream_base::client, nothrow);
    if (hec) throw ProbeError(ProbeStatus::tls_failed, "TLS handshake: " + hec.message());
    read_certificate(tls.native_handle(), r);
    co_await say(tls, "QUIT\r\n", "QUIT");
    co_await expect(tls, buf, 221, "QUIT");
    co_return r;
  }
  co_await say(s, "QUIT\r\n", "QUIT");
  co_await expect(s, buf, 221, "QUIT");
  co_return r;
}

asio::awaitable<ProbeResult> guarded(const conf::Pool& pool, const conf::Member& member) {
  ProbeResult r;
  try {
    r = co_await run_probe(pool, member);
    r.status = ProbeStatus::ok;
  } catch (const ProbeError& e) {
    r.status = e.status;
    r.detail = e.what();
  } catch (const std::exception& e) {
    r.status = ProbeStatus::error;
    r.detail = e.what();
  }
  co_return r;
}

}  // namespace

asio::awaitable<ProbeResult> probe_member(const conf::Pool& pool, const conf::Member& member) {
  const auto start = std::chrono::steady_clock::now();
  asio::steady_timer deadline(co_await asio::this_coro::executor, pool.health.timeout);
  auto done = co_await (guarded(pool, member) || deadline.async_wait(nothrow));
  ProbeResult r;
  if (done.index() == 0) {
    r = std::move(std::get<0>(done));
  } else {
    r.status = ProbeStatus::timeout;
    r.detail = fmt::format("no answer within {}", conf::format_duration(pool.health.timeout));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  co_return r;
}

}  // namespace geomx::daemon
