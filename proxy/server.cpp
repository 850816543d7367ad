#include "proxy/server.hpp"

#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <algorithm>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/admin.hpp"
#include "proxy/endpoint.hpp"
#include "proxy/watch.hpp"

namespace geomx::proxy {

// Its accept loop and its worker hold it.
struct ListeningSocket {
  ListeningSocket(asio::io_context& io, std::string k) : key(std::move(k)), acceptor(io) {}
  const std::string key;  // listener_key()
  Acceptor acceptor;
};

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

asio::awaitable<void> accept_loop(std::shared_ptr<ListeningSocket> listening, ServerState& state,
                                  SessionRegistry& registry) {
  Acceptor& acceptor = listening->acceptor;
  try {
    for (;;) {
      tcp::endpoint peer;
      auto [ec, socket] = co_await acceptor.async_accept(peer, nothrow);
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
      if (ec) {
        // Out of descriptors and the like: say so, and do not spin.
        state.log.event("accept_error", {{"error", ec.message()}});
        asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
        co_await pause.async_wait(nothrow);
        continue;
      }
      asio::co_spawn(acceptor.get_executor(),
                     run_session(std::move(socket), peer, listening->key, state, registry),
                     asio::detached);
    }
  } catch (const std::exception& e) {
    // A listening socket nobody accepts on would strand its share of the
    // SO_REUSEPORT connections: close it, the other threads carry on.
    state.log.event("accept_error", {{"error", e.what()}, {"action", "acceptor closed"}});
    boost::system::error_code ignored;
    acceptor.close(ignored);
  }
}

// SO_REUSEPORT would let a second geomx bind the same port and silently take
// half its connections: bind once without it to find out.
void check_port_free(const tcp::endpoint& endpoint, asio::io_context& io) {
  if (endpoint.port() == 0) return;
  tcp::acceptor probe(io);
  probe.open(endpoint.protocol());
  probe.set_option(tcp::acceptor::reuse_address(true));
  if (endpoint.address().is_v6()) probe.set_option(asio::ip::v6_only(true));
  probe.bind(endpoint);  // throws address_in_use when someone listens there
}

}  // namespace

SessionRegistry::Handle SessionRegistry::add(Member& m, const asio::any_io_executor& executor) {
  const auto handle = members_.insert(members_.end(), &m);  // before the sweep looks
  if (!sweeping_) {
    sweeping_ = true;
    asio::co_spawn(executor, sweep(), asio::detached);
  }
  return handle;
}

void SessionRegistry::close_all() {
  for (auto* m : members_) m->shut_down();
}

// Runs while there are sessions, so an idle worker has no timer pending (and
// its io_context runs out of work at the end of a drain).
asio::awaitable<void> SessionRegistry::sweep() {
  asio::steady_timer tick(co_await asio::this_coro::executor);
  while (!members_.empty()) {
    tick.expires_after(sweep_interval);
    co_await tick.async_wait(nothrow);
    const auto now = Clock::now();
    for (auto it = members_.begin(); it != members_.end();) (*it++)->check_idle(now);
  }
  sweeping_ = false;
}

struct Server::Worker {
  SessionRegistry sessions;  // outlives io: destroying io's handlers unregisters relays
  asio::io_context io{1};
  // Keeps io running while a reload swaps its listeners (for a moment it may
  // have none and no session); the drain lets it go.
  asio::executor_work_guard<asio::io_context::executor_type> busy{io.get_executor()};
  std::vector<std::shared_ptr<ListeningSocket>> listening;  // touched by its thread once running
  std::thread thread;
};

std::string listener_key(const conf::Listener& l) {
  const auto address = l.address.to_string();
  return l.address.port != 0 ? address : l.name + "@" + address;
}

Runtime::Runtime(std::shared_ptr<const policy::Snapshot> s, HealthBoard& board, LimitTables& limits,
                 std::uint64_t g)
    : snapshot(std::move(s)),
      view(std::make_shared<HealthView>(board, *snapshot)),
      limit_tables(limits.for_config(snapshot->config)),
      generation(g) {
  for (const auto& l : snapshot->config.listeners) listener_keys.push_back(listener_key(l));
}

