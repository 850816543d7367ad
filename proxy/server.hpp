#pragma once
// The listening side: one io_context per I/O thread, each with its own
// SO_REUSEPORT acceptor per listener, and one coroutine per connection.
// SIGTERM/SIGINT stop accepting and drain the sessions within
// server.drain_timeout, then close what is left.
#include <atomic>
#include <list>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>

#include "policy/snapshot.hpp"
#include "proxy/limits.hpp"
#include "proxy/log.hpp"

namespace geomx::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Shared by every I/O thread.
struct ServerState {
  ServerState(std::shared_ptr<const policy::Snapshot> s, Log& l) : snapshot(std::move(s)), log(l) {}
  std::atomic<std::shared_ptr<const policy::Snapshot>> snapshot;
  Log& log;
  ConnectionLimits limits;
  std::atomic<std::uint64_t> next_conn{1};
  std::atomic<std::uint64_t> sequence{0};
  std::atomic<std::uint32_t> sessions{0};  // live session coroutines
};

// The sessions of one I/O thread (touched only from it), so that the end of
// a drain can close their sockets.
class SessionRegistry {
 public:
  struct Entry {
    tcp::socket* client;
    tcp::socket* backend;
    bool* shutdown;
  };
  using Handle = std::list<Entry>::iterator;
  Handle add(Entry e) { return entries_.insert(entries_.end(), e); }
  void remove(Handle h) { entries_.erase(h); }
  void close_all();

 private:
  std::list<Entry> entries_;
};

asio::awaitable<void> run_session(tcp::socket socket, std::size_t listener, ServerState& state,
                                  SessionRegistry& registry);

class Server {
 public:
  Server(std::shared_ptr<const policy::Snapshot> snapshot, Log& log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listener on every I/O thread; throws std::system_error
  // naming the listener on failure.
  void bind();
  // The bound address of each listener (port 0 resolved).
  const std::vector<tcp::endpoint>& endpoints() const { return endpoints_; }
  // Serves until SIGTERM/SIGINT or stop(), then drains; returns when done.
  void run();
  // Begins the drain; callable from any thread.
  void stop();

 private:
  struct Worker;
  asio::awaitable<void> control();

  ServerState state_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<tcp::endpoint> endpoints_;
  asio::io_context control_io_{1};
  asio::signal_set signals_{control_io_, SIGINT, SIGTERM};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> force_drain_{false};          // a second signal
  std::atomic<std::size_t> acceptors_closed_{0};  // workers done closing theirs
};

}  // namespace geomx::proxy
