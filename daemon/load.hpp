#pragma once
// Building a snapshot from files: the config file, then the data files it
// names (conf/), compiled (policy/). For start, reload and the CLI.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "conf/loader.hpp"
#include "policy/snapshot.hpp"

namespace geomx::daemon {

// The snapshot, or every diagnostic (the config's and those of every file
// it names), sorted.
struct Loaded {
  std::shared_ptr<const policy::Snapshot> snapshot;
  std::vector<conf::Diagnostic> errors;
};

// Reads, validates and builds the config file at `path` (server.hostname
// defaults to the machine's name).
Loaded load_snapshot(const std::string& path);

// What `run` would refuse at start that the config alone does not show:
// server.user or server.group unknown to this system, the admin endpoint's
// certificate or key missing or unreadable. `check` reports the same.
std::vector<std::string> preflight(const conf::Config& config);

// The snapshot a reload would swap in: from the config file again, or from
// the running config (geo.watch: only the data changed). A data file
// written to while it was read is read again, a little later, up to a few
// times. Blocks its thread (the loader's).
Loaded build_next(const std::string& path, const std::optional<conf::Config>& running);

}  // namespace geomx::daemon
