#pragma once
// A small snapshot for tests that need one: a range file that maps 127.x
// subnets to countries, two listeners, lists, rules and two pools, with
// server.state_dir in the test's directory.
#include <memory>
#include <string>

#include "conf/data.hpp"
#include "policy/snapshot.hpp"
#include "support/temp_dir.hpp"

namespace geomx::test {

inline std::shared_ptr<const policy::Snapshot> small_snapshot(const TempDir& dir,
                                                              const std::string& extra = "") {
  dir.write("ranges",
            "127.1.0.0,127.1.255.255,GB\n"
            "127.2.0.0,127.2.255.255,CN\n");
  const std::string text = "[server]\nstate_dir = \"" + dir.root().string() + "\"\n" + R"(
[geo]
databases = ["ranges"]
[[listener]]
name = "mx"
address = "127.0.0.1:0"
[lists.english]
countries = ["GB", "US"]
[pool.primary]
members = ["127.0.0.1:2501", "127.0.0.1:2502"]
[pool.quarantine]
members = ["127.0.0.1:2503"]
[[rule]]
name = "english"
if = { list = "english" }
pool = "primary"
[[rule]]
name = "rest"
pool = "quarantine"
)" + extra;
  auto config = conf::parse_config(text, dir.path("geomx.toml"), {"mx.test"});
  auto data = conf::load_data(config);
  return policy::build_snapshot(std::move(config), std::move(data));
}

}  // namespace geomx::test
