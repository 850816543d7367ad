// The cache (key, value, TTL): this node's table, and the fleet's in a real
// redis-server started here (on a unix socket in a private directory),
// which is killed -9 and started again empty.
#include <doctest/doctest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "state/cache.hpp"
#include "support/temp_dir.hpp"

extern char** environ;

namespace geomx::state {

using namespace std::chrono_literals;

TEST_CASE("this node's cache: values live their TTL, the least recently used go first") {
  auto now = LocalCache::Clock::time_point{};
  LocalCache cache(3, [&] { return now; });
  cache.put("a", "1", 100ms);
  cache.put("b", std::string("two\0bytes\n", 10), 1s);
  CHECK(cache.get("a") == "1");
  CHECK(cache.get("b") == std::string("two\0bytes\n", 10));
  now += 100ms;
  CHECK(cache.get("a") == std::nullopt);  // its TTL is up (and it is gone)
  CHECK(cache.size() == 1);
  cache.put("a", "1 again", 1s);
  cache.put("c", "3", 1s);
  CHECK(cache.get("b"));    // b used: a is now the least recently used
  cache.put("d", "4", 1s);  // full: a goes
  CHECK(cache.get("a") == std::nullopt);
  CHECK(cache.get("b"));
  CHECK(cache.size() == 3);
  cache.put("b", "replaced", 1s);
  CHECK(cache.get("b") == "replaced");
  cache.erase("b");
  CHECK(cache.get("b") == std::nullopt);
  cache.put("zero", "x", 0ms);  // at least 1 ms
  CHECK(cache.get("zero") == "x");
  now += 1ms;
  CHECK(cache.get("zero") == std::nullopt);
}

namespace {

// redis-server without persistence on `socket`, killed -9 when destroyed.
class RedisServer {
 public:
  RedisServer(const std::filesystem::path& dir, std::string socket) : socket_(std::move(socket)) {
    const std::string log = (dir / "redis.log").string(), d = dir.string();
    std::vector<std::string> args{
        "redis-server", "--port", "0", "--unixsocket", socket_, "--save", "", "--appendonly",
        "no",           "--dir",  d,   "--logfile",    log};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::filesystem::remove(socket_);
    REQUIRE_MESSAGE(
        posix_spawnp(&pid_, "redis-server", nullptr, nullptr, argv.data(), environ) == 0,
        "redis-server (Debian's redis-server package) must be installed");
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (!std::filesystem::exists(socket_) && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(5ms);
    REQUIRE_MESSAGE(std::filesystem::exists(socket_), "redis-server did not start: see " << log);
  }
  ~RedisServer() { kill(); }
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = 0;
  }

 private:
  std::string socket_;
  pid_t pid_ = 0;
};

// Runs `io` until `done` holds; false after `limit`.
template <class F>
bool run_until(asio::io_context& io, F done, std::chrono::milliseconds limit = 5s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    io.restart();
    io.run_for(2ms);
  }
  return true;
}

// One node: its connection, its own copy and the fleet's cache.
struct Node {
  Node(asio::io_context& io, const std::string& socket)
      : redis(io,
              [&] {
                RedisOptions o;
                o.unix_path = socket;
                o.timeout = 500ms;
                return o;
              }()),
        cache(redis, "geomx:", local) {
    redis.on_state = [this](bool up, const std::string& why) {
      if (!up) last_problem = why;
    };
    redis.start();
  }
  // The value of `key` as the fleet's cache answers it.
  std::optional<std::string> get(asio::io_context& io, const std::string& key) {
    bool answered = false;
    std::optional<std::string> value;
    cache.get(key, [&](std::optional<std::string> v) {
      value = std::move(v);
      answered = true;
    });
    REQUIRE(run_until(io, [&] { return answered; }));
    return value;
  }
  RedisConnection redis;
  std::string last_problem;
  LocalCache local;
  FleetCache cache;
};

}  // namespace

TEST_CASE("the fleet's cache: shared through a real Redis, this node's copy through an outage") {
  test::TempDir dir;
  const auto socket = (dir.root() / "redis.sock").string();
  auto server = std::make_unique<RedisServer>(dir.root(), socket);
  asio::io_context io;
  Node a(io, socket), b(io, socket);
  const bool up = run_until(io, [&] { return a.redis.up() && b.redis.up(); });
  REQUIRE_MESSAGE(up, a.last_problem);

  // A value put on one node is there on the other, byte for byte.
  const std::string binary("v\0\r\n\xff", 5);
  a.cache.put("dns:1.0.0.127.zen", binary, 10s);
  a.cache.put("k", "v", 10s);
  REQUIRE(run_until(io, [&] { return a.cache.counts().puts == 2; }));
  CHECK(b.get(io, "dns:1.0.0.127.zen") == binary);
  CHECK(b.get(io, "k") == "v");
  CHECK(b.get(io, "never put") == std::nullopt);
  CHECK(b.cache.counts().hits == 2);

  // The gets of one turn share one MGET.
  const auto calls = b.cache.counts().calls;
  int answered = 0, found = 0;
  for (int i = 0; i < 100; ++i)
    b.cache.get(i % 2 ? "k" : "missing", [&](std::optional<std::string> v) {
      ++answered;
      found += v == "v";
    });
  REQUIRE(run_until(io, [&] { return answered == 100; }));
  CHECK(found == 50);
  CHECK(b.cache.counts().calls - calls == 1);

  // A TTL is kept by Redis: gone on the other node once it is up.
  a.cache.put("short", "x", 300ms);
  REQUIRE(run_until(io, [&] { return a.cache.counts().puts == 3; }));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(b.get(io, "short") == "x");
  REQUIRE(run_until(
      io, [&] { return !b.get(io, "short"); }, 3s));
  CHECK(std::chrono::steady_clock::now() - t0 >= 200ms);

  // An erase on one node is the fleet's.
  a.cache.erase("k");
  REQUIRE(run_until(
      io, [&] { return !b.get(io, "k"); }, 2s));

  // Redis killed -9: each node answers from its own copy, so a node's own
  // entries are still found; the other's are not.
  server->kill();
  REQUIRE(run_until(io, [&] { return !a.redis.up() && !b.redis.up(); }));
  CHECK(a.get(io, "dns:1.0.0.127.zen") == binary);
  CHECK(b.get(io, "dns:1.0.0.127.zen") == std::nullopt);
  CHECK(a.cache.counts().local >= 1);
  a.cache.put("during", "outage", 10s);  // kept on this node
  CHECK(a.get(io, "during") == "outage");

  // Started again empty: shared again from the next put.
  server = std::make_unique<RedisServer>(dir.root(), socket);
  REQUIRE(run_until(
      io, [&] { return a.redis.up() && b.redis.up(); }, 10s));
  CHECK(b.get(io, "dns:1.0.0.127.zen") == std::nullopt);  // a cache may miss
  a.cache.put("after", "restart", 10s);
  REQUIRE(run_until(
      io, [&] { return b.get(io, "after") == "restart"; }, 2s));
}

}  // namespace geomx::state
