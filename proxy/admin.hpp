#pragma once
// The admin HTTP endpoint ([admin] listen, default 127.0.0.1:9025), on the
// control thread:
//   GET /healthz  200 while the process serves
//   GET /readyz   200 when the geo table is loaded and every pool a rule
//                 routes to has an UP member; else 503 naming the empty pools
//   GET /metrics  Prometheus text exposition
//   GET /status   JSON: listeners, pools, members and their health, counters
// One request per connection, 8 KiB of headers at most, 10 s to send it.
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "proxy/metrics.hpp"
#include "proxy/server.hpp"

namespace geomx::proxy {

struct AdminReply {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// The answer to one request (no I/O: the endpoint's logic, tested directly).
AdminReply admin_answer(std::string_view method, std::string_view target, ServerState& state);

class AdminServer {
 public:
  AdminServer(asio::io_context& io, ServerState& state);
  // Binds [admin] listen; throws std::system_error naming it on failure.
  void bind(const conf::Endpoint& listen);
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  void start();
  void stop();

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(tcp::socket socket);
  asio::io_context& io_;
  ServerState& state_;
  tcp::acceptor acceptor_;
};

}  // namespace geomx::proxy
