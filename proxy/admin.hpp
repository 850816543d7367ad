#pragma once
// The admin HTTP endpoint ([admin] listen, default 127.0.0.1:9025), on the
// control thread:
//   GET /healthz  200 while the process serves
//   GET /readyz   200 when the geo table is loaded and every pool a rule
//                 routes to has an UP member; else 503 naming the empty pools
//   GET /metrics  Prometheus text exposition
//   GET /status   JSON: listeners, pools, members and their health, counters
//   POST /reload  reloads the config (as SIGHUP does) and answers with the
//                 outcome: 200 {"result":"success",...} or 422 with the errors
//                 (?format=text: one line each, as `geomx reload` prints them)
//   GET /blocks   the dated blocks in force (JSON; ?format=text: lines)
//   POST /blocks?cidr=C[&comment=T][&for=30d]  adds one, on disk before the answer
//   DELETE /blocks?cidr=C                     deletes one
//   GET /top?window=1m|1h&n=20  top talkers: connections, share, refused, block
// One request per connection, 8 KiB of headers at most, 10 s to send it;
// HTTPS when [admin] has tls_cert and tls_key.
#include <functional>
#include <set>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "proxy/metrics.hpp"
#include "proxy/server.hpp"

namespace geomx::proxy {

struct AdminReply {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string allow = "GET, HEAD";  // for a 405
};

// The answer to one request (no I/O: the endpoint's logic, tested directly).
AdminReply admin_answer(std::string_view method, std::string_view target, ServerState& state);
// POST /reload's answer: JSON, or lines of text (?format=text, for `geomx reload`).
AdminReply reload_reply(const ReloadOutcome& outcome, bool text = false);

class AdminServer {
 public:
  AdminServer(asio::io_context& io, ServerState& state);
  ~AdminServer();
  // Binds [admin] listen (HTTPS with a certificate and key); throws
  // std::system_error naming what failed.
  void bind(const conf::Endpoint& listen, const std::string& cert = {},
            const std::string& key = {});
  bool tls() const { return tls_ != nullptr; }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  void start();
  void stop();
  // What POST /reload runs (on the control thread).
  using Reloader = std::function<asio::awaitable<ReloadOutcome>()>;
  void set_reloader(Reloader r) { reload_ = std::move(r); }

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(tcp::socket socket);
  template <class Stream>
  asio::awaitable<void> exchange(Stream& stream);
  asio::io_context& io_;
  ServerState& state_;
  tcp::acceptor acceptor_;
  std::unique_ptr<asio::ssl::context> tls_;
  static constexpr std::size_t max_connections = 32;  // at once; more are closed
  std::set<tcp::socket*> open_;                       // closed by stop()
  Reloader reload_;
};

}  // namespace geomx::proxy
