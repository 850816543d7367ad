// FileWatch against the real inotify: what a finished replacement reports,
// and what it must not (other files, a write still open).
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <boost/asio/io_context.hpp>

#include "daemon/watch.hpp"
#include "support/temp_dir.hpp"

namespace geomx::daemon {
namespace {

// Runs the io_context until `n` reports came, or 2 s.
std::vector<std::string> collect(boost::asio::io_context& io, std::vector<std::string>& seen,
                                 std::size_t n) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (seen.size() < n && std::chrono::steady_clock::now() < end)
    io.run_for(std::chrono::milliseconds(20));
  return seen;
}

TEST_CASE("a file renamed over a watched one is reported; other names are not") {
  test::TempDir dir;
  const auto db = dir.write("country.mmdb", "old");
  boost::asio::io_context io;
  std::vector<std::string> seen;
  FileWatch watch(io, [&](const std::string& p) { seen.push_back(p); });
  CHECK(watch.watch({db}).empty());

  dir.write("unrelated.txt", "x");                        // closed after writing: not ours
  const auto tmp = dir.write("country.mmdb.tmp", "new");  // geoipupdate's way
  REQUIRE(std::rename(tmp.c_str(), db.c_str()) == 0);
  collect(io, seen, 1);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == db);  // as configured, not as the kernel names it
}

TEST_CASE("a write in place is reported when its writer closes the file, not before") {
  test::TempDir dir;
  const auto list = dir.write("blocked.txt", "192.0.2.0/24\n");
  boost::asio::io_context io;
  std::vector<std::string> seen;
  FileWatch watch(io, [&](const std::string& p) { seen.push_back(p); });
  REQUIRE(watch.watch({list}).empty());
  {
    std::ofstream out(list, std::ios::app);
    out << "198.51.100.0/24\n" << std::flush;
    collect(io, seen, 1);
    CHECK(seen.empty());  // written, still open
  }
  collect(io, seen, 1);
  CHECK(seen == std::vector<std::string>{list});
}

TEST_CASE("an empty set stops watching; a missing directory is reported") {
  test::TempDir dir;
  const auto db = dir.write("a.mmdb", "a");
  boost::asio::io_context io;
  std::vector<std::string> seen;
  FileWatch watch(io, [&](const std::string& p) { seen.push_back(p); });
  const auto problems = watch.watch({db, "/nonexistent-geomx-dir/x.mmdb"});
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("/nonexistent-geomx-dir") == 0);
  watch.watch({});
  dir.write("a.mmdb", "b");
  collect(io, seen, 1);
  CHECK(seen.empty());
}

}  // namespace
}  // namespace geomx::daemon
