// Client side of the proxy benchmark (bench/proxy.pl), for what smtp-source
// does not measure:
//
//   conn_bench idle PORT COUNT PID [--proxy FIRST SPAN]
//       opens COUNT connections to 127.0.0.1:PORT, reads the SMTP banner on
//       each and holds them; prints the VmRSS of process PID before and with
//       all COUNT held, and kB per connection.
//   conn_bench latency PORT CONCURRENCY COUNT INTERVAL_MS [--proxy FIRST SPAN]
//       CONCURRENCY clients, each starting a session every INTERVAL_MS
//       (connect, read the banner, QUIT, close), COUNT sessions in all;
//       prints p50/p99 of connect-to-banner in microseconds, and sessions/s
//       over the run. The pacing keeps the load below every path's
//       capacity: it measures latency, not queueing. INTERVAL_MS 0 runs
//       each client flat out (a connection rate).
//   conn_bench mail PORT CONCURRENCY COUNT INTERVAL_MS [--proxy FIRST SPAN]
//       as latency, but each session is banner, EHLO, MAIL FROM, QUIT; the
//       percentiles are of the time from sending MAIL to its reply (what an
//       SMTP screen adds: its hand-off to the member happens there).
//   --proxy FIRST SPAN: each connection starts with a PROXY v1 header whose
//       source is FIRST + (n mod SPAN), n the connection's number: clients
//       from SPAN distinct IPv4 addresses (the DNS benchmark's cold and
//       warm caches). The proxy must trust 127.0.0.1 as a PROXY sender.
//   conn_bench serve PORT
//       a backend for the idle scenario (smtp-sink holds only a few hundred
//       connections): sends a banner, answers QUIT with 221, holds the rest.
//
// Loopback only; every wait is bounded (60 s per step).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace asio::experimental::awaitable_operators;
namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr auto step_limit = std::chrono::seconds(60);

long rss_kb(int pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  throw std::runtime_error(fmt::format("no VmRSS for pid {}", pid));
}

// Reads up to the last line of the banner ("220 ..." after any "220-").
asio::awaitable<bool> read_banner(tcp::socket& s, std::string& buf) {
  for (;;) {
    auto [ec, n] = co_await asio::async_read_until(s, asio::dynamic_buffer(buf), "\r\n", nothrow);
    if (ec) co_return false;
    const std::string line = buf.substr(0, n);
    buf.erase(0, n);
    if (line.size() < 4 || line.compare(0, 3, "220") != 0) co_return false;
    if (line[3] == ' ') co_return true;
  }
}

// Reads one whole reply (its "NNN-" lines and the "NNN " one); true if 2xx.
asio::awaitable<bool> read_reply(tcp::socket& s, std::string& buf) {
  for (;;) {
    auto [ec, n] = co_await asio::async_read_until(s, asio::dynamic_buffer(buf), "\r\n", nothrow);
    if (ec) co_return false;
    const std::string line = buf.substr(0, n);
    buf.erase(0, n);
    if (line.size() < 4 || line[0] != '2') co_return false;
    if (line[3] == ' ') co_return true;
  }
}

asio::awaitable<bool> say(tcp::socket& s, std::string_view text) {
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(text), nothrow);
  co_return !ec;
}

asio::awaitable<bool> bounded(asio::awaitable<bool> op) {
  asio::steady_timer t(co_await asio::this_coro::executor, step_limit);
  auto r = co_await (std::move(op) || t.async_wait(nothrow));
  co_return r.index() == 0 && std::get<0>(r);
}

tcp::endpoint target(const char* port) {
  return {asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(std::stoi(port))};
}

// The PROXY v1 header of connection n, or nothing without --proxy.
struct Sources {
  std::uint32_t first = 0, span = 0;
  std::string header(int n) const {
    if (span == 0) return {};
    const auto a = asio::ip::address_v4(first + static_cast<std::uint32_t>(n) % span);
    return fmt::format("PROXY TCP4 {} 127.0.0.1 {} 25\r\n", a.to_string(), 1024 + n % 60000);
  }
};

// Connects, sends connection n's PROXY header (if any) and reads the banner.
asio::awaitable<bool> open_session(tcp::socket& s, const tcp::endpoint& to, const Sources& from,
                                   int n, std::string& buf) {
  auto [ec] = co_await s.async_connect(to, nothrow);
  if (ec) co_return false;
  if (const auto h = from.header(n); !h.empty()) {
    auto [wec, w] = co_await asio::async_write(s, asio::buffer(h), nothrow);
    if (wec) co_return false;
  }
  co_return co_await read_banner(s, buf);
}

int idle(const char* port, int count, int pid, const Sources& from) {
  asio::io_context io;
  const auto to = target(port);
  std::vector<tcp::socket> held;
  held.reserve(static_cast<std::size_t>(count));
  int ok = 0, failed = 0, next = 0;
  const long before = rss_kb(pid);
  // 100 connects in flight at a time: the accept queue never overflows.
  auto opener = [&]() -> asio::awaitable<void> {
    while (next < count) {
      const int n = next++;
      tcp::socket s(io);
      std::string buf;
      if (co_await bounded(open_session(s, to, from, n, buf))) {
        ++ok;
        held.push_back(std::move(s));
      } else {
        ++failed;
      }
    }
  };
  for (int i = 0; i < 100; ++i) asio::co_spawn(io, opener(), asio::detached);
  io.run();
  // Let the proxy finish whatever it does after the banner went through.
  asio::steady_timer settle(io, std::chrono::milliseconds(500));
  settle.wait();
  const long after = rss_kb(pid);
  fmt::print("held={} failed={} rss_before_kb={} rss_after_kb={} kb_per_conn={:.2f}\n", ok, failed,
             before, after, ok ? double(after - before) / ok : 0.0);
  return failed == 0 ? 0 : 1;
}

