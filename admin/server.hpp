#pragma once
// The admin endpoint's I/O, on the control thread: Beast reads one request
// per connection (8 KiB of headers at most, 10 s to send it), routes.hpp
// answers it; HTTPS when [admin] has tls_cert and tls_key; and the same
// over a unix socket ([admin] socket), whose file permissions stand in for
// the token.
#include <sys/types.h>

#include <functional>
#include <list>
#include <memory>
#include <string>

#include <boost/asio/local/stream_protocol.hpp>
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
  // Binds [admin] socket: mode 0660, given to `group` when it is not
  // (gid_t)-1; a socket left by a geomx that died is replaced, anything
  // else there (a file, a socket someone answers on) is not. Throws
  // std::system_error naming what failed.
  void bind_socket(const std::string& path, gid_t group);
  bool tls() const { return tls_ != nullptr; }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  void start();
  // Closes both; the socket file is removed.
  void stop();
  // What POST /reload runs (on the control thread).
  using Reloader = std::function<asio::awaitable<ReloadOutcome>()>;
  void set_reloader(Reloader r) { reload_ = std::move(r); }
  // The bearer token the protected paths need (admin/access.hpp); empty:
  // none could be loaded, and they are refused.
  void set_token(std::string token) { token_ = std::move(token); }

 private:
  using local = asio::local::stream_protocol;
  // An open connection, where stop() and a full endpoint find it.
  struct Connection {
    std::function<void()> close;
    geo::Address peer;    // the unspecified address: the unix socket
    bool local = false;   // over the unix socket: admitted by its file permissions
    bool reading = true;  // still reading its request (the one a newcomer may displace)
  };
  using Connections = std::list<Connection>;
  // Keeps a connection in the list while it is open.
  struct Open {
    template <class Socket>
    Open(Connections& list, Socket* s, geo::Address peer, bool local = false)
        : list(list),
          it(list.insert(list.end(), Connection{[s] {
                                                  boost::system::error_code ignored;
                                                  s->close(ignored);
                                                },
                                                peer, local})) {}
    ~Open() { list.erase(it); }
    Connections& list;
    Connections::iterator it;
  };
  // A slot for a connection from `peer`, or false (closed at once): at most
  // per_client from one address and max_connections in all; when they are
  // taken, the connection that has waited longest for its request is
  // closed for it, so idle connections cannot lock the operator out.
  bool admit(const geo::Address& peer);
  asio::awaitable<void> serve(tcp::socket socket, geo::Address peer);
  asio::awaitable<void> serve_local(local::socket socket);
  asio::awaitable<void> serve_tls(tcp::socket socket, geo::Address peer);  // server_tls.cpp
  // Reads one request (within 5 s) and writes its answer (within 10 s)
  // (exchange.hpp: instantiated once per stream type, in server.cpp and
  // server_tls.cpp).
  template <class Stream>
  asio::awaitable<void> exchange(Stream& stream, Connection& connection);
  // The answer to a request that was read (`ec`: or why it could not be).
  asio::awaitable<HttpResponse> respond(boost::system::error_code ec, const HttpRequest& req,
                                        bool local);
  // GET /top?fleet=1: the other nodes' reports, from the store.
  asio::awaitable<std::optional<std::vector<state::FleetTop::NodeReport>>> fleet_reports(
      const Request& request);
  asio::io_context& io_;
  proxy::ServerState& state_;
  tcp::acceptor acceptor_;
  local::acceptor local_acceptor_;
  std::string socket_path_;  // bound by bind_socket, removed by stop()
  std::unique_ptr<asio::ssl::context> tls_;
  std::string token_;
  static constexpr std::size_t max_connections = 32;  // at once
  static constexpr std::size_t per_client = 8;        // from one address at once
  Connections open_;                                  // closed by stop()
  Reloader reload_;
};

}  // namespace geomx::admin
