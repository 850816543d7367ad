#pragma once
// The listening side: one io_context per I/O thread, each with its own
// SO_REUSEPORT acceptor per listener, and one coroutine per connection.
// SIGTERM/SIGINT stop accepting and drain the sessions within
// server.drain_timeout, then close what is left.
#include <atomic>
#include <chrono>
#include <list>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "policy/snapshot.hpp"
#include "proxy/health.hpp"
#include "proxy/limits.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"

namespace geomx::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
// Sockets bound to their thread's io_context: half the size of ones with a
// type-erased executor, and so are their pending operations (idle memory).
using Socket = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;
using Acceptor = asio::basic_socket_acceptor<tcp, asio::io_context::executor_type>;

// Shared by every I/O thread.
struct ServerState {
  ServerState(std::shared_ptr<const policy::Snapshot> s, Log& l)
      : snapshot(s), log(l), health(l), view(std::make_shared<HealthView>(health, *s)) {}
  std::atomic<std::shared_ptr<const policy::Snapshot>> snapshot;
  Log& log;
  HealthBoard health;
  std::shared_ptr<const HealthView> view;  // the snapshot's members on the board
  Metrics metrics;
  ConnectionLimits limits;
  std::atomic<std::uint64_t> next_conn{1};
  std::atomic<std::uint64_t> sequence{0};
  std::atomic<std::uint32_t> sessions{0};  // live session coroutines

  // A connection is over: its log line and its counts.
  void session_ended(const SessionRecord& r) {
    metrics.session(r);
    log.session(r);
  }
};

// The sessions of one I/O thread (touched only from it): the end of a drain
// closes their sockets, and a sweep every 250 ms (while there are sessions)
// enforces idle_timeout/fin_timeout, so that a relaying session needs no
// timer of its own.
class SessionRegistry {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto sweep_interval = std::chrono::milliseconds(250);
  class Member {
   public:
    virtual void check_idle(Clock::time_point now) = 0;
    virtual void shut_down() = 0;

   protected:
    ~Member() = default;
  };
  using Handle = std::list<Member*>::iterator;
  Handle add(Member& m, const asio::any_io_executor& executor);
  void remove(Handle h) { members_.erase(h); }
  void close_all();

 private:
  asio::awaitable<void> sweep();
  std::list<Member*> members_;
  bool sweeping_ = false;
};

// `peer` as accept(2) gave it: no getpeername per connection.
asio::awaitable<void> run_session(Socket socket, tcp::endpoint peer, std::size_t listener,
                                  ServerState& state, SessionRegistry& registry);

class Server {
 public:
  Server(std::shared_ptr<const policy::Snapshot> snapshot, Log& log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listener on every I/O thread; throws std::system_error
  // naming the listener on failure.
  void bind();
  // The bound address of each listener (port 0 resolved), and the admin
  // endpoint's.
  const std::vector<tcp::endpoint>& endpoints() const { return endpoints_; }
  tcp::endpoint admin_endpoint() const;
  // Serves until SIGTERM/SIGINT or stop(), then drains; returns when done.
  void run();
  // Begins the drain; callable from any thread.
  void stop();

 private:
  struct Worker;
  asio::awaitable<void> control();
  asio::awaitable<void> health_loop(std::size_t pool, std::size_t member, asio::steady_timer& tick);
  asio::awaitable<void> hangups();
  asio::awaitable<void> watchdog(std::chrono::microseconds every);

  ServerState state_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<tcp::endpoint> endpoints_;
  asio::io_context control_io_{1};
  asio::signal_set signals_{control_io_, SIGINT, SIGTERM};
  asio::signal_set hangup_{control_io_, SIGHUP};  // caught: it must not kill the daemon
  asio::steady_timer watchdog_{control_io_};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> force_drain_{false};          // a second signal
  std::atomic<std::size_t> acceptors_closed_{0};  // workers done closing theirs
  struct Prober {                                 // one per probed member, on control_io_
    explicit Prober(asio::io_context& io) : tick(io) {}
    asio::steady_timer tick;
    asio::cancellation_signal stop;  // one signal per operation: a slot holds one handler
  };
  std::list<Prober> probers_;
  std::unique_ptr<class AdminServer> admin_;  // on control_io_
  bool probing_ = true;                       // until the drain begins
  bool stopping_ = false;                     // the drain has begun (control thread)
};

}  // namespace geomx::proxy
