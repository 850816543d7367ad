#include "admin/server.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <system_error>

#include <fmt/format.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>

#include "admin/access.hpp"
#include "admin/exchange.hpp"
#include "proxy/endpoint.hpp"
#include "proxy/listener.hpp"

namespace geomx::admin {
namespace {

namespace http = boost::beast::http;
namespace ssl = asio::ssl;

}  // namespace

std::unique_ptr<ssl::context> tls_context(const std::string& cert, const std::string& key) {
  auto tls = std::make_unique<ssl::context>(ssl::context::tls_server);
  tls->set_options(ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  try {
    tls->use_certificate_chain_file(cert);
    tls->use_private_key_file(key, ssl::context::pem);
  } catch (const boost::system::system_error& e) {
    throw std::system_error(e.code(), "admin endpoint TLS certificate " + cert + " / key " + key);
  }
  return tls;
}

AdminServer::AdminServer(asio::io_context& io, proxy::ServerState& state)
    : io_(io), state_(state), acceptor_(io), local_acceptor_(io) {}

AdminServer::~AdminServer() = default;

void AdminServer::bind(const conf::Endpoint& listen, const std::string& cert,
                       const std::string& key) {
  if (!cert.empty()) tls_ = tls_context(cert, key);
  try {
    proxy::open_acceptor(acceptor_, proxy::to_asio(listen), {});
  } catch (const boost::system::system_error& e) {
    throw std::system_error(e.code(), "admin endpoint on " + listen.to_string());
  }
}

void AdminServer::bind_socket(const std::string& path, gid_t group) {
  const auto fail = [&](int err, std::string_view what) {
    throw std::system_error(err, std::generic_category(),
                            fmt::format("admin socket {}: {}", path, what));
  };
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) fail(EEXIST, "something else is there (not a socket): not replaced");
    local::socket probe(io_);
    boost::system::error_code ec;
    probe.connect(local::endpoint(path), ec);
    if (!ec) fail(EADDRINUSE, "another process answers on it (a geomx already running?)");
    if (ec != asio::error::connection_refused) fail(ec.value(), ec.message());
    if (::unlink(path.c_str()) != 0)
      fail(errno, "left by a geomx that stopped, and cannot be removed");
  }
  boost::system::error_code ec;
  local_acceptor_.open(local::endpoint().protocol(), ec);
  // Made 0660 and of `group` as it is bound: the umask and the effective
  // group are the process's, and no other thread runs yet. No chown by
  // path afterwards, which a symlink put there meanwhile would redirect.
  const mode_t mask = ::umask(0117);
  const gid_t egid = ::getegid();
  const bool regroup = group != static_cast<gid_t>(-1) && group != egid;
  if (regroup && ::setegid(group) != 0) {
    ::umask(mask);
    fail(errno, fmt::format("cannot be made for group {}", group));
  }
  if (!ec) local_acceptor_.bind(local::endpoint(path), ec);
  if (regroup && ::setegid(egid) != 0) std::abort();  // root cannot take its group back
  ::umask(mask);
  if (ec) fail(ec.value(), ec.message());
  socket_path_ = path;
  local_acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail(ec.value(), ec.message());
}

void AdminServer::start() {
  if (local_acceptor_.is_open())
    asio::co_spawn(io_,
                   proxy::accept_loop(local_acceptor_, nullptr,
                                      [this](local::socket socket, const local::endpoint&) {
                                        if (!admit({})) return;  // closed at once
                                        asio::co_spawn(io_, serve_local(std::move(socket)),
                                                       asio::detached);
                                      }),
                   asio::detached);
  asio::co_spawn(io_,
                 proxy::accept_loop(acceptor_, nullptr,
                                    [this](tcp::socket socket, const tcp::endpoint& from) {
                                      const auto peer = proxy::from_asio(from).address;
                                      if (!admit(peer)) return;  // closed at once
                                      asio::co_spawn(io_, serve(std::move(socket), peer),
                                                     asio::detached);
                                    }),
                 asio::detached);
}

bool AdminServer::admit(const geo::Address& peer) {
  // Full (from this address, or in all): the oldest connection that has
  // not sent its request yet makes room; one being answered keeps its slot.
  const auto make_room = [&](auto among) {
    const auto idle = std::find_if(open_.begin(), open_.end(),
                                   [&](const Connection& c) { return c.reading && among(c); });
    if (idle == open_.end()) return false;  // all are being answered: come back later
    idle->close();
    idle->reading = false;  // closed: not displaced twice
    return true;
  };
  const auto from_peer = [&](const Connection& c) { return c.peer == peer; };
  if (static_cast<std::size_t>(std::count_if(open_.begin(), open_.end(), from_peer)) >= per_client)
    return make_room(from_peer);
  if (open_.size() >= max_connections) return make_room([](const Connection&) { return true; });
  return true;
}

