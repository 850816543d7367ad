#pragma once
// The I/O vocabulary of everything above policy/: the socket types and the
// one completion token. Every wait reads
//   auto [ec, n] = co_await s.async_read_some(buf, nothrow);
// (errors as values: every `if (ec)` branch returns).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace geomx {
namespace asio = boost::asio;
}

namespace geomx::proxy {

using tcp = asio::ip::tcp;
// Sockets bound to their thread's io_context: half the size of ones with a
// type-erased executor, and so are their pending operations (idle memory).
using Socket = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;
using Acceptor = asio::basic_socket_acceptor<tcp, asio::io_context::executor_type>;

inline constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

}  // namespace geomx::proxy
