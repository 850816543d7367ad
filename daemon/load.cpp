#include "daemon/load.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "admin/tls.hpp"
#include "conf/data.hpp"
#include "daemon/privileges.hpp"

namespace geomx::daemon {
namespace {

using SystemClock = std::chrono::system_clock;

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

std::shared_ptr<const policy::Snapshot> build(conf::Config config) {
  auto data = conf::load_data(config);  // throws conf::ConfigError
  return policy::build_snapshot(std::move(config), std::move(data));
}

// A data file modified between `since` and `until` (the load): a writer may
// still be at it, and what was read may be half old, half new. A time
// stamp in the future (a copy from a host with a fast clock) is not that.
std::optional<std::string> written_during(const conf::Config& config, SystemClock::time_point since,
                                          SystemClock::time_point until) {
  for (const auto& file : conf::data_files(config)) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) continue;  // the load reported it if it mattered
    const auto mtime = SystemClock::time_point(std::chrono::duration_cast<SystemClock::duration>(
        std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
    if (mtime >= since && mtime <= until) return file;
  }
  return std::nullopt;
}

}  // namespace

Loaded load_snapshot(const std::string& path) {
  try {
    std::vector<conf::Diagnostic> errors;
    conf::Config config =
        conf::parse_config(conf::read_config_file(path), path, {host_name()}, errors);
    if (errors.empty()) return {build(std::move(config)), {}};
    conf::load_data(config, errors);  // and every file it names
    conf::sort_diagnostics(errors);
    return {nullptr, std::move(errors)};
  } catch (const conf::ConfigError& e) {
    return {nullptr, e.diagnostics()};
  }
}

Loaded build_next(const std::string& path, const std::optional<conf::Config>& running) {
  constexpr int attempts = 5;
  constexpr auto settle = std::chrono::milliseconds(300);
  for (int attempt = 1;; ++attempt) {
    // Timestamps are coarse (a clock tick): anything this recent may overlap.
    const auto since = SystemClock::now() - std::chrono::milliseconds(20);
    Loaded loaded;
    if (running) {
      try {
        loaded.snapshot = build(*running);
      } catch (const conf::ConfigError& e) {
        loaded.errors = e.diagnostics();
      }
    } else {
      loaded = load_snapshot(path);
    }
    if (!loaded.snapshot) return loaded;
    const auto busy = written_during(loaded.snapshot->config, since, SystemClock::now());
    if (!busy) return loaded;
    if (attempt == attempts) {
      loaded.errors.push_back({{*busy, 0, 0},
                               "geo",
                               fmt::format("still being written after {} attempts to read it; "
                                           "write a new file and rename it into place",
                                           attempts)});
      loaded.snapshot.reset();
      return loaded;
    }
    std::this_thread::sleep_for(settle);
  }
}

std::vector<std::string> preflight(const conf::Config& config) {
  std::vector<std::string> problems;
  if (auto p = identity_problem(config.server.process); !p.empty()) problems.push_back(p);
  if (const auto& path = config.admin.socket; !path.empty()) {
    struct stat st {};
    const auto dir = path.substr(0, path.rfind('/') + 1);
    if (::lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
      problems.push_back(
          fmt::format("admin socket {}: something else is there (not a socket)", path));
    else if (::stat(dir.empty() ? "." : dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      problems.push_back(fmt::format("admin socket {}: no directory {}", path, dir));
  }
  if (!config.admin.tls_cert.empty()) {
    try {
      admin::tls_context(config.admin.tls_cert, config.admin.tls_key);
    } catch (const std::exception& e) {
      problems.push_back(e.what());
    }
  }
  return problems;
}

}  // namespace geomx::daemon
