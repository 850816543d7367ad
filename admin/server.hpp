#pragma once
// The admin endpoint's I/O, on the control thread: Beast reads one request
// per connection (8 KiB of headers at most, 10 s to send it), routes.hpp
// answers it; HTTPS when [admin] has tls_cert and tls_key.
#include <functional>
#include <memory>
#include <set>
#include <string>

#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "admin/routes.hpp"
#include "admin/tls.hpp"
#include "proxy/io.hpp"

namespace geomx::admin {

using proxy::tcp;
using HttpRequest = boost::beast::http::request<boost::beast::http::empty_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

class AdminServer {
 public:
  AdminServer(asio::io_context& io, proxy::ServerState& state);
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
  asio::awaitable<void> serve(tcp::socket socket);
  asio::awaitable<void> serve_tls(tcp::socket socket);  // server_tls.cpp
  // Reads one request and writes its answer, each within 10 s (exchange.hpp:
  // instantiated once per stream type, in server.cpp and server_tls.cpp).
  template <class Stream>
  asio::awaitable<void> exchange(Stream& stream);
  // The answer to a request that was read (`ec`: or why it could not be).
  asio::awaitable<HttpResponse> respond(boost::system::error_code ec, const HttpRequest& req);
  // Keeps a connection's socket where stop() finds it, while it is open.
  struct Open {
    Open(std::set<tcp::socket*>& o, tcp::socket* s) : open(o), socket(s) { open.insert(s); }
    ~Open() { open.erase(socket); }
    std::set<tcp::socket*>& open;
    tcp::socket* socket;
  };
  asio::io_context& io_;
  proxy::ServerState& state_;
  tcp::acceptor acceptor_;
  std::unique_ptr<asio::ssl::context> tls_;
  static constexpr std::size_t max_connections = 32;  // at once; more are closed
  std::set<tcp::socket*> open_;                       // closed by stop()
  Reloader reload_;
};

}  // namespace geomx::admin
