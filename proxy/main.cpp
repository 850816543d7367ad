#include <cstdio>
#include <exception>
#include <iostream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "geomx/version.hpp"
#include "proxy/config_tools.hpp"
#include "proxy/geo_tools.hpp"
#include "proxy/run.hpp"

int main(int argc, char** argv) {
  CLI::App app{"geomx: geo-aware SMTP connection router and policy proxy"};
  app.set_version_flag("--version", fmt::format("geomx {}", geomx::version));
  app.require_subcommand(1);
  geomx::proxy::Action action;
  geomx::proxy::add_geo_tools(app, action);
  geomx::proxy::add_config_tools(app, action);
  geomx::proxy::add_run_command(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    const int status = action();
    std::cout.flush();
    if (!std::cout) throw std::runtime_error("writing the output failed");
    return status;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "geomx: {}\n", e.what());
    return 1;
  }
}
