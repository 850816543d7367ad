// The admin endpoint over HTTPS ([admin] tls_cert and tls_key).
#include <boost/asio/ssl.hpp>

#include "admin/exchange.hpp"

namespace geomx::admin {

asio::awaitable<void> AdminServer::serve_tls(tcp::socket socket, geo::Address peer) {
  using namespace asio::experimental::awaitable_operators;
  using proxy::nothrow;
  namespace ssl = asio::ssl;
  try {
    ssl::stream<tcp::socket> stream(std::move(socket), *tls_);
    Open open(open_, &stream.next_layer(), peer);
    asio::steady_timer deadline(io_, std::chrono::seconds(5));
    auto r = co_await (stream.async_handshake(ssl::stream_base::server, nothrow) ||
                       deadline.async_wait(nothrow));
    if (r.index() == 1 || std::get<0>(std::get<0>(r))) co_return;  // not our client
    co_await exchange(stream, *open.it);
  } catch (const std::exception& e) {
    state_.log.event("admin_error", {{"error", e.what()}});
  }
}

}  // namespace geomx::admin
