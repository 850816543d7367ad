#pragma once
// The sessions of one I/O thread (touched only from it): the end of a drain
// closes their sockets, and a sweep every 250 ms (while there are sessions)
// enforces idle_timeout/fin_timeout, so that a relaying session needs no
// timer of its own.
#include <chrono>
#include <list>

#include <boost/asio/any_io_executor.hpp>

#include "proxy/io.hpp"

namespace geomx::proxy {

class SessionRegistry {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto sweep_interval = std::chrono::milliseconds(250);
  // A live session (a Session coroutine, then its Relay): not a pool member.
  class Live {
   public:
    virtual void check_idle(Clock::time_point now) = 0;
    virtual void shut_down() = 0;
    // The drain has begun: a session with nothing under way may end now
    // (a policy connection between requests); the others carry on.
    virtual void drain() {}

   protected:
    ~Live() = default;
  };
  using Handle = std::list<Live*>::iterator;
  Handle add(Live& s, const asio::any_io_executor& executor);
  void remove(Handle h) { live_.erase(h); }
  void close_all();
  void drain_all();

  // Keeps a session registered while it lives.
  class Registration {
   public:
    Registration(SessionRegistry& r, Live& s, const asio::any_io_executor& e)
        : registry_(r), handle_(r.add(s, e)) {}
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    ~Registration() { registry_.remove(handle_); }

   private:
    SessionRegistry& registry_;
    Handle handle_;
  };

 private:
  asio::awaitable<void> sweep();
  std::list<Live*> live_;
  bool sweeping_ = false;
};

}  // namespace geomx::proxy
