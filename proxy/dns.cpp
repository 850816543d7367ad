#include "proxy/dns.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <mutex>

#include <fmt/format.h>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>

namespace geomx::proxy {

namespace {

// A c-ares socket, waited on by the loop's reactor: the descriptor is c-ares's
// (released, never closed, here).
struct Watch {
  Watch(const asio::any_io_executor& ex, ares_socket_t f) : fd(f), descriptor(ex, f) {}
  ares_socket_t fd;
  asio::posix::stream_descriptor descriptor;
  bool want_read = false, want_write = false, reading = false, writing = false, closed = false;
};

}  // namespace

struct Resolver::Channel {
  Channel(Resolver& r, const asio::any_io_executor& ex, const conf::Dns& d)
      : resolver(r), executor(ex), dns(d), timer(ex) {
    ares_options o{};
    o.sock_state_cb = &Channel::socket_state;
    o.sock_state_cb_data = this;
    o.timeout = static_cast<int>(std::max<conf::Duration::rep>(1, dns.timeout.count()));
    o.tries = 1;  // the session gives up at dns.timeout anyway
    const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    if (const int rc = ares_init_options(&channel, &o, mask); rc != ARES_SUCCESS) {
      channel = nullptr;
      error = fmt::format("c-ares: {}", ares_strerror(rc));
      return;
    }
    if (dns.servers.empty()) return;
    std::string csv;
    for (const auto& s : dns.servers) csv += (csv.empty() ? "" : ",") + s.to_string();
    if (const int rc = ares_set_servers_ports_csv(channel, csv.c_str()); rc != ARES_SUCCESS)
      error = fmt::format("c-ares: servers {}: {}", csv, ares_strerror(rc));
  }
  ~Channel() {
    timer.cancel();
    if (channel) ares_destroy(channel);  // answers every question (ARES_EDESTRUCTION)
    for (auto& [fd, w] : watches) {
      w->closed = true;
      boost::system::error_code ec;
      w->descriptor.cancel(ec);
      w->descriptor.release();
    }
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  static void socket_state(void* self, ares_socket_t fd, int readable, int writable) {
    auto& c = *static_cast<Channel*>(self);
    auto it = c.watches.find(fd);
    if (!readable && !writable) {  // c-ares closes it next
      if (it == c.watches.end()) return;
      it->second->closed = true;
      boost::system::error_code ec;
      it->second->descriptor.cancel(ec);
      it->second->descriptor.release();
      c.watches.erase(it);
      return;
    }
    if (it == c.watches.end())
      it = c.watches.emplace(fd, std::make_shared<Watch>(c.executor, fd)).first;
    it->second->want_read = readable;
    it->second->want_write = writable;
    c.arm(it->second);
  }

  void arm(const std::shared_ptr<Watch>& w) {
    if (w->closed) return;
    if (w->want_read && !w->reading) wait(w, false);
    if (w->want_write && !w->writing) wait(w, true);
  }

  // One readiness wait; c-ares is told which one came.
  void wait(const std::shared_ptr<Watch>& w, bool write) {
    (write ? w->writing : w->reading) = true;
    w->descriptor.async_wait(write ? asio::posix::stream_descriptor::wait_write
                                   : asio::posix::stream_descriptor::wait_read,
                             [this, w, write](const boost::system::error_code& ec) {
                               (write ? w->writing : w->reading) = false;
                               if (ec || w->closed) return;
                               process(write ? ARES_SOCKET_BAD : w->fd,
                                       write ? w->fd : ARES_SOCKET_BAD);
                               arm(w);
                             });
  }

  void process(ares_socket_t read_fd, ares_socket_t write_fd) {
    ++resolver.answering_;
    ares_process_fd(channel, read_fd, write_fd);
    --resolver.answering_;
    arm_timer();
    if (pending == 0 && retired) resolver.retire_done(this);
  }

  // c-ares's next timeout (a question's deadline, a retransmission).
  void arm_timer() {
    timeval tv{};
    if (!ares_timeout(channel, nullptr, &tv)) {
      timer.cancel();
      return;
    }
    timer.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
    // A completion already queued when the channel goes: `alive` says so.
    timer.async_wait(
        [this, alive = std::weak_ptr<int>(alive)](const boost::system::error_code& ec) {
          if (!ec && !alive.expired()) process(ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        });
  }

  Resolver& resolver;
  asio::any_io_executor executor;
  conf::Dns dns;
  ares_channel channel = nullptr;
  std::string error;  // why channel could not be made or configured
  asio::steady_timer timer;
  std::map<ares_socket_t, std::shared_ptr<Watch>> watches;
  std::size_t pending = 0;  // questions on the wire
  bool retired = false;
  std::shared_ptr<int> alive = std::make_shared<int>();
};

struct Resolver::Pending {
  Channel* channel;
  std::string key;
  Type type;
  std::atomic<std::uint32_t>* in_flight;
};

Resolver::Resolver(asio::execution_context& context) : asio::execution_context::service(context) {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

Resolver::~Resolver() {
  shutdown();
}

void Resolver::shutdown() {
  ++answering_;
  current_.reset();
  retired_.clear();
  --answering_;
  waiting_.clear();
}

Resolver& Resolver::of(const asio::any_io_executor& executor) {
  return asio::use_service<Resolver>(asio::query(executor, asio::execution::context));
}

bool Resolver::query(const asio::any_io_executor& executor, const conf::Dns& dns,
                     std::atomic<std::uint32_t>& in_flight, std::string name, Type type,
                     Done done) {
  std::string key(1, static_cast<char>('0' + static_cast<int>(type)));
  key += name;
  if (auto it = waiting_.find(key); it != waiting_.end()) {
    it->second.push_back(std::move(done));
    return true;
  }
  // A reload changed [dns]: new questions go to a new channel (never made
  // or freed inside c-ares's callbacks); the old one answers its own.
  // Only what the channel is made of: servers and timeout.
  const auto same = [](const conf::Dns& a, const conf::Dns& b) {
    return a.servers == b.servers && a.timeout == b.timeout;
  };
  if (current_ && !same(current_->dns, dns) && answering_ == 0) {
    current_->retired = true;
    if (current_->pending == 0)
      current_.reset();
    else
      retired_.push_back(std::move(current_));
  }
  if (!current_) current_ = std::make_unique<Channel>(*this, executor, dns);
  Channel& c = *current_;
  if (!c.channel) {
    Answer a;
    a.error = c.error;
    done(std::move(a));
    return true;
  }
  if (in_flight.fetch_add(1, std::memory_order_relaxed) >= dns.max_in_flight) {
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  waiting_[key].push_back(std::move(done));
  ++c.pending;
  static constexpr int types[] = {1, 28, 12};  // A, AAAA, PTR
  ares_query(c.channel, name.c_str(), 1 /* IN */, types[static_cast<int>(type)], &answered,
             new Pending{&c, std::move(key), type, &in_flight});
  c.arm_timer();
  return true;
}

void Resolver::retire_done(Channel* c) {
  // Freed after this turn: c-ares may still be on its stack.
  asio::post(c->executor, [this, c] {
    auto it = std::find_if(retired_.begin(), retired_.end(),
                           [c](const std::unique_ptr<Channel>& r) { return r.get() == c; });
    if (it != retired_.end() && (*it)->pending == 0) retired_.erase(it);
  });
}

void Resolver::answered(void* arg, int status, int, unsigned char* abuf, int alen) {
  std::unique_ptr<Pending> p(static_cast<Pending*>(arg));
  p->in_flight->fetch_sub(1, std::memory_order_relaxed);
  Channel& c = *p->channel;
  --c.pending;
  Answer a;
  if (status == ARES_SUCCESS) {
    a.status = Answer::Status::found;
    char text[INET6_ADDRSTRLEN];
    std::uint32_t ttl = UINT32_MAX;
    if (p->type == Type::a) {
      ares_addrttl r[32];
      int n = 32;
      status = ares_parse_a_reply(abuf, alen, nullptr, r, &n);
      for (int i = 0; status == ARES_SUCCESS && i < n; ++i) {
        a.records.emplace_back(inet_ntop(AF_INET, &r[i].ipaddr, text, sizeof text));
        ttl = std::min<std::uint32_t>(ttl, static_cast<std::uint32_t>(std::max(0, r[i].ttl)));
      }
    } else if (p->type == Type::aaaa) {
      ares_addr6ttl r[32];
      int n = 32;
      status = ares_parse_aaaa_reply(abuf, alen, nullptr, r, &n);
      for (int i = 0; status == ARES_SUCCESS && i < n; ++i) {
        a.records.emplace_back(inet_ntop(AF_INET6, &r[i].ip6addr, text, sizeof text));
        ttl = std::min<std::uint32_t>(ttl, static_cast<std::uint32_t>(std::max(0, r[i].ttl)));
      }
    } else {
      hostent* host = nullptr;
      const in_addr none{};
      status = ares_parse_ptr_reply(abuf, alen, &none, sizeof none, AF_INET, &host);
      if (status == ARES_SUCCESS && host) {
        if (host->h_name) a.records.emplace_back(host->h_name);
        for (char** alias = host->h_aliases; alias && *alias; ++alias)
          if (std::find(a.records.begin(), a.records.end(), *alias) == a.records.end())
            a.records.emplace_back(*alias);
      }
      if (host) ares_free_hostent(host);
    }
    if (ttl != UINT32_MAX) a.ttl = std::chrono::seconds(ttl);
    if (a.records.empty()) a.status = Answer::Status::none;
  }
  if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
    a.status = Answer::Status::none;
  } else if (status == ARES_ETIMEOUT) {
    a.status = Answer::Status::timeout;
    a.error = "timed out";
  } else if (status != ARES_SUCCESS) {
    a.status = Answer::Status::error;
    a.error = ares_strerror(status);
  }
  Resolver& self = c.resolver;
  auto node = self.waiting_.extract(p->key);
  if (node.empty()) return;
  ++self.answering_;
  for (auto& done : node.mapped()) done(a);
  --self.answering_;
}

}  // namespace geomx::proxy
