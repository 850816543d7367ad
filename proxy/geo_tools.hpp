#pragma once
// The operator's geo tools: `geomx lookup`, `geomx cidr aggregate` and
// `geomx export`. Each registers its subcommand and returns the action to run
// once the command line has been parsed.
#include <functional>

#include <CLI/CLI.hpp>

namespace geomx::proxy {

using Action = std::function<int()>;

void add_geo_tools(CLI::App& app, Action& action);

}  // namespace geomx::proxy