std::optional<std::size_t> Runtime::listener(std::string_view key) const {
  for (std::size_t i = 0; i < listener_keys.size(); ++i)
    if (listener_keys[i] == key) return i;
  return std::nullopt;
}

Server::Server(std::shared_ptr<const policy::Snapshot> snapshot, Log& log)
    : state_(std::move(snapshot), log) {
  const auto& server = state_.current()->snapshot->config.server;
  const unsigned threads =
      server.threads != 0 ? server.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) workers_.push_back(std::make_unique<Worker>());
  state_.metrics.config_loaded(1);
  state_.ban = [this](Block b) {
    asio::post(control_io_, [this, b = std::move(b)] {
      // Sessions over the limit at once all post the ban (each passed the
      // block check before the first one landed): one block, one write. A
      // covering block that ends sooner (and is not this limit's) does not
      // stand in for it.
      const auto now = unix_now();
      if (const auto in_force = state_.blocks.covering(b.cidr, now);
          in_force && (in_force->origin == b.origin || !in_force->expires ||
                       (b.expires && *in_force->expires >= *b.expires)))
        return;
      // Each ban rewrites the state file: a flood of offenders must not make
      // it grow without end. Past the cap they get the 421 but no ban.
      const auto max_bans = state_.current()->snapshot->config.server.max_bans;
      if (state_.blocks.count("limit:", now) >= max_bans) {
        if (now >= ban_warned_ + 60) {
          ban_warned_ = now;
          state_.log.event("warning", {{"problem", "ban not added: server.max_bans in force"},
                                       {"max_bans", std::to_string(max_bans)},
                                       {"cidr", b.cidr.to_string()}});
        }
        return;
      }
      try {
        state_.blocks.add(b);
        state_.log.event("block", {{"action", "added"},
                                   {"cidr", b.cidr.to_string()},
                                   {"comment", b.comment},
                                   {"for", fmt::format("{}s", b.expires.value_or(0) - b.created)},
                                   {"origin", b.origin}});
      } catch (const std::exception& e) {
        state_.log.event("warning", {{"problem", "ban not kept"}, {"error", e.what()}});
      }
    });
  };
}

Server::~Server() {
  admin_.reset();
  watch_.reset();
  for (auto& w : workers_) {
    w->io.stop();
    if (w->thread.joinable()) w->thread.join();
  }
  loader_.join();
}

tcp::endpoint Server::admin_endpoint() const {
  return admin_->endpoint();
}

std::vector<std::shared_ptr<ListeningSocket>> Server::open_listener(const conf::Listener& listener,
                                                                    tcp::endpoint& bound) {
  std::vector<std::shared_ptr<ListeningSocket>> sockets;
  tcp::endpoint endpoint = to_asio(listener.address);
  for (auto& w : workers_) {
    auto socket = std::make_shared<ListeningSocket>(w->io, listener_key(listener));
    auto& a = socket->acceptor;
    try {
      if (&w == &workers_.front()) check_port_free(endpoint, w->io);
      a.open(endpoint.protocol());
      a.set_option(tcp::acceptor::reuse_address(true));
      a.set_option(reuse_port(true));
      if (endpoint.address().is_v6()) a.set_option(asio::ip::v6_only(true));
      a.bind(endpoint);
      a.listen(asio::socket_base::max_listen_connections);
    } catch (const boost::system::system_error& e) {
      throw std::system_error(
          e.code(), fmt::format("listener {} on {}", listener.name, listener.address.to_string()));
    }
    // Port 0: every thread binds the port the first one was given.
    endpoint = a.local_endpoint();
    sockets.push_back(std::move(socket));
  }
  bound = endpoint;
  return sockets;
}

void Server::bind() {
  const auto snap = state_.current()->snapshot;
  admin_ = std::make_unique<AdminServer>(control_io_, state_);
  admin_->bind(snap->config.admin.listen, snap->config.admin.tls_cert, snap->config.admin.tls_key);
  for (const auto& listener : snap->config.listeners) {
    tcp::endpoint bound;
    auto sockets = open_listener(listener, bound);
    for (std::size_t i = 0; i < workers_.size(); ++i)
      workers_[i]->listening.push_back(std::move(sockets[i]));
    endpoints_.push_back(bound);
    bound_[listener_key(listener)] = bound;
  }
}

