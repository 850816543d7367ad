#pragma once
// The process: one io_context per I/O thread, each with its own
// SO_REUSEPORT socket per listener, and a control thread for the admin
// endpoint, the health probes, signals, reloads and geo.watch. SIGTERM or
// SIGINT stops accepting and drains the sessions within
// server.drain_timeout, then closes what is left. The parts are in
// server.cpp (workers, bind, run, bans), drain.cpp (signals, drain,
// watchdog), reload.cpp (reload and the listener swap), probers.cpp,
// data_watch.cpp and fleet.cpp ([store]).
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "admin/routes.hpp"
#include "policy/snapshot.hpp"
#include "proxy/io.hpp"
#include "proxy/listener.hpp"
#include "proxy/log.hpp"
#include "proxy/server_state.hpp"

namespace geomx::admin {
class AdminServer;
}

namespace geomx::daemon {

using admin::ReloadOutcome;
using proxy::tcp;

class FileWatch;

class Server {
 public:
  Server(std::shared_ptr<const policy::Snapshot> snapshot, proxy::Log& log);
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
  std::vector<std::string> load_blocks();
  std::size_t blocks_in_force() const;
  const std::string& blocks_file() const { return state_.blocks.file(); }
  // After bind(): the token the admin endpoint's protected paths need.
  void set_admin_token(std::string token);
  // [store]: after load_blocks() (and the privilege drop: the password file
  // is read as the user that serves), makes this node part of the fleet;
  // it connects when run() starts. What to warn about (empty: all well).
  std::vector<std::string> join_fleet();
  // With a policy listener and no [store]: the greylist store in
  // server.state_dir (after the drop, as load_blocks), before join_fleet
  // (with [store] the triplets are the fleet's). What to warn about; throws
  // std::runtime_error when a file is there that cannot be read.
  std::vector<std::string> open_greylist();

 private:
  struct Worker;
  struct Prober {  // one per probed (pool, member), on control_io_
    explicit Prober(asio::io_context& io) : tick(io) {}
    asio::steady_timer tick;
    asio::cancellation_signal stop;  // one signal per operation: a slot holds one handler
    bool stopped = false;
  };
  using MemberKey = std::pair<std::string, std::string>;  // pool name, member address
  using Sockets = std::vector<std::shared_ptr<proxy::ListeningSocket>>;  // one per I/O thread

  // server.cpp
  // Opens one socket per I/O thread for the listener; `bound` gets the
  // address (port 0 resolved). Throws std::system_error naming it.
  Sockets open_listener(const conf::Listener& l, tcp::endpoint& bound);
  // Runs `fn` on every I/O thread and resumes when each has, or when `done`
  // expires or is cancelled (a stuck thread must not hold up a drain for
  // ever; a second signal ends it at once). `fn` may run after that, on a
  // late thread: it captures by value what it needs.
  asio::awaitable<void> on_every_worker(std::function<void(Worker&)> fn, asio::steady_timer& done);
  void add_ban(policy::Block b);  // from any thread: queued
  void ban_done(const policy::Block& b, const state::BlockList::BanOutcome& outcome,
                std::size_t max_bans);
  // drain.cpp
  asio::awaitable<void> control();
  asio::awaitable<void> drain(std::chrono::steady_clock::time_point deadline);
  asio::awaitable<void> hangups();
  asio::awaitable<void> suppressed_lines();  // "suppressed K more from IP", every 10 s
  asio::awaitable<void> watchdog(std::chrono::microseconds every);
  // reload.cpp
  // Reloads on the control thread, one at a time: the config file again
  // (SIGHUP, POST /reload), or only the data files of the running config
  // (geo.watch). Builds off the I/O threads; a failure changes nothing.
  asio::awaitable<ReloadOutcome> reload(std::string trigger, bool reread_config);
  asio::awaitable<void> one_reload_at_a_time();
  void log_reload(const ReloadOutcome& out, const std::string& trigger,
                  std::chrono::milliseconds took);
  // Listener sockets for the new runtime: opens the added ones, closes the
  // removed ones, then swaps the runtime; "" or why it could not.
  asio::awaitable<std::string> switch_to(std::shared_ptr<const proxy::Runtime> next);
  void start_accepting(const Sockets& sockets);
  // probers.cpp
  void update_probers(const proxy::Runtime& runtime);
  asio::awaitable<void> health_loop(MemberKey key, std::shared_ptr<Prober> prober);
  // data_watch.cpp
  void update_watch(const policy::Snapshot& snapshot);
  void file_changed(const std::string& path);
  asio::awaitable<void> watch_settle();

  proxy::ServerState state_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<tcp::endpoint> endpoints_;
  std::map<std::string, tcp::endpoint> bound_;  // by listener key: what is open now
  asio::io_context control_io_{1};
  // Builds reloaded snapshots. Started in run(), after the privileges are
  // dropped: capabilities are per thread, and one started before the drop
  // would keep them.
  std::optional<asio::thread_pool> loader_;
  asio::signal_set signals_{control_io_, SIGINT, SIGTERM};
  asio::signal_set hangup_{control_io_, SIGHUP};
  asio::steady_timer watchdog_{control_io_};
  asio::steady_timer suppressed_{control_io_};
  asio::steady_timer drained_{control_io_};  // cancelled when the drain may be over
  // Never expires: cancelled as a reload ends, which wakes those waiting their turn.
  asio::steady_timer reload_done_{control_io_, asio::steady_timer::time_point::max()};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> draining_{false};     // the drain waits for the sessions
  std::atomic<bool> force_drain_{false};  // a second signal
  std::map<MemberKey, std::shared_ptr<Prober>> probers_;
  std::unique_ptr<admin::AdminServer> admin_;  // on control_io_
  std::unique_ptr<FileWatch> watch_;           // geo.watch, on control_io_
  std::unique_ptr<state::Fleet> fleet_;        // [store], on control_io_
  bool serves_policy_ = false;                 // a policy listener at start: greylist triplets kept
  std::unique_ptr<state::LocalGreyStore> local_grey_;
  std::unique_ptr<state::CacheGreyStore> fleet_grey_;
  std::set<std::string> changed_files_;  // seen by the watch, not yet reloaded
  std::chrono::steady_clock::time_point settle_until_;
  asio::steady_timer settle_{control_io_};
  bool settling_ = false;                             // a watch_settle() is waiting
  bool reloading_ = false;                            // a reload() is under way
  std::uint64_t reread_asked_ = 0, reread_done_ = 0;  // config re-reads asked for, and covered
  ReloadOutcome last_reread_;                         // the outcome of the last one
  std::atomic<std::int64_t> ban_warned_{0};           // unix seconds: the last max_bans warning
  bool probing_ = true;                               // until the drain begins
  bool stopping_ = false;                             // the drain has begun (control thread)
};

}  // namespace geomx::daemon
