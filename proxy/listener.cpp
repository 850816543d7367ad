#include "proxy/listener.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>

#include "proxy/policy_session.hpp"
#include "proxy/session.hpp"

namespace geomx::proxy {
namespace {

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

}  // namespace

template <class A>
void open_acceptor(A& a, const tcp::endpoint& endpoint, AcceptorOptions options) {
  a.open(endpoint.protocol());
  a.set_option(tcp::acceptor::reuse_address(true));
  if (options.reuse_port) a.set_option(reuse_port(true));
  if (options.v6_only && endpoint.address().is_v6()) a.set_option(asio::ip::v6_only(true));
  a.bind(endpoint);
  a.listen(asio::socket_base::max_listen_connections);
}

template void open_acceptor(Acceptor&, const tcp::endpoint&, AcceptorOptions);
template void open_acceptor(tcp::acceptor&, const tcp::endpoint&, AcceptorOptions);

void check_port_free(const tcp::endpoint& endpoint, asio::io_context& io) {
  if (endpoint.port() == 0) return;
  tcp::acceptor probe(io);
  probe.open(endpoint.protocol());
  probe.set_option(tcp::acceptor::reuse_address(true));
  if (endpoint.address().is_v6()) probe.set_option(asio::ip::v6_only(true));
  probe.bind(endpoint);
}

asio::awaitable<void> serve_listener(std::shared_ptr<ListeningSocket> listening, ServerState& state,
                                     SessionRegistry& registry) {
  auto& acceptor = listening->acceptor;
  // The mode of a listener's key stays with its socket across reloads.
  const auto runtime = state.current();
  const auto index = runtime->listener(listening->key);
  const bool policy =
      index && runtime->snapshot->config.listeners[*index].mode == conf::ListenerMode::policy;
  co_await accept_loop(acceptor, &state.log, [&](Socket socket, const tcp::endpoint& peer) {
    if (policy)
      asio::co_spawn(acceptor.get_executor(),
                     run_policy_session(std::move(socket), peer, listening->key, state, registry),
                     asio::detached);
    else
      asio::co_spawn(acceptor.get_executor(),
                     run_session(std::move(socket), peer, listening->key, state, registry),
                     asio::detached);
  });
}

}  // namespace geomx::proxy
