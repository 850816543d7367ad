#include "cli/admin_client.hpp"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
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

// One request to the admin endpoint, all of it within `limit`; HTTPS when
// `ca_file` (the endpoint's own certificate) is given.
asio::awaitable<AdminResponse> admin_call(asio::io_context& io, conf::Endpoint admin,
                                          std::string ca_file, std::string token, http::verb verb,
                                          std::string target, std::chrono::seconds limit) {
  AdminRequest req{verb, target, 11};
  req.set(http::field::host, admin.to_string());
  req.set(http::field::user_agent, "geomx");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
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
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);  // `block list` is as long as the blocks are many
  co_await http::async_write(tcp, req, asio::use_awaitable);
  co_await http::async_read(tcp, buffer, parser, asio::use_awaitable);
  co_return parser.release();
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
  conf::Endpoint admin = config.admin.listen;
  try {
    if (!admin_override.empty()) admin = conf::parse_endpoint(admin_override);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "geomx: --admin {}: {}\n", admin_override, e.what());
    return std::nullopt;
  }
  // The token the daemon made at start (admin.token_file): readable by root
  // and the group it was given to.
  std::string token, token_problem;
  try {
    token = daemon::token_of(geo::read_input_file(config.admin.token_file, 4096));
    if (token.empty()) token_problem = config.admin.token_file + ": not a token";
  } catch (const geo::LoadError& e) {
    token_problem = e.what();
  }
  asio::io_context io;
  auto answer =
      asio::co_spawn(io, admin_call(io, admin, config.admin.tls_cert, token, verb, target, limit),
                     asio::use_future);
  io.run();
  std::optional<AdminResponse> res;
  try {
    res = answer.get();
  } catch (const std::exception& e) {
    fmt::print(stderr, "geomx: the admin endpoint at {}: {}\n", admin.to_string(), e.what());
    return std::nullopt;
  }
  if (res->result_int() == 401 || res->result_int() == 503 || res->result_int() == 403) {
    fmt::print(stderr, "geomx: the admin endpoint at {} refused the request ({}): {}",
               admin.to_string(), res->result_int(), res->body());
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
