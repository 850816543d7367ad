#pragma once
// `geomx run -c FILE`: the daemon in the foreground, logging to stderr; and
// the commands that ask the running one through its admin endpoint
// (`geomx reload`, `geomx top`, `geomx block`).
#include <CLI/CLI.hpp>

#include "cli/geo_tools.hpp"

namespace geomx::cli {

void add_run_command(CLI::App& app, Command& command);
void add_daemon_commands(CLI::App& app, Command& command);

}  // namespace geomx::cli