// mail: the measured step is MAIL FROM to its reply, after the banner and EHLO.
int latency(const char* port, int concurrency, int count, int interval_ms, const Sources& from,
            bool mail) {
  asio::io_context io;
  const auto to = target(port);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(count));
  int next = 0, failed = 0;
  // Client i starts i/CONCURRENCY of an interval late: arrivals are spread
  // evenly, not in bursts of CONCURRENCY.
  auto client = [&](int i) -> asio::awaitable<void> {
    asio::steady_timer stagger(io,
                               std::chrono::microseconds(1000L * interval_ms * i / concurrency));
    co_await stagger.async_wait(nothrow);
    while (next < count) {
      const int n = next++;
      tcp::socket s(io);
      std::string buf;
      const auto start = Clock::now();
      asio::steady_timer pace(io, start + std::chrono::milliseconds(interval_ms));
      bool ok = co_await bounded(open_session(s, to, from, n, buf));
      auto step = start;
      if (ok && mail) {
        ok = co_await bounded([&]() -> asio::awaitable<bool> {
          // One step after another (no co_await inside && or ||: g++ 12 has bugs there).
          if (!co_await say(s, "EHLO client.test\r\n")) co_return false;
          if (!co_await read_reply(s, buf)) co_return false;
          step = Clock::now();
          if (!co_await say(s, "MAIL FROM:<bench@example.org>\r\n")) co_return false;
          co_return co_await read_reply(s, buf);
        }());
      }
      if (!ok) {
        ++failed;
        continue;
      }
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - step).count());
      co_await asio::async_write(s, asio::buffer("QUIT\r\n", 6), nothrow);
      co_await bounded([&]() -> asio::awaitable<bool> {
        auto [ec, n] =
            co_await asio::async_read_until(s, asio::dynamic_buffer(buf), "\r\n", nothrow);
        co_return !ec;
      }());
      s.close();
      co_await pace.async_wait(nothrow);
    }
  };
  const auto began = Clock::now();
  for (int i = 0; i < concurrency; ++i) asio::co_spawn(io, client(i), asio::detached);
  io.run();
  const double seconds = std::chrono::duration<double>(Clock::now() - began).count();
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) {
    return us.empty() ? 0.0 : us[std::min(us.size() - 1, static_cast<std::size_t>(p * us.size()))];
  };
  fmt::print("sessions={} failed={} p50_us={:.1f} p99_us={:.1f} per_s={:.1f}\n", us.size(), failed,
             pct(0.50), pct(0.99), seconds > 0 ? double(us.size()) / seconds : 0.0);
  return failed == 0 ? 0 : 1;
}

int serve(const char* port) {
  asio::io_context io;
  tcp::acceptor acceptor(io, target(port));
  auto session = [](tcp::socket s) -> asio::awaitable<void> {
    static constexpr std::string_view banner = "220 bench.test ESMTP\r\n";
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(banner), nothrow);
    std::string buf;
    while (!ec) {
      std::tie(ec, n) =
          co_await asio::async_read_until(s, asio::dynamic_buffer(buf), "\r\n", nothrow);
      if (ec) break;
      const bool quit = buf.compare(0, 4, "QUIT") == 0;
      buf.erase(0, n);
      std::tie(ec, n) = co_await asio::async_write(
          s, asio::buffer(quit ? std::string_view("221 bye\r\n") : "250 ok\r\n"), nothrow);
      if (quit) break;
    }
  };
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (;;) {
          auto [ec, s] = co_await acceptor.async_accept(nothrow);
          if (!ec) asio::co_spawn(io, session(std::move(s)), asio::detached);
        }
      },
      asio::detached);
  io.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    // An optional trailing --proxy FIRST SPAN.
    Sources from;
    if (argc > 3 && std::string_view(argv[argc - 3]) == "--proxy") {
      from.first = asio::ip::make_address_v4(argv[argc - 2]).to_uint();
      from.span = static_cast<std::uint32_t>(std::stoul(argv[argc - 1]));
      if (from.span == 0) throw std::invalid_argument("--proxy SPAN must be at least 1");
      argc -= 3;
    }
    if (mode == "idle" && argc == 5)
      return idle(argv[2], std::stoi(argv[3]), std::stoi(argv[4]), from);
    if ((mode == "latency" || mode == "mail") && argc == 6)
      return latency(argv[2], std::stoi(argv[3]), std::stoi(argv[4]), std::stoi(argv[5]), from,
                     mode == "mail");
    if (mode == "serve" && argc == 3) return serve(argv[2]);
    fmt::print(stderr,
               "usage: {0} idle PORT COUNT PID [--proxy FIRST SPAN]\n"
               "       {0} latency PORT CONCURRENCY COUNT INTERVAL_MS [--proxy FIRST SPAN]\n"
               "       {0} mail PORT CONCURRENCY COUNT INTERVAL_MS [--proxy FIRST SPAN]\n"
               "       {0} serve PORT\n",
               argv[0]);
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "conn_bench: {}\n", e.what());
    return 1;
  }
}
