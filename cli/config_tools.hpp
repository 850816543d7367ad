#pragma once
// `geomx check -c FILE` (validate everything a reload would load, like
// `nginx -t`) and `geomx explain -c FILE IP...` (what the policy decides).
#include <CLI/CLI.hpp>

#include "cli/geo_tools.hpp"
#include "policy/snapshot.hpp"

namespace geomx::cli {

void add_config_tools(CLI::App& app, Command& command);

// Each diagnostic on a line of its own, then "geomx: PATH: N errors" (stderr).
void print_errors(const std::string& path, const std::vector<conf::Diagnostic>& errors);

// daemon::load_snapshot, printing the diagnostics to stderr and returning
// null on failure.
std::shared_ptr<const policy::Snapshot> load_snapshot(const std::string& path);

}  // namespace geomx::cli