void AdminServer::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  if (local_acceptor_.is_open()) {
    local_acceptor_.close(ignored);
    ::unlink(
        socket_path_.c_str());  // may fail after the privileges went: the next start replaces it
  }
  for (auto& c : open_) c.close();
}

asio::awaitable<void> AdminServer::serve(tcp::socket socket, geo::Address peer) {
  if (tls_) {
    co_await serve_tls(std::move(socket), peer);
    co_return;
  }
  try {
    Open open(open_, &socket, peer);
    co_await exchange(socket, *open.it);
  } catch (const std::exception& e) {
    state_.log.event("admin_error", {{"error", e.what()}});
  }
}

asio::awaitable<std::optional<std::vector<state::FleetTop::NodeReport>>> AdminServer::fleet_reports(
    const Request& request) {
  auto q = query_of(request.target);
  const std::string window = q && (*q)["window"] == "1h" ? "1h" : "1m";
  // Woken by the answer, which comes within the store's timeout (or at
  // once when it is down); the answer's state is shared, so a callback
  // after this frame (at a shutdown) touches nothing gone.
  struct Waiting {
    std::optional<std::vector<state::FleetTop::NodeReport>> reports;
    bool answered = false;
    asio::steady_timer* wake = nullptr;
  };
  auto waiting = std::make_shared<Waiting>();
  asio::steady_timer wake(io_, asio::steady_timer::time_point::max());
  waiting->wake = &wake;
  struct Forget {
    Waiting& w;
    ~Forget() { w.wake = nullptr; }
  } forget{*waiting};
  state_.fleet->top(window, [waiting](std::optional<std::vector<state::FleetTop::NodeReport>> r) {
    waiting->reports = std::move(r);
    waiting->answered = true;
    if (waiting->wake) waiting->wake->cancel();
  });
  if (!waiting->answered) co_await wake.async_wait(proxy::nothrow);
  co_return std::move(waiting->reports);
}

asio::awaitable<void> AdminServer::serve_local(local::socket socket) {
  try {
    Open open(open_, &socket, {}, true);
    co_await exchange(socket, *open.it);
  } catch (const std::exception& e) {
    state_.log.event("admin_error", {{"error", e.what()}});
  }
}

asio::awaitable<HttpResponse> AdminServer::respond(boost::system::error_code ec,
                                                   const HttpRequest& req, bool local) {
  HttpResponse res;
  res.version(11);
  res.set(http::field::server, "geomx");
  res.set(http::field::connection, "close");
  if (ec) {
    res.result(http::status::bad_request);
    res.body() = "bad request: " + ec.message() + "\n";
    co_return res;
  }
  const auto target = req.target().substr(0, req.target().find('?'));
  const Request request{req.method_string(), req.target()};
  const Access access{token_, host_names(state_.current()->snapshot->config), local};
  Reply answer;
  if (auto refused = refuse(
          request,
          {req[http::field::host], req[http::field::origin], req[http::field::authorization]},
          access)) {
    answer = std::move(*refused);
  } else if (state_.fleet && wants_fleet_top(request)) {
    const auto others = co_await fleet_reports(request);
    answer = fleet_top_answer(request, state_, Now::read(), others);
  } else if (target == "/reload" && req.method() == http::verb::post && reload_) {
    // Not inside an expression: g++ 12 mishandles temporaries around co_await there.
    const ReloadOutcome outcome = co_await reload_();
    auto query = query_of(req.target());
    answer = reload_reply(outcome, query && (*query)["format"] == "text");
  } else {
    answer = admin::answer(request, state_, Now::read());
  }
  res.result(answer.status);
  res.set(http::field::content_type, answer.content_type);
  if (answer.status == 405) res.set(http::field::allow, answer.allow);
  if (answer.challenge) res.set(http::field::www_authenticate, "Bearer realm=\"geomx admin\"");
  if (req.method() == http::verb::head)
    res.content_length(answer.body.size());  // the length GET would have
  else
    res.body() = std::move(answer.body);
  co_return res;
}

}  // namespace geomx::admin
