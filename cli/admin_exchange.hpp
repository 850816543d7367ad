#pragma once
// AdminClient's request and answer over TLS, in a file of its own
// (admin_client_tls.cpp): each stream type's Beast templates are compiled
// once, and the two files build side by side.
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

namespace geomx::cli {

using AdminRequest = boost::beast::http::request<boost::beast::http::empty_body>;
using AdminResponse = boost::beast::http::response<boost::beast::http::string_body>;

// The TLS handshake on the connected `tcp` (trusting only `ca_file`, the
// endpoint's own certificate), then the request and its answer; `tcp`'s
// deadline holds throughout.
boost::asio::awaitable<AdminResponse> exchange_tls(boost::beast::tcp_stream tcp,
                                                   std::string ca_file, AdminRequest req);

}  // namespace geomx::cli
