#pragma once
// `geomx run -c FILE`: the proxy in the foreground, logging to stderr.
#include <CLI/CLI.hpp>

#include "proxy/geo_tools.hpp"

namespace geomx::proxy {

void add_run_command(CLI::App& app, Action& action);

}  // namespace geomx::proxy
