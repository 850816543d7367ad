#pragma once
// One connection to Redis: hiredis's async context (it speaks the protocol)
// driven by an Asio io_context (its socket watched with async_wait), on that
// context's one thread. It connects, authenticates, selects the database,
// and comes back after any failure (100 ms, doubling to 1 s), telling
// on_state of each change, not of each retry. A command is answered within
// the connection's timeout or not at all (nullopt): a caller never waits
// on a slow Redis. A connection that does not answer a PING within the
// timeout is dropped and made again.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

struct redisAsyncContext;

namespace geomx::state {

namespace asio = boost::asio;

struct RedisOptions {
  std::string host;  // an IP address, or empty for unix_path
  std::uint16_t port = 6379;
  std::string unix_path;
  std::string user, password;  // AUTH: none, password, or user and password
  int db = 0;
  std::chrono::milliseconds timeout{1000};  // connect, each command, each PING
  std::chrono::milliseconds ping_every{1000};
  std::string address() const;  // 127.0.0.1:6379, [::1]:6379, unix:/path (for logs)
};

// A reply, copied out of hiredis (which frees its own after the callback).
struct RedisReply {
  enum class Type { nil, status, error, integer, string, array } type = Type::nil;
  std::string str;  // status, error, string
  long long integer = 0;
  std::vector<RedisReply> elements;  // array
  bool is_error() const { return type == Type::error; }
};

class RedisConnection {
 public:
  RedisConnection(asio::io_context& io, RedisOptions options);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Up, or down and why ("connection refused", "AUTH: WRONGPASS ..."): once
  // per change.
  std::function<void(bool up, const std::string& why)> on_state;
  // Redis Sentinel: asked where the master is before each connect (the
  // answer replaces host and port; nullopt: no sentinel knows, and it is
  // tried again as any failed connect is). Such a connection checks ROLE
  // at the handshake, and one that finds a replica there or is told
  // READONLY is dropped and asks again.
  using Where = std::optional<std::pair<std::string, std::uint16_t>>;
  std::function<void(std::function<void(Where)>)> locate;
  // A subscriber: these channels are subscribed at every connect, and the
  // connection is up once they are; each message goes to on_message.
  void subscribe(std::vector<std::string> channels,
                 std::function<void(const std::string& channel, std::string payload)> on_message);

  void start();
  void stop();                             // drops the connection; pending commands get nullopt
  void reconnect(const std::string& why);  // drops it (if there is one) and makes it again
  bool up() const { return up_; }
  const RedisOptions& options() const { return options_; }
  asio::io_context& io() { return io_; }

  // Sends argv; `done` gets the reply, or nullopt when the connection is
  // down or it did not come within the timeout. On the io_context's thread.
  using Done = std::function<void(std::optional<RedisReply>)>;
  void command(std::vector<std::string> argv, Done done);

 private:
  struct Pending {
    Done done;
    std::chrono::steady_clock::time_point deadline;
  };
  void connect();
  void connect_to();  // options_'s host and port, or its unix path
  void attach();      // hiredis's event hooks to Asio
  void handshake();
  void send(std::vector<std::string> argv, Done done);
  void lost(const std::string& why);  // the context is gone or going
  void drop(const std::string& why);  // ends a context that is there
  void set_state(bool up, const std::string& why);
  void schedule_reconnect();
  void heartbeat();
  void watch(bool write);
  void finish(std::uint64_t id, std::optional<RedisReply> reply);
  void arm_expiry();

  static void on_connect(const redisAsyncContext* ac, int status);
  static void on_disconnect(const redisAsyncContext* ac, int status);
  static void on_reply(redisAsyncContext* ac, void* reply, void* privdata);
  static void on_message(redisAsyncContext* ac, void* reply, void* privdata);

  asio::io_context& io_;
  RedisOptions options_;
  redisAsyncContext* ac_ = nullptr;
  std::uint64_t generation_ = 0;  // one per context: late handlers of an old one do nothing
  std::optional<asio::posix::stream_descriptor> socket_;
  bool reading_ = false, writing_ = false;           // what hiredis asked for
  bool read_armed_ = false, write_armed_ = false;    // a wait is pending
  bool up_ = false, told_ = false, stopped_ = true;  // told_: on_state has heard the state
  bool refused_ = false;  // AUTH, SELECT or ROLE said no (this connection)
  bool locating_ = false;
  std::uint64_t locate_round_ = 0;  // a late answer of a round before stop() does nothing
  std::string last_why_;
  std::chrono::milliseconds backoff_{100};
  asio::steady_timer retry_, connect_deadline_, ping_;
  std::map<std::uint64_t, Pending> pending_;  // by id: the oldest first
  asio::steady_timer expiry_;                 // the oldest pending command's deadline
  bool expiry_armed_ = false;
  std::uint64_t next_id_ = 1;
  std::vector<std::string> channels_;
  std::function<void(const std::string&, std::string)> message_;
};

}  // namespace geomx::state
