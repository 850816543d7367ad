#pragma once
// Listening sockets and the one accept loop, for the data path's listeners
// (one SO_REUSEPORT socket per I/O thread) and the admin endpoint alike.
#include <chrono>
#include <exception>
#include <memory>
#include <string>

#include <boost/asio/steady_timer.hpp>

#include "proxy/io.hpp"
#include "proxy/log.hpp"

namespace geomx::proxy {

struct ServerState;
class SessionRegistry;

// Opens, binds and listens with SO_REUSEADDR. A data path listener's port
// is shared by the I/O threads' sockets (SO_REUSEPORT), and its IPv6
// address is IPv6 only (IPV6_V6ONLY: "0.0.0.0" is a listener of its own).
// Throws boost::system::system_error.
struct AcceptorOptions {
  bool reuse_port = false;
  bool v6_only = false;
};
template <class A>
void open_acceptor(A& a, const tcp::endpoint& endpoint, AcceptorOptions options);

// SO_REUSEPORT would let a second geomx bind the same port and silently take
// half its connections: bind once without it to find out (throws
// address_in_use when someone listens there).
void check_port_free(const tcp::endpoint& endpoint, asio::io_context& io);

// Accepts until the acceptor is closed, handing each connection to
// `on_accept(socket, peer)` (`peer` as accept(2) gave it: no getpeername).
// A failed accept (out of descriptors and the like) is logged when there is
// a `log` and paused on, not spun on; an exception closes the acceptor: a
// listening socket nobody accepts on would strand its share of SO_REUSEPORT
// connections, and the other threads carry on.
template <class A, class OnAccept>
asio::awaitable<void> accept_loop(A& acceptor, const Log* log, OnAccept on_accept) {
  try {
    for (;;) {
      typename A::endpoint_type peer;
      auto [ec, socket] = co_await acceptor.async_accept(peer, nothrow);
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
      if (ec) {
        if (log) log->event("accept_error", {{"error", ec.message()}});
        asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
        co_await pause.async_wait(nothrow);
        continue;
      }
      on_accept(std::move(socket), peer);
    }
  } catch (const std::exception& e) {
    if (log) log->event("accept_error", {{"error", e.what()}, {"action", "acceptor closed"}});
    boost::system::error_code ignored;
    acceptor.close(ignored);
  }
}

// One I/O thread's socket of one listener: its accept loop and its worker
// hold it.
struct ListeningSocket {
  ListeningSocket(asio::io_context& io, std::string k) : key(std::move(k)), acceptor(io) {}
  const std::string key;  // listener_key()
  Acceptor acceptor;
};

// The data path's accept loop: a session coroutine per connection.
asio::awaitable<void> serve_listener(std::shared_ptr<ListeningSocket> listening, ServerState& state,
                                     SessionRegistry& registry);

}  // namespace geomx::proxy
