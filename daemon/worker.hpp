#pragma once
// One I/O thread of the Server (private to daemon/).
#include <thread>

#include <boost/asio/executor_work_guard.hpp>

#include "daemon/server.hpp"
#include "proxy/registry.hpp"

namespace geomx::daemon {

struct Server::Worker {
  proxy::SessionRegistry sessions;  // outlives io: destroying io's handlers unregisters relays
  asio::io_context io{1};
  // Keeps io running while a reload swaps its listeners (for a moment it may
  // have none and no session); the drain lets it go.
  asio::executor_work_guard<asio::io_context::executor_type> busy{io.get_executor()};
  Sockets listening;  // touched by its thread once running
  std::thread thread;
};

}  // namespace geomx::daemon
