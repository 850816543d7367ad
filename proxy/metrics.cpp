#include "proxy/metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "geomx/version.hpp"

namespace geomx::proxy {
namespace {

using policy::HealthBoard;
using policy::MemberHealth;

// A label value as the exposition format wants it.
std::string label_value(std::string_view v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += {'\\', c};
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out + '"';
}

double unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

// One sample per rendered label set: "name{labels} n".
void labelled(std::string& out, std::string_view name,
              const std::map<std::string, std::uint64_t>& samples) {
  for (const auto& [labels, n] : samples) out += fmt::format("{}{{{}}} {}\n", name, labels, n);
}

}  // namespace

void Metrics::session(const SessionRecord& r) {
  const std::string labels =
      fmt::format("listener={},rule={},action={},pool={},country={}", label_value(r.listener),
                  label_value(r.rule), label_value(r.action), label_value(r.pool),
                  label_value(r.country ? r.country->code() : "-"));
  std::lock_guard lock(mutex_);
  ++connections_[labels];
  ++ends_[std::string(to_string(r.end))];
  bytes_in_ += r.bytes_in;
  bytes_out_ += r.bytes_out;
  pregreet_ += r.pregreet;
  // The screen's outcome: "pass", "cached", or each test the client failed.
  for (std::string_view rest = r.screen; !rest.empty();) {
    const auto comma = rest.find(',');
    ++screen_[fmt::format("pool={},result={}", label_value(r.pool),
                          label_value(rest.substr(0, comma)))];
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
}

void Metrics::dns_site(std::string_view site, policy::SiteResult r, bool cached) {
  count_dns(fmt::format("check=\"dnsbl\",site={},result=\"{}\"", label_value(site), to_string(r)),
            cached);
}

void Metrics::dns_ptr(std::string_view result, bool cached) {
  count_dns(fmt::format("check=\"fcrdns\",site=\"\",result=\"{}\"", result), cached);
}

void Metrics::count_dns(const std::string& labels, bool cached) {
  std::lock_guard lock(mutex_);
  ++dns_[labels];
  ++(cached ? dns_cache_hits_ : dns_cache_misses_);
}

void Metrics::greet_cache(std::string_view result) {
  std::lock_guard lock(mutex_);
  auto it = greet_cache_.find(result);
  if (it == greet_cache_.end()) it = greet_cache_.emplace(std::string(result), 0).first;
  ++it->second;
}

void Metrics::dns_not_started() {
  std::lock_guard lock(mutex_);
  ++dns_not_started_;
}

bool Metrics::dns_refusal_due(std::string_view site, std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = dns_refusal_logged_.find(site);
  if (it == dns_refusal_logged_.end()) {
    dns_refusal_logged_.emplace(std::string(site), now);
    return true;
  }
  if (now - it->second < std::chrono::minutes(1)) return false;
  it->second = now;
  return true;
}

void Metrics::decision(std::chrono::nanoseconds took) {
  const double s = std::chrono::duration<double>(took).count();
  std::size_t i = 0;
  while (i < decision_buckets.size() && s > decision_buckets[i]) ++i;
  std::lock_guard lock(mutex_);
  ++decision_counts_[i];
  decision_sum_ += s;
}

void Metrics::config_loaded(std::uint64_t generation) {
  std::lock_guard lock(mutex_);
  generation_ = generation;
  loaded_at_ = unix_seconds(std::chrono::system_clock::now());
}

void Metrics::reloaded(bool ok) {
  std::lock_guard lock(mutex_);
  ++(ok ? reloads_ok_ : reloads_failed_);
}

namespace {

// The build, and the process as Prometheus's own client libraries describe
// it (process_*: the names every dashboard knows), read from /proc at the scrape.
void render_process(std::string& out) {
  header(out, "geomx_build_info", "gauge", "The running build: always 1, its version a label.");
  out += fmt::format("geomx_build_info{{version={}}} 1\n", label_value(version));
  rusage ru{};
  if (::getrusage(RUSAGE_SELF, &ru) == 0) {
    const auto secs = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
    header(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
    out += fmt::format("process_cpu_seconds_total {:.3f}\n", secs(ru.ru_utime) + secs(ru.ru_stime));
  }
  std::ifstream statm("/proc/self/statm");
  std::uint64_t pages_total = 0, pages_resident = 0;
  if (statm >> pages_total >> pages_resident) {
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    header(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    out += fmt::format("process_resident_memory_bytes {}\n", pages_resident * page);
    header(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    out += fmt::format("process_virtual_memory_bytes {}\n", pages_total * page);
  }
  std::error_code ec;
  std::size_t fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++fds;
  if (!ec) {
    header(out, "process_open_fds", "gauge", "Open file descriptors.");
    out += fmt::format("process_open_fds {}\n", fds);
  }
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    header(out, "process_max_fds", "gauge", "The open-file limit (RLIMIT_NOFILE, soft).");
    out += fmt::format("process_max_fds {}\n", nofile.rlim_cur);
  }
  // The start: /proc/self/stat's starttime (field 22, clock ticks after
  // boot) plus /proc/stat's btime.
  std::ifstream self_stat("/proc/self/stat"), stat("/proc/stat");
  const std::string line{std::istreambuf_iterator<char>(self_stat), {}};
  std::uint64_t ticks = 0, btime = 0;
  bool have_ticks = false;
  // Fields after the command's ")": field 3 (state) first, starttime the 22nd.
  if (const auto rp = line.rfind(')'); rp != std::string::npos) {
    std::size_t at = rp + 1;
    for (int field = 2; field < 22 && at != std::string::npos; ++field)
      at = line.find_first_not_of(' ', line.find(' ', at));
    if (at != std::string::npos) {
      const auto [p, ec] = std::from_chars(line.data() + at, line.data() + line.size(), ticks);
      have_ticks = ec == std::errc() && p != line.data() + at;
    }
  }
  for (std::string key; stat >> key;)
    if (key == "btime") {
      stat >> btime;
      break;
    }
  if (have_ticks && btime > 0) {
    header(out, "process_start_time_seconds", "gauge", "When the process started (unix seconds).");
    out +=
        fmt::format("process_start_time_seconds {:.2f}\n",
                    static_cast<double>(btime) +
                        static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK)));
  }
}

}  // namespace

// The counters this object keeps, under its lock.
void Metrics::render_counters(std::string& out) const {
  {
    std::lock_guard lock(mutex_);
    header(out, "geomx_connections_total", "counter",
           "Finished connections by listener, rule, action, pool and country.");
    labelled(out, "geomx_connections_total", connections_);
    header(out, "geomx_connection_ends_total", "counter",
           "Finished connections by how they ended.");
    for (const auto& [end, n] : ends_)
      out += fmt::format("geomx_connection_ends_total{{end={}}} {}\n", label_value(end), n);
    const auto proxy_errors = ends_.find("proxy_header_error");
    header(out, "geomx_proxy_header_errors_total", "counter",
           "Connections closed for a malformed, late or missing PROXY header.");
    out += fmt::format("geomx_proxy_header_errors_total {}\n",
                       proxy_errors == ends_.end() ? 0 : proxy_errors->second);
    header(out, "geomx_pregreet_total", "counter", "Clients that talked before the greeting.");
    out += fmt::format("geomx_pregreet_total {}\n", pregreet_);
    header(out, "geomx_relayed_bytes_total", "counter",
           "Bytes from clients (in) and to clients (out).");
    out += fmt::format("geomx_relayed_bytes_total{{direction=\"in\"}} {}\n", bytes_in_);
    out += fmt::format("geomx_relayed_bytes_total{{direction=\"out\"}} {}\n", bytes_out_);
    header(out, "geomx_greet_cache_total", "counter",
           "Greet delays the greeting-pass cache decided: pass (skipped the delay), pregreet "
           "(refused at once).");
    for (const char* r : {"pass", "pregreet"}) {
      const auto it = greet_cache_.find(std::string_view(r));
      out += fmt::format("geomx_greet_cache_total{{result=\"{}\"}} {}\n", r,
                         it == greet_cache_.end() ? 0 : it->second);
    }
    if (!screen_.empty()) {
      header(out, "geomx_screen_total", "counter",
             "Sessions through a screen = \"smtp\" pool, by outcome: pass (handed off), cached "
             "(a pass within screen_ttl: relayed at once), unfinished (gone before MAIL), or "
             "each test failed (whatever its action).");
      labelled(out, "geomx_screen_total", screen_);
    }
    if (!dns_.empty() || dns_cache_hits_ || dns_not_started_) {
      header(out, "geomx_dns_answers_total", "counter",
             "DNS reputation answers per session: [dnsbl] sites and the PTR check, by result "
             "(listed, not_listed, refused: the list refuses this resolver, error, timeout; "
             "confirmed, unconfirmed).");
      labelled(out, "geomx_dns_answers_total", dns_);
      header(out, "geomx_dns_cache_total", "counter",
             "DNS answers from the cache (hit) or the wire (miss).");
      out += fmt::format("geomx_dns_cache_total{{result=\"hit\"}} {}\n", dns_cache_hits_);
      out += fmt::format("geomx_dns_cache_total{{result=\"miss\"}} {}\n", dns_cache_misses_);
      header(out, "geomx_dns_not_started_total", "counter",
             "DNS questions not asked: dns.max_in_flight were on the wire.");
      out += fmt::format("geomx_dns_not_started_total {}\n", dns_not_started_);
      header(out, "geomx_dns_in_flight", "gauge", "DNS questions on the wire now.");
      out += fmt::format("geomx_dns_in_flight {}\n", dns_in_flight.load());
    }
    header(out, "geomx_decision_seconds", "histogram",
           "Time of the policy decision (lookup, rules, balancer).");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < decision_buckets.size(); ++i) {
      cumulative += decision_counts_[i];
      out += fmt::format("geomx_decision_seconds_bucket{{le=\"{}\"}} {}\n", decision_buckets[i],
                         cumulative);
    }
    cumulative += decision_counts_.back();
    out += fmt::format("geomx_decision_seconds_bucket{{le=\"+Inf\"}} {}\n", cumulative);
    out += fmt::format("geomx_decision_seconds_sum {}\ngeomx_decision_seconds_count {}\n",
                       decision_sum_, cumulative);
    header(out, "geomx_config_generation", "gauge", "The loaded config's generation.");
    out += fmt::format("geomx_config_generation {}\n", generation_);
    header(out, "geomx_config_loaded_timestamp_seconds", "gauge",
           "When the loaded config was loaded (unix time).");
    out += fmt::format("geomx_config_loaded_timestamp_seconds {:.3f}\n", loaded_at_);
    header(out, "geomx_config_reloads_total", "counter",
           "Reloads (SIGHUP, POST /reload, geo.watch) by result; a failure keeps the old config.");
    out += fmt::format("geomx_config_reloads_total{{result=\"success\"}} {}\n", reloads_ok_);
    out += fmt::format("geomx_config_reloads_total{{result=\"failure\"}} {}\n", reloads_failed_);
  }
}

namespace {

// Per member: its health record as the board has it now.
void render_members(std::string& out, const HealthBoard& health) {
  const auto members = health.all();
  auto each = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
    header(out, name, type, help);
    for (const auto& m : members) {
      const auto v = value(*m);
      if (!v) continue;
      out += fmt::format("{}{{pool={},member={}}} {}\n", name, label_value(m->pool),
                         label_value(m->address.to_string()), *v);
    }
  };
  each("geomx_member_up", "gauge", "1 when the member is UP.",
       [](const MemberHealth& m) { return std::optional<int>(m.up.load() ? 1 : 0); });
  each("geomx_member_active_connections", "gauge",
       "Sessions at the member now (dialling or relayed).",
       [](const MemberHealth& m) { return std::optional<std::uint32_t>(m.active.load()); });
  each("geomx_member_checks_total", "counter", "Health probes run.",
       [](const MemberHealth& m) { return std::optional<std::uint64_t>(m.checks.load()); });
  each("geomx_member_check_failures_total", "counter", "Health probes failed.",
       [](const MemberHealth& m) { return std::optional<std::uint64_t>(m.check_failures.load()); });
  each("geomx_member_probe_local_errors_total", "counter",
       "Health probes this host could not make (out of descriptors, buffers or ports); not "
       "counted against the member.",
       [](const MemberHealth& m) { return std::optional<std::uint64_t>(m.local_errors.load()); });
  each("geomx_member_connect_failures_total", "counter", "Sessions that could not connect.",
       [](const MemberHealth& m) {
         return std::optional<std::uint64_t>(m.connect_failures.load());
       });
  each("geomx_member_probe_duration_seconds", "gauge", "Duration of the last health probe.",
       [](const MemberHealth& m) { return std::optional<double>(m.detail().last_probe_seconds); });
  each("geomx_member_last_change_timestamp_seconds", "gauge",
       "When the member last changed state (unix time; start if never).",
       [](const MemberHealth& m) {
         return std::optional<std::string>(
             fmt::format("{:.3f}", unix_seconds(m.detail().last_change)));
       });
  each("geomx_member_certificate_expiry_days", "gauge",
       "Days until the certificate seen by the STARTTLS probe expires.",
       [](const MemberHealth& m) { return m.detail().cert_days; });
}

}  // namespace

