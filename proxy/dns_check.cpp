#include "proxy/dns_check.hpp"

#include <arpa/inet.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/asio/post.hpp>

namespace geomx::proxy {
namespace {

std::string_view type_word(Resolver::Type t) {
  switch (t) {
    case Resolver::Type::a:
      return "a";
    case Resolver::Type::aaaa:
      return "aaaa";
    case Resolver::Type::ptr:
      return "ptr";
  }
  return "?";
}

// The cache keeps an answer as its records, space-separated ("": none).
Resolver::Answer decode(std::string_view v) {
  Resolver::Answer a;
  a.status = v.empty() ? Resolver::Answer::Status::none : Resolver::Answer::Status::found;
  while (!v.empty()) {
    const auto sp = v.find(' ');
    a.records.emplace_back(v.substr(0, sp));
    v = sp == std::string_view::npos ? std::string_view() : v.substr(sp + 1);
  }
  return a;
}

void append_to(std::string& list, std::string_view item) {
  if (!list.empty()) list += ',';
  list += item;
}

}  // namespace

DnsCheck::DnsCheck(const asio::any_io_executor& executor,
                   std::shared_ptr<const policy::Snapshot> snapshot, ServerState& state,
                   const geo::Address& client)
    : executor_(executor),
      thread_(std::this_thread::get_id()),
      snap_(std::move(snapshot)),
      state_(state),
      client_(client),
      changed_(executor) {}

void DnsCheck::start(std::uint8_t lookups) {
  const auto& sites = snap_->config.dnsbl_sites;
  rep_.dnsbl_known = !(lookups & policy::needs_dnsbl) || sites.empty();
  rep_.fcrdns_known = !(lookups & policy::needs_fcrdns);
  if (!rep_.dnsbl_known) {
    sites_.resize(sites.size());
    sites_left_ = sites.size();
    for (std::size_t i = 0; i < sites.size(); ++i)
      ask(policy::dnsbl_name(client_, sites[i].domain), Resolver::Type::a,
          [i](DnsCheck& self, const Answer& a, bool cached) { self.site_answered(i, a, cached); });
  }
  if (!rep_.fcrdns_known)
    ask(policy::reverse_name(client_), Resolver::Type::ptr,
        [](DnsCheck& self, const Answer& a, bool cached) { self.ptr_answered(a, cached); });
}

void DnsCheck::ask(std::string name, Resolver::Type type, Done done) {
  auto key = fmt::format("dns:{}:{}", type_word(type), name);
  auto on_thread = [weak = weak_from_this(), name = std::move(name), key, type,
                    done = std::move(done)](std::optional<std::string> cached) {
    const auto self = weak.lock();
    if (!self) return;
    if (cached) return done(*self, decode(*cached), true);
    // Not cached: the wire, and the answer into the cache (errors are not kept).
    const conf::Dns& dns = self->snap_->config.dns;
    auto& state = self->state_;
    const bool started =
        Resolver::of(self->executor_)
            .query(self->executor_, dns, state.metrics.dns_in_flight, name, type,
                   [weak, key, &state, min = dns.min_ttl, max = dns.max_ttl, done](Answer a) {
                     if (a.status == Answer::Status::found || a.status == Answer::Status::none) {
                       const auto ttl = std::clamp<conf::Duration>(a.ttl, min, max);
                       state.cache.load()->put(key, fmt::format("{}", fmt::join(a.records, " ")),
                                               ttl);
                     }
                     if (const auto self = weak.lock()) done(*self, a, false);
                   });
    if (!started) {
      state.metrics.dns_not_started();
      Answer a;
      a.error = "not asked: dns.max_in_flight questions on the wire";
      done(*self, a, false);
    }
  };
  // This node's cache answers at once, on this thread; the fleet's on the
  // store's thread, from which the answer comes back here.
  state_.cache.load()->get(key, [on_thread = std::move(on_thread), ex = executor_,
                                 thread = thread_](std::optional<std::string> v) mutable {
    if (std::this_thread::get_id() == thread)
      on_thread(std::move(v));
    else
      asio::post(ex, [on_thread = std::move(on_thread), v = std::move(v)]() mutable {
        on_thread(std::move(v));
      });
  });
}

void DnsCheck::site_answered(std::size_t i, const Answer& a, bool cached) {
  if (sites_[i]) return;  // given up on at the deadline
  const conf::DnsblSite& site = snap_->config.dnsbl_sites[i];
  policy::SiteResult r = policy::SiteResult::error;
  switch (a.status) {
    case Answer::Status::found: {
      std::vector<std::uint32_t> replies;
      for (const auto& text : a.records) {
        in_addr addr{};
        if (inet_pton(AF_INET, text.c_str(), &addr) == 1) replies.push_back(ntohl(addr.s_addr));
      }
      r = policy::judge(site, replies);
      break;
    }
    case Answer::Status::none:
      r = policy::SiteResult::not_listed;
      break;
    case Answer::Status::timeout:
      r = policy::SiteResult::timeout;
      break;
    case Answer::Status::error:
      break;
  }
  sites_[i] = r;
  if (r == policy::SiteResult::listed) rep_.score += site.weight;
  state_.metrics.dns_site(site.text, r, cached);
  if (r == policy::SiteResult::refused && state_.metrics.dns_refusal_due(site.domain, Clock::now()))
    state_.log.event("dnsbl_refused",
                     {{"site", site.domain},
                      {"reply", fmt::format("{}", fmt::join(a.records, ","))},
                      {"error",
                       "the list refuses this resolver (a reply in 127.255.255.0/24 or "
                       "127.0.0.255): its answers count 0 until a resolver of your own "
                       "asks it ([dns] servers)"}});
  if (--sites_left_ == 0) rep_.dnsbl_known = true;
  changed();
}

void DnsCheck::ptr_answered(const Answer& a, bool cached) {
  if (rep_.fcrdns_known) return;
  ptr_cached_ = cached;
  if (a.status != Answer::Status::found)
    return ptr_done(false,
                    a.status == Answer::Status::none      ? "no_ptr"
                    : a.status == Answer::Status::timeout ? "timeout"
                                                          : "error",
                    cached);
  // Postfix's smtpd tries the names a PTR gives; a few are enough.
  const std::size_t names = std::min<std::size_t>(a.records.size(), 4);
  forward_left_ = names;
  const auto type = client_.is_v4() ? Resolver::Type::a : Resolver::Type::aaaa;
  for (std::size_t i = 0; i < names; ++i)
    ask(a.records[i], type, [name = a.records[i]](DnsCheck& self, const Answer& fa, bool) {
      self.forward_answered(name, fa);
    });
}

void DnsCheck::forward_answered(const std::string& name, const Answer& a) {
  if (rep_.fcrdns_known) return;
  --forward_left_;
  if (a.status == Answer::Status::found)
    for (const auto& text : a.records)
      if (geo::try_parse_address(text) == client_) {
        ptr_ = name;
        return ptr_done(true, "confirmed", ptr_cached_);
      }
  if (forward_left_ == 0) ptr_done(false, "unconfirmed", ptr_cached_);
}

void DnsCheck::ptr_done(bool confirmed, std::string_view result, bool cached) {
  rep_.fcrdns_known = true;
  rep_.fcrdns = confirmed;
  if (!confirmed) ptr_ = "unknown";
  state_.metrics.dns_ptr(result, cached);
  changed();
}

asio::awaitable<void> DnsCheck::wait(std::uint8_t needs, Clock::time_point deadline) {
  const auto self = shared_from_this();
  auto known = [&] {
    return (!(needs & policy::needs_dnsbl) || rep_.dnsbl_known) &&
           (!(needs & policy::needs_fcrdns) || rep_.fcrdns_known);
  };
  while (!known() && Clock::now() < deadline) {
    changed_.expires_at(deadline);
    co_await changed_.async_wait(nothrow);
  }
  if ((needs & policy::needs_dnsbl) && !rep_.dnsbl_known) {
    for (std::size_t i = 0; i < sites_.size(); ++i)
      if (!sites_[i]) {
        sites_[i] = policy::SiteResult::timeout;
        state_.metrics.dns_site(snap_->config.dnsbl_sites[i].text, *sites_[i], false);
      }
    sites_left_ = 0;
    rep_.dnsbl_known = true;
  }
  if ((needs & policy::needs_fcrdns) && !rep_.fcrdns_known) ptr_done(false, "timeout", false);
}

void DnsCheck::describe(SessionRecord& r) const {
  r.dnsbl_sites.clear();
  r.dnsbl_timeout.clear();
  r.dnsbl_error.clear();
  if (!sites_.empty()) {
    r.dnsbl = rep_.score;
    for (std::size_t i = 0; i < sites_.size(); ++i) {
      if (!sites_[i]) continue;
      const auto& domain = snap_->config.dnsbl_sites[i].domain;
      switch (*sites_[i]) {
        case policy::SiteResult::listed:
          append_to(r.dnsbl_sites, domain);
          break;
        case policy::SiteResult::timeout:
          append_to(r.dnsbl_timeout, domain);
          break;
        case policy::SiteResult::refused:
        case policy::SiteResult::error:
          append_to(r.dnsbl_error, domain);
          break;
        case policy::SiteResult::not_listed:
          break;
      }
    }
  }
  r.ptr = ptr_;
}

}  // namespace geomx::proxy
