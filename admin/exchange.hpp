#pragma once
// AdminServer::exchange, for the files that instantiate it (one stream type
// each): Beast reads the request (8 KiB of headers, no body) and writes the
// answer: the request within 5 s, the answer within 10 s.
#include <chrono>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "admin/server.hpp"

namespace geomx::admin {

template <class Stream>
asio::awaitable<void> AdminServer::exchange(Stream& stream, Connection& connection) {
  namespace http = boost::beast::http;
  using namespace asio::experimental::awaitable_operators;
  using proxy::nothrow;
  boost::beast::flat_buffer buffer(8192);
  http::request_parser<http::empty_body> parser;
  parser.header_limit(8192);
  parser.body_limit(0);
  asio::steady_timer deadline(io_, std::chrono::seconds(5));
  auto r =
      co_await (http::async_read(stream, buffer, parser, nothrow) || deadline.async_wait(nothrow));
  if (r.index() == 1 || !connection.reading) co_return;  // too slow, or displaced
  connection.reading = false;
  auto [ec, n] = std::get<0>(r);
  HttpResponse res = co_await respond(ec, parser.get(), connection.local);
  if (!res.has_content_length()) res.prepare_payload();
  deadline.expires_after(std::chrono::seconds(10));
  co_await (http::async_write(stream, res, nothrow) || deadline.async_wait(nothrow));
}

}  // namespace geomx::admin
