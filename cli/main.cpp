#include <cstdio>
#include <exception>
#include <iostream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/config_tools.hpp"
#include "cli/geo_tools.hpp"
#include "cli/run.hpp"
#include "geomx/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"geomx: geo-aware SMTP connection router and policy proxy"};
  app.set_version_flag("--version", fmt::format("geomx {}", geomx::version));
  app.require_subcommand(1);
  geomx::cli::Command command;
  geomx::cli::add_geo_tools(app, command);
  geomx::cli::add_config_tools(app, command);
  geomx::cli::add_run_command(app, command);
  geomx::cli::add_daemon_commands(app, command);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error 2, as geomx(8) says
    // (CLI11's own codes, 105, 106, ..., mean nothing to a script).
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    const int status = command();
    std::cout.flush();
    if (!std::cout) throw std::runtime_error("writing the output failed");
    return status;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "geomx: {}\n", e.what());
    return 1;
  }
}
