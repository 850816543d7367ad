#pragma once
// The listening side: one io_context per I/O thread, each with its own
// SO_REUSEPORT acceptor per listener, and one coroutine per connection.
// SIGTERM/SIGINT stop accepting and drain the sessions within
// server.drain_timeout, then close what is left.
#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "policy/snapshot.hpp"
#include "proxy/blocks.hpp"
#include "proxy/health.hpp"
#include "proxy/limits.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/original_dst.hpp"
#include "proxy/ratelimit.hpp"
#include "proxy/top.hpp"

namespace geomx::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
// Sockets bound to their thread's io_context: half the size of ones with a
// type-erased executor, and so are their pending operations (idle memory).
using Socket = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;
using Acceptor = asio::basic_socket_acceptor<tcp, asio::io_context::executor_type>;

// What a connection is decided by, swapped whole by a reload: the snapshot,
// its members' health records, and a listener key per config.listeners entry.
// A session keeps the one it began with.
struct Runtime {
  Runtime(std::shared_ptr<const policy::Snapshot> s, HealthBoard& board, LimitTables& limits,
          std::uint64_t g);
  std::shared_ptr<const policy::Snapshot> snapshot;
  std::shared_ptr<const HealthView> view;
  std::vector<std::shared_ptr<LimitTable>> limit_tables;  // parallel to config.limits
  std::vector<std::string> listener_keys;                 // parallel to config.listeners
  std::uint64_t generation = 1;
  // The listener with this key (see listener_key), if the config has it.
  std::optional<std::size_t> listener(std::string_view key) const;
};

// What makes a listening socket the same across a reload: its address, and
// for port 0 (tests) its name too. A reload keeps sockets whose key stays.
std::string listener_key(const conf::Listener& l);