void Server::run() {
  for (auto& w : workers_) {
    for (auto& l : w->listening)
      asio::co_spawn(w->io, accept_loop(l, state_, w->sessions), asio::detached);
    w->thread = std::thread([this, &io = w->io] {
      // A handler that throws (out of memory) must not take the process down.
      for (;;) {
        try {
          io.run();
          return;
        } catch (const std::exception& e) {
          state_.log.event("worker_error", {{"error", e.what()}});
        }
      }
    });
  }
  const auto runtime = state_.current();
  update_probers(*runtime);  // health probes run on the control thread
  update_watch(*runtime->snapshot);
  admin_->set_reloader([this] { return reload("admin", true); });
  admin_->start();
  asio::co_spawn(control_io_, hangups(), asio::detached);
  asio::co_spawn(control_io_, suppressed_lines(), asio::detached);
  // systemd: Type=notify and WatchdogSec= (nothing happens without systemd).
  std::uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0)
    asio::co_spawn(control_io_, watchdog(std::chrono::microseconds(watchdog_usec / 2)),
                   asio::detached);
  sd_notify(0, "READY=1\nSTATUS=serving");
  asio::co_spawn(control_io_, control(), asio::detached);
  control_io_.run();
  for (auto& w : workers_) w->thread.join();
}

std::size_t Server::blocks_in_force() const {
  return state_.blocks.count("", unix_now());
}

void Server::stop() {
  if (stop_requested_.exchange(true)) return;
  asio::post(control_io_, [this] { signals_.cancel(); });
}

// --- health probes: one loop per (pool, member) of the running config -------

void Server::update_probers(const Runtime& runtime) {
  std::set<MemberKey> wanted;
  for (const auto& pool : runtime.snapshot->config.pools)
    for (const auto& m : pool.members) wanted.insert({pool.name, m.address.to_string()});
  for (auto it = probers_.begin(); it != probers_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    it->second->stopped = true;  // removed from the config
    it->second->tick.cancel();
    it->second->stop.emit(asio::cancellation_type::terminal);
    it = probers_.erase(it);
  }
  for (const auto& key : wanted) {
    if (probers_.count(key)) continue;
    auto prober = std::make_shared<Prober>(control_io_);
    probers_.emplace(key, prober);
    // The completion handler holds the prober: its signal must outlive the loop.
    asio::co_spawn(
        control_io_, health_loop(key, prober),
        asio::bind_cancellation_slot(prober->stop.slot(), [prober](const std::exception_ptr&) {}));
  }
}

// Each round reads the running config: a reload may change the pool's
// health settings, and the member's record is the one its sessions use.
asio::awaitable<void> Server::health_loop(MemberKey key, std::shared_ptr<Prober> prober) {
  while (probing_ && !prober->stopped) {
    const auto runtime = state_.current();
    const auto& pools = runtime->snapshot->config.pools;
    const auto pool = std::find_if(pools.begin(), pools.end(),
                                   [&](const conf::Pool& p) { return p.name == key.first; });
    if (pool == pools.end()) co_return;
    const auto member =
        std::find_if(pool->members.begin(), pool->members.end(),
                     [&](const conf::Member& m) { return m.address.to_string() == key.second; });
    if (member == pool->members.end()) co_return;
    const auto record = runtime->view->at(static_cast<std::size_t>(pool - pools.begin()),
                                          static_cast<std::size_t>(member - pool->members.begin()));
    try {
      const auto result = co_await probe_member(*pool, *member);
      if (!probing_ || prober->stopped) break;
      state_.health.probed(*record, pool->health, result);
    } catch (const std::exception& e) {  // the member must not stay unprobed
      if (!probing_ || prober->stopped) break;
      state_.log.event("health_error", {{"pool", pool->name}, {"error", e.what()}});
    }
    prober->tick.expires_after(pool->health.interval);
    co_await prober->tick.async_wait(nothrow);
  }
}

