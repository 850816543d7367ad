// A Postfix-like client of a policy service (geomx's policy listener or
// postgrey): C connections, each sending one request and waiting for its
// answer before the next (as smtpd does), until N requests or S seconds.
// Request i is a triplet of its own (client 127.R.x.y, sender s<i>@...), so
// a run of N is N store writes; with --offset the same triplets again.
// Prints one line: requests, seconds, requests/s, p50 and p99 latency (us),
// and the count of each answer's first word.
//
// Usage: policy_bench PORT CONNECTIONS REQUESTS SECONDS [OFFSET] [NETWORK]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace {

using Clock = std::chrono::steady_clock;

std::string request(std::uint64_t i, unsigned network) {
  // Client addresses from 127.N.0.0/16 on, 256 per /24 (a triplet per request).
  const unsigned a = network + static_cast<unsigned>((i >> 16) & 0x3f);
  return fmt::format(
      "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
      "client_address=127.{}.{}.{}\nclient_name=unknown\nreverse_client_name=unknown\n"
      "client_port=40000\nhelo_name=client{}.bench.test\nsender=s{}@sender.bench.test\n"
      "recipient=r{}@example.test\nrecipient_count=0\nqueue_id=\ninstance={:x}.{}\nsize=0\n"
      "etrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\n"
      "ccert_issuer=\nccert_fingerprint=\nencryption_protocol=\nencryption_cipher=\n"
      "encryption_keysize=0\nserver_address=127.0.0.1\nserver_port=25\n\n",
      a, (i >> 8) & 0xff, i & 0xff, i, i, i % 7, i, i);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s PORT CONNECTIONS REQUESTS SECONDS [OFFSET] [NETWORK]\n",
                 argv[0]);
    return 2;
  }
  const int port = std::atoi(argv[1]);
  const int conns = std::max(1, std::atoi(argv[2]));
  const std::uint64_t total = std::strtoull(argv[3], nullptr, 10);
  const double seconds = std::atof(argv[4]);
  const std::uint64_t offset = argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 0;
  const unsigned network = argc > 6 ? static_cast<unsigned>(std::atoi(argv[6])) : 100;
  std::atomic<std::uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex m;
  std::vector<double> latencies;
  std::map<std::string, std::uint64_t> answers;
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < conns; ++c)
    threads.emplace_back([&] {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(static_cast<std::uint16_t>(port));
      sa.sin_addr.s_addr = htonl(0x7f000001);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        failed = true;
        return;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::vector<double> mine;
      std::map<std::string, std::uint64_t> seen;
      char buf[4096];
      for (;;) {
        const auto i = next.fetch_add(1);
        if (i >= total || Clock::now() > deadline) break;
        const auto req = request(offset + i, network);
        const auto t0 = Clock::now();
        if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
          failed = true;
          break;
        }
        std::string reply;
        while (reply.find("\n\n") == std::string::npos) {
          const auto n = ::read(fd, buf, sizeof buf);
          if (n <= 0) {
            failed = true;
            break;
          }
          reply.append(buf, static_cast<std::size_t>(n));
        }
        if (failed) break;
        mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        const auto word = reply.substr(7, reply.find_first_of(" \n", 7) - 7);
        ++seen[word];
      }
      ::close(fd);
      std::lock_guard lock(m);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
      for (const auto& [w, n] : seen) answers[w] += n;
    });
  for (auto& t : threads) t.join();
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    return latencies.empty() ? 0.0
                             : latencies[static_cast<std::size_t>(p * (latencies.size() - 1))];
  };
  std::string words;
  for (const auto& [w, n] : answers) words += fmt::format(" {}={}", w, n);
  fmt::print("requests={} seconds={:.3f} rps={:.0f} p50_us={:.0f} p99_us={:.0f} failed={}{}\n",
             latencies.size(), took, latencies.size() / took, pct(0.5), pct(0.99),
             failed.load() ? 1 : 0, words);
  return failed ? 1 : 0;
}