// Shared by every I/O thread.
struct ServerState {
  ServerState(std::shared_ptr<const policy::Snapshot> s, Log& l)
      : log(l),
        health(l),
        blocks(s->config.server.state_dir),
        top(10'000, s->config.server.refusal_log_sample, s->config.server.refusal_log_limit),
        runtime(std::make_shared<const Runtime>(std::move(s), health, limit_tables, 1)) {}
  Log& log;
  HealthBoard health;
  BlockList blocks;                // kept across reloads
  TopTalkers top;                  // and the refusal log's sampling
  std::function<void(Block)> ban;  // adds a [[limit]] ban, later, on the control thread
  LimitTables limit_tables;        // likewise, per [[limit]] name
  std::atomic<std::shared_ptr<const Runtime>> runtime;
  std::shared_ptr<const Runtime> current() const { return runtime.load(); }
  Metrics metrics;
  ConnectionLimits limits;
  OwnConnections own;  // local ends of action "pass" connections (loop guard)
  std::atomic<std::uint64_t> next_conn{1};
  std::atomic<std::uint64_t> sequence{0};
  std::atomic<std::uint32_t> sessions{0};  // live session coroutines

  // A connection is over: its counts, and its log line (a refusal's only
  // within the sample).
  void session_ended(const SessionRecord& r) {
    metrics.session(r);
    if (top.record(r.client.address, r.country, refused(r.end), TopTalkers::Clock::now()))
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

// `peer` as accept(2) gave it: no getpeername per connection. `listener` is
// the key of the socket it came in on.
asio::awaitable<void> run_session(Socket socket, tcp::endpoint peer, std::string listener,
                                  ServerState& state, SessionRegistry& registry);

// The outcome of one reload, for the log, the admin endpoint and `geomx reload`.
struct ReloadOutcome {
  bool ok = false;
  std::uint64_t generation = 0;       // the one serving afterwards
  std::vector<std::string> errors;    // FILE:LINE:COLUMN: key: message, when !ok
  std::vector<std::string> warnings;  // settings that need a restart, and the like
};

class FileWatch;
struct ListeningSocket;  // one I/O thread's socket of one listener

class Server {
 public:
  Server(std::shared_ptr<const policy::Snapshot> snapshot, Log& log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listener on every I/O thread; throws std::system_error
  // naming the listener on failure.
  void bind();
  // The bound address of each listener at start (port 0 resolved), and the
  // admin endpoint's.
  const std::vector<tcp::endpoint>& endpoints() const { return endpoints_; }
  tcp::endpoint admin_endpoint() const;
  // Serves until SIGTERM/SIGINT or stop(), then drains; returns when done.
  void run();
  // Begins the drain; callable from any thread.
  void stop();
  // The dated blocks from server.state_dir (after the privilege drop, as the
  // user that will write them); what went wrong, for the log.
  std::vector<std::string> load_blocks() { return state_.blocks.load(); }
  std::size_t blocks_in_force() const;
  const std::string& blocks_file() const { return state_.blocks.file(); }

 private:
  struct Worker;
  struct Prober {  // one per probed (pool, member), on control_io_
    explicit Prober(asio::io_context& io) : tick(io) {}
    asio::steady_timer tick;
    asio::cancellation_signal stop;  // one signal per operation: a slot holds one handler
    bool stopped = false;
  };
  using MemberKey = std::pair<std::string, std::string>;  // pool name, member address

  // Opens one socket per I/O thread for the listener; `bound` gets the
  // address (port 0 resolved). Throws std::system_error naming it.
  std::vector<std::shared_ptr<ListeningSocket>> open_listener(const conf::Listener& l,
                                                              tcp::endpoint& bound);
  asio::awaitable<void> control();
  // Reloads on the control thread, one at a time: the config file again
  // (SIGHUP, POST /reload), or only the data files of the running config
  // (geo.watch). Builds off the I/O threads; a failure changes nothing.
  asio::awaitable<ReloadOutcome> reload(std::string trigger, bool reread_config);
  // Listener sockets for the new runtime: opens the added ones, closes the
  // removed ones, then swaps the runtime; "" or why it could not.
  asio::awaitable<std::string> switch_to(std::shared_ptr<const Runtime> next);
  void update_probers(const Runtime& runtime);
  asio::awaitable<void> health_loop(MemberKey key, std::shared_ptr<Prober> prober);
  void update_watch(const policy::Snapshot& snapshot);
  void file_changed(const std::string& path);
  asio::awaitable<void> watch_settle();
  asio::awaitable<void> hangups();
  asio::awaitable<void> suppressed_lines();  // "suppressed K more from IP", every 10 s
  asio::awaitable<void> watchdog(std::chrono::microseconds every);

  ServerState state_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<tcp::endpoint> endpoints_;
  std::map<std::string, tcp::endpoint> bound_;  // by listener key: what is open now
  asio::io_context control_io_{1};
  asio::thread_pool loader_{1};  // builds reloaded snapshots
  asio::signal_set signals_{control_io_, SIGINT, SIGTERM};
  asio::signal_set hangup_{control_io_, SIGHUP};
  asio::steady_timer watchdog_{control_io_};
  asio::steady_timer suppressed_{control_io_};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> force_drain_{false};          // a second signal
  std::atomic<std::size_t> acceptors_closed_{0};  // workers done closing theirs
  std::map<MemberKey, std::shared_ptr<Prober>> probers_;
  std::unique_ptr<class AdminServer> admin_;  // on control_io_
  std::unique_ptr<FileWatch> watch_;          // geo.watch, on control_io_
  std::set<std::string> changed_files_;       // seen by the watch, not yet reloaded
  std::chrono::steady_clock::time_point settle_until_;
  asio::steady_timer settle_{control_io_};
  bool settling_ = false;                             // a watch_settle() is waiting
  bool reloading_ = false;                            // a reload() is under way
  std::uint64_t reread_asked_ = 0, reread_done_ = 0;  // config re-reads asked for, and covered
  ReloadOutcome last_reread_;                         // the outcome of the last one
  std::int64_t ban_warned_ = 0;                       // unix seconds: the last max_bans warning
  bool probing_ = true;                               // until the drain begins
  bool stopping_ = false;                             // the drain has begun (control thread)
};

}  // namespace geomx::proxy