std::string Metrics::render(const policy::Snapshot& snapshot, const HealthBoard& health,
                            const Gauges& gauges) const {
  std::string out;
  render_counters(out);
  header(out, "geomx_active_connections", "gauge", "Connections open now.");
  out += fmt::format("geomx_active_connections {}\n", gauges.active_connections);
  header(out, "geomx_tarpitted_connections", "gauge",
         "Connections in a tarpit now (server.tarpit_max; not counted in max_connections).");
  out += fmt::format("geomx_tarpitted_connections {}\n", gauges.tarpitted_connections);
  if (gauges.store_up >= 0) {
    header(
        out, "geomx_store_up", "gauge",
        "1 while the fleet's store ([store], Redis) answers; 0: serving from this node's state.");
    out += fmt::format("geomx_store_up {}\n", gauges.store_up);
  }
  if (snapshot.config.greylist.enabled ||
      std::any_of(snapshot.config.listeners.begin(), snapshot.config.listeners.end(),
                  [](const conf::Listener& l) { return l.mode == conf::ListenerMode::policy; })) {
    header(out, "geomx_policy_requests_total", "counter",
           "Policy listener requests by result: greylisted (new triplet), early (retried before "
           "the delay), passed, auto_allowed, skipped (greylist.skip), blocked, dunno (not "
           "greylisted: another stage or greylisting off), store_error (no answer in "
           "store.timeout: let through).");
    for (std::size_t i = 0; i < policy_results; ++i)
      out += fmt::format("geomx_policy_requests_total{{result=\"{}\"}} {}\n",
                         to_string(static_cast<PolicyResult>(i)),
                         policy_[i].load(std::memory_order_relaxed));
    header(out, "geomx_policy_errors_total", "counter",
           "Policy connections closed: a malformed request, or a peer outside trusted_proxies.");
    out += fmt::format("geomx_policy_errors_total{{reason=\"malformed\"}} {}\n",
                       policy_malformed_.load());
    out += fmt::format("geomx_policy_errors_total{{reason=\"untrusted\"}} {}\n",
                       policy_refused_.load());
    if (gauges.greylist_records) {
      header(out, "geomx_greylist_records", "gauge",
             "Greylist triplets and client networks this node's store holds.");
      out += fmt::format("geomx_greylist_records {}\n", *gauges.greylist_records);
      header(out, "geomx_greylist_write_errors_total", "counter",
             "Greylist journal writes and compactions that failed (a full disk): those records "
             "are in memory only until a restart folds them into the snapshot.");
      out += fmt::format("geomx_greylist_write_errors_total {}\n", gauges.greylist_write_errors);
    }
  }
  render_process(out);
  header(out, "geomx_geo_intervals", "gauge", "Intervals in the compiled geo table.");
  out += fmt::format("geomx_geo_intervals{{family=\"ipv4\"}} {}\n",
                     snapshot.table.interval_count(geo::Family::v4));
  out += fmt::format("geomx_geo_intervals{{family=\"ipv6\"}} {}\n",
                     snapshot.table.interval_count(geo::Family::v6));

  render_members(out, health);
  return out;
}

}  // namespace geomx::proxy
