#include "proxy/relay.hpp"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/write.hpp>

namespace geomx::proxy {
namespace {

using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// A direction waits for readability holding no buffer, then reads into the
// per-thread buffer and writes at once: nothing else runs on the thread in
// between. (Reading through Asio into a 128-byte buffer of each direction's
// own measured the same CPU per session and 0.4 kB more per idle
// connection; Asio's reactor pays one system call per wait either way, an
// epoll_ctl here, a failed speculative recv there.)
constexpr std::size_t buffer_size = 64 * 1024;
thread_local std::array<char, buffer_size> thread_buffer;

// The relay's operations come from the heap at their exact size. With the
// default allocator Asio recycles per-thread blocks, and a waiting relay
// would hold the larger block of an earlier operation (the connect) for as
// long as it idles.
template <class T>
struct ExactAllocator {
  using value_type = T;
  ExactAllocator() = default;
  template <class U>
  ExactAllocator(const ExactAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) { ::operator delete(p); }
  friend bool operator==(const ExactAllocator&, const ExactAllocator&) = default;
};

template <class Handler>
auto exact(Handler h) {
  return asio::bind_allocator(ExactAllocator<void>{}, std::move(h));
}

class Relay final : public SessionRegistry::Live, public std::enable_shared_from_this<Relay> {
 public:
  Relay(RelayStart s, ServerState& state, SessionRegistry& registry)
      : s_(std::move(s)),
        state_(state),
        registry_(registry),
        handle_(registry.add(*this, s_.client.get_executor())),
        last_activity_(Clock::now()) {
    state_.sessions.add();
  }
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  void start() {
    wait(up_);
    wait(down_);
  }

  void check_idle(Clock::time_point now) override;
  void shut_down() override {
    shutdown_ = true;
    close_both();
  }

 private:
  struct Direction {
    Socket& from;
    Socket& to;
    bool from_client;
    std::unique_ptr<char[]> backlog;  // bytes `to` could not take at once
  };
  void wait(Direction& d);
  void on_readable(Direction& d);
  void on_written(Direction& d, const error_code& ec);
  void read_failed(Direction& d, const error_code& ec);
  void write_failed(Direction& d, const error_code& ec);
  void close_both() {
    error_code ignored;
    s_.client.close(ignored);
    s_.backend.close(ignored);
  }

  RelayStart s_;
  ServerState& state_;
  SessionRegistry& registry_;
  SessionRegistry::Handle handle_;
  Direction up_{s_.client, s_.backend, true, nullptr};
  Direction down_{s_.backend, s_.client, false, nullptr};
  Clock::time_point last_activity_;
  bool idle_ = false;
  bool half_closed_ = false;  // one side has sent its FIN
  bool shutdown_ = false;
  std::optional<bool> client_ended_first_;
  std::string error_;
};

void Relay::wait(Direction& d) {
  d.from.async_wait(tcp::socket::wait_read,
                    exact([self = shared_from_this(), &d](const error_code& ec) {
                      if (ec)
                        self->read_failed(d, ec);
                      else
                        self->on_readable(d);
                    }));
}

void Relay::on_readable(Direction& d) {
  const auto got = ::recv(d.from.native_handle(), thread_buffer.data(), buffer_size, MSG_DONTWAIT);
  if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return wait(d);
  if (got <= 0)
    return read_failed(
        d, got == 0 ? asio::error::eof : error_code(errno, boost::system::system_category()));
  const std::size_t n = static_cast<std::size_t>(got);
  const char* data = thread_buffer.data();
  (d.from_client ? s_.record.bytes_in : s_.record.bytes_out) += n;
  last_activity_ = Clock::now();
  std::size_t written = 0;
  while (written < n) {
    const auto sent =
        ::send(d.to.native_handle(), data + written, n - written, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent >= 0) {
      written += static_cast<std::size_t>(sent);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return write_failed(d, error_code(errno, boost::system::system_category()));
    // The other side is slow: keep the rest aside and stop reading until it is out.
    const std::size_t rest = n - written;
    d.backlog = std::make_unique_for_overwrite<char[]>(rest);
    std::memcpy(d.backlog.get(), data + written, rest);
    asio::async_write(d.to, asio::buffer(d.backlog.get(), rest),
                      exact([self = shared_from_this(), &d](const error_code& wec, std::size_t) {
                        self->on_written(d, wec);
                      }));
    return;
  }
  wait(d);
}

void Relay::on_written(Direction& d, const error_code& ec) {
  d.backlog.reset();
  last_activity_ = Clock::now();
  if (ec) return write_failed(d, ec);
  wait(d);
}

void Relay::read_failed(Direction& d, const error_code& ec) {
  if (!client_ended_first_) client_ended_first_ = d.from_client;
  error_code ignored;
  if (ec == asio::error::eof) {
    d.to.shutdown(tcp::socket::shutdown_send, ignored);  // pass the half-close on
    half_closed_ = true;                                 // the other half now gets fin_timeout
    return;
  }
  if (ec != asio::error::operation_aborted && ec != asio::error::bad_descriptor && error_.empty())
    error_ = ec.message();
  d.to.close(ignored);  // a reset ends both directions
}

void Relay::write_failed(Direction& d, const error_code& ec) {
  if (!client_ended_first_) client_ended_first_ = !d.from_client;
  if (ec != asio::error::operation_aborted && ec != asio::error::bad_descriptor && error_.empty())
    error_ = ec.message();
  error_code ignored;
  d.from.close(ignored);
}

void Relay::check_idle(Clock::time_point now) {
  if (idle_) return;
  const auto limit =
      half_closed_ ? std::min(s_.pool.idle_timeout, s_.pool.fin_timeout) : s_.pool.idle_timeout;
  if (now - last_activity_ < limit) return;
  idle_ = !half_closed_;
  close_both();
}

// The last handler has let go: both directions are over.
Relay::~Relay() {
  registry_.remove(handle_);
  auto& r = s_.record;
  if (!error_.empty()) r.error = error_;
  r.end = shutdown_                            ? EndReason::shutdown
          : idle_                              ? EndReason::idle_timeout
          : client_ended_first_.value_or(true) ? EndReason::client_closed
                                               : EndReason::server_closed;
  r.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - s_.start);
  close_both();
  try {
    state_.session_ended(r);
  } catch (...) {  // a log line is not worth a crash
  }
  s_.member = {};    // its place at the member
  s_.holds.clear();  // given back before a drain can see the last session gone
  state_.sessions.remove();
}

}  // namespace

void start_relay(RelayStart start, ServerState& state, SessionRegistry& registry) {
  std::make_shared<Relay>(std::move(start), state, registry)->start();
}

}  // namespace geomx::proxy
