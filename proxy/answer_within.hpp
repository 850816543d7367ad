#pragma once
// Waiting for an answer that comes on another thread (the store's loop),
// at most a deadline: the one way a session asks the fleet.
#include <memory>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "proxy/io.hpp"

namespace geomx::proxy {

// Calls ask(reply) and waits until reply(value) has been called, from any
// thread, or `timeout` has passed; returns the value, or T{} (nullopt, no
// answers) when it came too late. The answer is posted to `ex`, and held
// weakly: a reply still queued at shutdown does not outlive the waiter.
template <class T, class Ask>
asio::awaitable<T> answer_within(asio::any_io_executor ex, std::chrono::milliseconds timeout,
                                 Ask ask) {
  struct Answer {
    explicit Answer(asio::any_io_executor e) : done(std::move(e)) {}
    asio::steady_timer done;  // expires at the timeout, cancelled by the answer
    T value{};
  };
  auto answer = std::make_shared<Answer>(ex);
  answer->done.expires_after(timeout);
  ask([weak = std::weak_ptr<Answer>(answer), ex](T v) {
    asio::post(ex, [weak, v = std::move(v)]() mutable {
      if (const auto a = weak.lock()) {
        a->value = std::move(v);
        a->done.cancel();
      }
    });
  });
  co_await answer->done.async_wait(nothrow);
  co_return std::move(answer->value);
}

}  // namespace geomx::proxy
