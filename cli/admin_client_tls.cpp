#include <openssl/x509_vfy.h>

#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "cli/admin_exchange.hpp"

namespace geomx::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

asio::awaitable<AdminResponse> exchange_tls(beast::tcp_stream tcp, std::string ca_file,
                                            AdminRequest req) {
  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file(ca_file);
  X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx.native_handle()),
                              X509_V_FLAG_PARTIAL_CHAIN);  // the certificate itself is the anchor
  ctx.set_verify_mode(ssl::verify_peer);
  ssl::stream<beast::tcp_stream> tls(std::move(tcp), ctx);
  co_await tls.async_handshake(ssl::stream_base::client, asio::use_awaitable);
  co_await http::async_write(tls, req, asio::use_awaitable);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);  // as in admin_client.cpp
  co_await http::async_read(tls, buffer, parser, asio::use_awaitable);
  co_return parser.release();
}

}  // namespace geomx::cli