// --- reload -----------------------------------------------------------------

namespace {

using SystemClock = std::chrono::system_clock;

// A data file modified between `since` and `until` (the load): a writer may
// still be at it, and what was read may be half old, half new. A time
// stamp in the future (a copy from a host with a fast clock) is not that.
std::optional<std::string> written_during(const conf::Config& config, SystemClock::time_point since,
                                          SystemClock::time_point until) {
  for (const auto& file : policy::data_files(config)) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) continue;  // the load reported it if it mattered
    const auto mtime = SystemClock::time_point(std::chrono::duration_cast<SystemClock::duration>(
        std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
    if (mtime >= since && mtime <= until) return file;
  }
  return std::nullopt;
}

// Builds the next snapshot: from the config file again, or from the running
// config (geo.watch: only the data changed). A data file written to while it
// was read is read again, a little later, up to a few times.
policy::Loaded build_next(const std::string& path, const std::optional<conf::Config>& running) {
  constexpr int attempts = 5;
  constexpr auto settle = std::chrono::milliseconds(300);
  for (int attempt = 1;; ++attempt) {
    // Timestamps are coarse (a clock tick): anything this recent may overlap.
    const auto since = SystemClock::now() - std::chrono::milliseconds(20);
    policy::Loaded loaded;
    if (running) {
      try {
        loaded.snapshot = policy::build_snapshot(*running);
      } catch (const conf::ConfigError& e) {
        loaded.errors = e.diagnostics();
      }
    } else {
      loaded = policy::load_snapshot(path);
    }
    if (!loaded.snapshot) return loaded;
    const auto busy = written_during(loaded.snapshot->config, since, SystemClock::now());
    if (!busy) return loaded;
    if (attempt == attempts) {
      loaded.errors.push_back({{*busy, 0, 0},
                               "geo",
                               fmt::format("still being written after {} attempts to read it; "
                                           "write a new file and rename it into place",
                                           attempts)});
      loaded.snapshot.reset();
      return loaded;
    }
    std::this_thread::sleep_for(settle);
  }
}

// A coroutine function, not a lambda: its arguments are copied into its
// frame, which then runs and ends on the loader thread.
asio::awaitable<policy::Loaded> build_on_loader(std::string path,
                                                std::optional<conf::Config> running) {
  co_return build_next(path, running);
}

// Settings a running process cannot change: they stay as they were.
std::vector<std::string> needs_restart(const conf::Config& was, const conf::Config& now) {
  std::vector<std::string> out;
  auto check = [&](bool same, std::string_view what) {
    if (!same) out.push_back(fmt::format("{} changed: takes effect at the next restart", what));
  };
  check(was.server.threads == now.server.threads, "server.threads");
  check(was.server.user == now.server.user && was.server.group == now.server.group &&
            was.server.allow_root == now.server.allow_root,
        "server.user/group/allow_root");
  check(was.server.log_format == now.server.log_format, "server.log_format");
  check(was.server.state_dir == now.server.state_dir, "server.state_dir");
  check(was.server.refusal_log_sample == now.server.refusal_log_sample &&
            was.server.refusal_log_limit == now.server.refusal_log_limit,
        "server.refusal_log_sample/limit");
  check(was.admin.listen.to_string() == now.admin.listen.to_string() &&
            was.admin.tls_cert == now.admin.tls_cert && was.admin.tls_key == now.admin.tls_key,
        "admin");
  return out;
}

std::string describe_bind_error(const std::system_error& e) {
  std::string out = e.what();
  if (e.code() == std::errc::address_in_use)
    out +=
        " (if a listener this reload removes holds it, remove that one first and add this one in "
        "the next reload, or restart)";
  if (e.code() == std::errc::permission_denied)
    out +=
        " (geomx gave up the right to bind ports below 1024 after start: restart it to add this "
        "listener)";
  return out;
}

}  // namespace

