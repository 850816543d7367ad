#include "cli/admin_client.hpp"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "cli/admin_exchange.hpp"
#include "cli/config_tools.hpp"
#include "daemon/token.hpp"
#include "geo/sources.hpp"
#include "proxy/endpoint.hpp"

namespace geomx::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;

// The request written and its answer read over a connected plain stream
// (its deadline holds throughout).
template <class Stream>
asio::awaitable<AdminResponse> exchange_plain(Stream& stream, AdminRequest req) {
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);  // `block list` is as long as the blocks are many
  co_await http::async_write(stream, req, asio::use_awaitable);
  co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
  co_return parser.release();
}

AdminRequest request(http::verb verb, std::string target, std::string_view host,
                     const std::string& token) {
  AdminRequest req{verb, target, 11};
  req.set(http::field::host, host);
  req.set(http::field::user_agent, "geomx");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  return req;
}

// One request to the admin endpoint, all of it within `limit`; HTTPS when
// `ca_file` (the endpoint's own certificate) is given.
asio::awaitable<AdminResponse> admin_call(asio::io_context& io, conf::Endpoint admin,
                                          std::string ca_file, std::string token, http::verb verb,
                                          std::string target, std::chrono::seconds limit) {
  auto req = request(verb, std::move(target), admin.to_string(), token);
  beast::tcp_stream tcp(io);
  tcp.expires_after(limit);
  auto [connected] =
      co_await tcp.async_connect(proxy::to_asio(admin), asio::as_tuple(asio::use_awaitable));
  if (connected)
    throw std::runtime_error(
        fmt::format("cannot connect: {} (is geomx running?)", connected.message()));
  if (!ca_file.empty()) {
    auto res = co_await exchange_tls(std::move(tcp), std::move(ca_file), std::move(req));
    co_return res;
  }
  co_return co_await exchange_plain(tcp, std::move(req));
}

// The same over the admin socket, which needs no token: its file
// permissions decide who may connect.
asio::awaitable<AdminResponse> socket_call(asio::io_context& io, std::string path, http::verb verb,
                                           std::string target, std::chrono::seconds limit) {
  using local = asio::local::stream_protocol;
  auto req = request(verb, std::move(target), "localhost", {});
  beast::basic_stream<local> stream(io);
  stream.expires_after(limit);
  auto [connected] =
      co_await stream.async_connect(local::endpoint(path), asio::as_tuple(asio::use_awaitable));
  if (connected == asio::error::access_denied)
    throw std::runtime_error(fmt::format(
        "cannot connect: {} (run this as root or as a member of the group the socket belongs "
        "to: server.group, or server.user's)",
        connected.message()));
  if (connected)
    throw std::runtime_error(
        fmt::format("cannot connect: {} (is geomx running?)", connected.message()));
  co_return co_await exchange_plain(stream, std::move(req));
}

}  // namespace

bool AdminClient::read(conf::Config& config) const {
  try {
    config = conf::load_config(config_path, {"localhost"});
    return true;
  } catch (const conf::ConfigError& e) {
    print_errors(config_path, e.diagnostics());
    return false;
  }
}

std::optional<http::response<http::string_body>> AdminClient::call(
    const conf::Config& config, http::verb verb, const std::string& target,
    std::chrono::seconds limit) const {
  // Where: --admin (ADDR:PORT, or unix:PATH), else [admin] socket when it
  // is set, else [admin] listen.
  conf::Endpoint admin = config.admin.listen;
  std::string socket = admin_override.empty() ? config.admin.socket : std::string();
  constexpr std::string_view unix_scheme = "unix:";
  if (admin_override.starts_with(unix_scheme)) {
    socket = admin_override.substr(unix_scheme.size());
  } else if (!admin_override.empty()) {
    try {
      admin = conf::parse_endpoint(admin_override);
    } catch (const std::invalid_argument& e) {
      fmt::print(stderr, "geomx: --admin {}: {}\n", admin_override, e.what());
      return std::nullopt;
    }
  }
  const std::string where = socket.empty() ? admin.to_string() : "unix:" + socket;
  // Over TCP, the token the daemon made at start (admin.token_file):
  // readable by root and the group it was given to.
  std::string token, token_problem;
  if (socket.empty()) {
    try {
      token = daemon::token_of(geo::read_input_file(config.admin.token_file, 4096));
      if (token.empty()) token_problem = config.admin.token_file + ": not a token";
    } catch (const geo::LoadError& e) {
      token_problem = e.what();
    }
  }
  asio::io_context io;
  auto answer =
      socket.empty()
          ? asio::co_spawn(io,
                           admin_call(io, admin, config.admin.tls_cert, token, verb, target, limit),
                           asio::use_future)
          : asio::co_spawn(io, socket_call(io, socket, verb, target, limit), asio::use_future);
  io.run();
  std::optional<AdminResponse> res;
  try {
    res = answer.get();
  } catch (const std::exception& e) {
    fmt::print(stderr, "geomx: the admin endpoint at {}: {}\n", where, e.what());
    return std::nullopt;
  }
  if (res->result_int() == 401 || res->result_int() == 503 || res->result_int() == 403) {
    fmt::print(stderr, "geomx: the admin endpoint at {} refused the request ({}): {}", where,
               res->result_int(), res->body());
    if (!token_problem.empty())
      fmt::print(stderr,
                 "geomx: the admin token: {} (geomx creates it when it starts; run this as root "
                 "or as a member of the group it belongs to)\n",
                 token_problem);
    return std::nullopt;
  }
  return res;
}

}  // namespace geomx::cli
