#pragma once
// The DNS resolver of the reputation checks: c-ares on the I/O thread's
// io_context, as an Asio service, so each I/O thread has a channel of its
// own and nothing is shared or locked. c-ares writes and reads the packets;
// its sockets are waited on with the loop's reactor, its timeouts with a
// timer. The same question asked again while one is in flight on this
// thread waits for that answer (one query, many sessions).
#include <ares.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "conf/config.hpp"
#include "proxy/io.hpp"

namespace geomx::proxy {

class Resolver final : public asio::execution_context::service {
 public:
  using key_type = Resolver;
  static inline asio::execution_context::id id;
  explicit Resolver(asio::execution_context& context);
  ~Resolver() override;
  // The resolver of the io_context `executor` runs on (made at first use).
  static Resolver& of(const asio::any_io_executor& executor);

  enum class Type : std::uint8_t { a, aaaa, ptr };
  struct Answer {
    enum class Status : std::uint8_t { found, none, error, timeout };
    Status status = Status::error;     // none: NXDOMAIN, or no record of the type
    std::vector<std::string> records;  // addresses as text, or names
    std::chrono::seconds ttl{0};       // the least of the records' (PTR and none: 0)
    std::string error;                 // c-ares's words, for error and timeout
  };
  using Done = std::function<void(Answer)>;
  // Asks `name` (A, AAAA or PTR) with the channel made for `dns` (made again
  // when the config changes); `done` runs on this thread, at dns.timeout at
  // the latest. `in_flight` counts the queries on the wire (every thread's);
  // at dns.max_in_flight the query is not started: false, and `done` is not called.
  bool query(const asio::any_io_executor& executor, const conf::Dns& dns,
             std::atomic<std::uint32_t>& in_flight, std::string name, Type type, Done done);

 private:
  struct Channel;  // one c-ares channel, its sockets and its timer
  struct Pending;  // one question on the wire
  void shutdown() override;
  static void answered(void* pending, int status, int timeouts, unsigned char* abuf, int alen);
  void retire_done(Channel* c);

  // The channel new questions go to; one made for an earlier [dns] stays in
  // `retired_` until its questions are answered.
  std::unique_ptr<Channel> current_;
  std::vector<std::unique_ptr<Channel>> retired_;
  int answering_ = 0;  // inside c-ares's callbacks: no channel is made or freed
  // The questions on the wire (type + name) and who waits for each answer.
  std::unordered_map<std::string, std::vector<Done>> waiting_;
};

}  // namespace geomx::proxy