asio::awaitable<ReloadOutcome> Server::reload(std::string trigger, bool reread_config) {
  // One at a time. Requests to re-read the config that wait for the same
  // reload share its outcome: it read the files after they asked.
  const auto ticket = reread_config ? ++reread_asked_ : 0;
  asio::steady_timer wait(control_io_);
  while (reloading_ && !stopping_) {
    wait.expires_after(std::chrono::milliseconds(20));
    co_await wait.async_wait(nothrow);
  }
  if (reread_config && reread_done_ >= ticket && !stopping_) co_return last_reread_;
  const auto covers = reread_asked_;
  ReloadOutcome out;
  const auto old = state_.current();
  out.generation = old->generation;
  if (stopping_) {
    out.errors.push_back("geomx is stopping");
    co_return out;
  }
  reloading_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{reloading_};
  sd_notify(0, "RELOADING=1\nSTATUS=reloading");
  const auto started = std::chrono::steady_clock::now();
  policy::Loaded loaded;
  try {
    std::optional<conf::Config> running;
    if (!reread_config) running = old->snapshot->config;
    loaded = co_await asio::co_spawn(
        loader_, build_on_loader(old->snapshot->config.path, std::move(running)),
        asio::use_awaitable);
  } catch (const std::exception& e) {
    loaded.errors.push_back({{old->snapshot->config.path, 0, 0}, "reload", e.what()});
  }
  for (const auto& d : loaded.errors) out.errors.push_back(d.to_string());
  if (loaded.snapshot && !stopping_) {
    auto next = std::make_shared<const Runtime>(loaded.snapshot, state_.health, state_.limit_tables,
                                                old->generation + 1);
    out.warnings = needs_restart(old->snapshot->config, loaded.snapshot->config);
    if (auto problem = co_await switch_to(next); !problem.empty()) {
      out.errors.push_back(std::move(problem));
    } else {
      out.ok = true;
      out.generation = next->generation;
    }
  } else if (stopping_ && out.errors.empty()) {
    out.errors.push_back("geomx is stopping");
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  state_.metrics.reloaded(out.ok);
  for (const auto& e : out.errors) state_.log.event("reload_error", {{"error", e}});
  for (const auto& w : out.warnings) state_.log.event("warning", {{"problem", w}});
  const auto now = state_.current();
  if (out.ok && !stopping_) {
    state_.metrics.config_loaded(out.generation);
    update_probers(*now);
    update_watch(*now->snapshot);
    const auto& snap = *now->snapshot;
    state_.log.event(
        "reload", {{"trigger", trigger},
                   {"result", "success"},
                   {"generation", std::to_string(out.generation)},
                   {"took", fmt::format("{}ms", took.count())},
                   {"rules", std::to_string(snap.config.rules.size())},
                   {"pools", std::to_string(snap.config.pools.size())},
                   {"ipv4_intervals", std::to_string(snap.table.interval_count(geo::Family::v4))},
                   {"ipv6_intervals", std::to_string(snap.table.interval_count(geo::Family::v6))}});
  } else {
    state_.log.event("reload", {{"trigger", trigger},
                                {"result", "failure"},
                                {"errors", std::to_string(out.errors.size())},
                                {"generation", std::to_string(out.generation)},
                                {"action", "the running config stays"}});
  }
  if (!stopping_) sd_notify(0, "READY=1\nSTATUS=serving");
  if (reread_config) {
    reread_done_ = covers;
    last_reread_ = out;
  }
  co_return out;
}

asio::awaitable<std::string> Server::switch_to(std::shared_ptr<const Runtime> next) {
  const auto& listeners = next->snapshot->config.listeners;
  // Open what is new first: if that fails, nothing has changed.
  std::vector<std::pair<std::size_t, std::vector<std::shared_ptr<ListeningSocket>>>> added;
  std::map<std::string, tcp::endpoint> bound;
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    const auto& key = next->listener_keys[i];
    if (const auto it = bound_.find(key); it != bound_.end()) {
      bound[key] = it->second;
      continue;
    }
    try {
      tcp::endpoint at;
      added.emplace_back(i, open_listener(listeners[i], at));
      bound[key] = at;
    } catch (const std::system_error& e) {
      boost::system::error_code ignored;
      for (auto& [index, sockets] : added)
        for (auto& s : sockets) s->acceptor.close(ignored);
      co_return describe_bind_error(e);
    }
  }
  // Close what went away, on every thread, before the swap: a session is
  // only ever accepted on a listener its runtime has.
  std::set<std::string> removed;
  for (const auto& [key, at] : bound_)
    if (!bound.count(key)) removed.insert(key);
  if (!removed.empty()) {
    auto left = std::make_shared<std::atomic<std::size_t>>(workers_.size());
    for (auto& w : workers_)
      asio::post(w->io, [&w, removed, left] {
        boost::system::error_code ignored;
        std::erase_if(w->listening, [&](const auto& l) {
          if (!removed.count(l->key)) return false;
          l->acceptor.close(ignored);
          return true;
        });
        left->fetch_sub(1);
      });
    asio::steady_timer tick(control_io_);
    while (left->load() > 0) {
      tick.expires_after(std::chrono::milliseconds(2));
      co_await tick.async_wait(nothrow);
    }
    if (stopping_) {  // the drain began while we waited: it closes everything
      boost::system::error_code ignored;
      for (auto& [index, sockets] : added)
        for (auto& s : sockets) s->acceptor.close(ignored);
      co_return "geomx is stopping";
    }
    for (const auto& key : removed)
      state_.log.event("listener_closed",
                       {{"listener", key}, {"address", from_asio(bound_[key]).to_string()}});
  }
  state_.runtime.store(next);
  bound_ = std::move(bound);
  for (auto& [index, sockets] : added) {
    for (std::size_t i = 0; i < workers_.size(); ++i)
      asio::post(workers_[i]->io, [this, &w = *workers_[i], s = sockets[i]] {
        w.listening.push_back(s);
        asio::co_spawn(w.io, accept_loop(s, state_, w.sessions), asio::detached);
      });
    state_.log.listening(listeners[index], from_asio(bound_[next->listener_keys[index]]));
  }
  co_return std::string();
}

