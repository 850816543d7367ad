#pragma once
// The operator's geo tools: `geomx lookup`, `geomx cidr aggregate` and
// `geomx export`. Each registers its subcommand and sets the command to run
// once the command line has been parsed.
#include <functional>

#include <CLI/CLI.hpp>

namespace geomx::cli {

using Command = std::function<int()>;  // what the parsed command line runs
// Where every subcommand's -c reads the config from when it is not given
// (the package's).
inline constexpr const char* default_config = "/etc/geomx/geomx.toml";

void add_geo_tools(CLI::App& app, Command& command);

}  // namespace geomx::cli
