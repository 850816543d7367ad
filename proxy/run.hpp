#pragma once
// `geomx run -c FILE`: the proxy in the foreground, logging to stderr;
// `geomx reload -c FILE`: asks the running one to reload.
#include <CLI/CLI.hpp>

#include "proxy/geo_tools.hpp"

namespace geomx::proxy {

void add_run_command(CLI::App& app, Action& action);

}  // namespace geomx::proxy