// --- geo.watch ----------------------------------------------------------------

void Server::update_watch(const policy::Snapshot& snapshot) {
  if (!snapshot.config.geo.watch) {
    if (watch_) watch_->watch({});
    return;
  }
  try {
    if (!watch_)
      watch_ = std::make_unique<FileWatch>(control_io_,
                                           [this](const std::string& p) { file_changed(p); });
    for (const auto& problem : watch_->watch(policy::data_files(snapshot.config)))
      state_.log.event("warning",
                       {{"problem", "geo.watch cannot watch a directory"}, {"error", problem}});
  } catch (const std::exception& e) {
    state_.log.event("warning", {{"problem", "geo.watch is off"}, {"error", e.what()}});
  }
}

// Renames come in bursts (geoipupdate replaces several files): wait until
// none came for `quiet`, then reload once.
void Server::file_changed(const std::string& path) {
  constexpr auto quiet = std::chrono::milliseconds(500);
  if (stopping_) return;
  state_.log.event("watch", {{"file", path}, {"action", "reload when quiet for 500ms"}});
  changed_files_.insert(path);
  settle_until_ = std::chrono::steady_clock::now() + quiet;
  if (!settling_) {
    settling_ = true;
    asio::co_spawn(control_io_, watch_settle(), asio::detached);
  }
}

asio::awaitable<void> Server::watch_settle() {
  while (std::chrono::steady_clock::now() < settle_until_ && !stopping_) {
    settle_.expires_at(settle_until_);
    co_await settle_.async_wait(nothrow);
  }
  settling_ = false;
  if (stopping_) co_return;
  std::string files;
  for (const auto& f : changed_files_) files += (files.empty() ? "" : " ") + f;
  changed_files_.clear();
  co_await reload("watch " + files, false);
}

// The refusal log's sampling: one line per client whose lines were
// suppressed in a minute that is over, and one for the overall cap.
asio::awaitable<void> Server::suppressed_lines() {
  while (!stopping_) {
    suppressed_.expires_after(std::chrono::seconds(10));
    co_await suppressed_.async_wait(nothrow);
    const auto now = TopTalkers::Clock::now();
    for (const auto& [client, count] : state_.top.take_suppressed(now))
      state_.log.event("suppressed", {{"client", client.to_string()},
                                      {"refused", std::to_string(count)},
                                      {"why", "more than server.refusal_log_sample in a minute"}});
    if (const auto all = state_.top.take_suppressed_all(now))
      state_.log.event("suppressed", {{"client", "all"},
                                      {"refused", std::to_string(all)},
                                      {"why", "more than server.refusal_log_limit in a minute"}});
  }
}

// --- signals and the drain ----------------------------------------------------

asio::awaitable<void> Server::hangups() {
  for (;;) {
    auto [ec, signal] = co_await hangup_.async_wait(nothrow);
    if (ec) co_return;
    co_await reload("sighup", true);
    if (stopping_) co_return;  // the drain began meanwhile: wait for no more
  }
}

// Tells systemd we are alive only if every I/O thread ran a posted handler
// since the last time: a stuck worker stops the pings and systemd restarts us.
asio::awaitable<void> Server::watchdog(std::chrono::microseconds every) {
  std::vector<std::shared_ptr<std::atomic<bool>>> answered;
  for (std::size_t i = 0; i < workers_.size(); ++i)
    answered.push_back(std::make_shared<std::atomic<bool>>(true));
  while (!stop_requested_ && !stopping_) {
    bool all = true;
    for (auto& a : answered) all &= a->exchange(false);
    if (all) sd_notify(0, "WATCHDOG=1");
    for (std::size_t i = 0; i < workers_.size(); ++i)
      asio::post(workers_[i]->io, [a = answered[i]] { a->store(true); });
    watchdog_.expires_after(every);
    co_await watchdog_.async_wait(nothrow);
  }
}

asio::awaitable<void> Server::control() {
  // A signal, or stop() cancelling the wait, starts the drain.
  int signal = 0;
  if (!stop_requested_) std::tie(std::ignore, signal) = co_await signals_.async_wait(nothrow);
  const auto drain = state_.current()->snapshot->config.server.drain_timeout;
  stopping_ = true;
  sd_notify(0, "STOPPING=1");
  hangup_.cancel();
  watchdog_.cancel();
  suppressed_.cancel();
  settle_.cancel();
  if (watch_) watch_->stop();
  probing_ = false;
  for (auto& [key, prober] : probers_) {
    prober->tick.cancel();
    prober->stop.emit(asio::cancellation_type::terminal);  // and any probe under way
  }
  state_.log.event("stop", {{"signal", signal ? std::to_string(signal) : "none"},
                            {"sessions", std::to_string(state_.sessions.load())},
                            {"drain_timeout", conf::format_duration(drain)}});
  // A second signal ends the drain at once.
  asio::co_spawn(
      control_io_,
      [this]() -> asio::awaitable<void> {
        auto [ec, second] = co_await signals_.async_wait(nothrow);
        if (!ec) force_drain_ = true;
      },
      asio::detached);
  // Close every acceptor, and know that it is closed before counting the
  // sessions: one accepted meanwhile is then counted too.
  for (auto& w : workers_)
    asio::post(w->io, [this, &w] {
      boost::system::error_code ignored;
      for (auto& l : w->listening) l->acceptor.close(ignored);
      w->busy.reset();
      acceptors_closed_.fetch_add(1);
    });
  asio::steady_timer tick(control_io_);
  const auto deadline = std::chrono::steady_clock::now() + drain;
  while ((acceptors_closed_.load() < workers_.size() || state_.sessions.load() > 0) &&
         !force_drain_ && std::chrono::steady_clock::now() < deadline) {
    tick.expires_after(std::chrono::milliseconds(20));
    co_await tick.async_wait(nothrow);
  }
  const auto left = state_.sessions.load();
  if (left > 0)
    for (auto& w : workers_) asio::post(w->io, [&w] { w->sessions.close_all(); });
  state_.log.event("stopped", {{"closed_at_deadline", std::to_string(left)}});
  admin_->stop();     // answers through the drain, then goes
  signals_.cancel();  // ends the second-signal wait, so control_io_ runs out of work
  // Each worker's io_context runs out of work once its sessions are gone.
}

}  // namespace geomx::proxy
