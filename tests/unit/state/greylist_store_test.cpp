#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "state/greylist.hpp"
#include "support/temp_dir.hpp"

using namespace geomx;
using policy::GreyKey;
using policy::GreyRecord;

namespace {

GreyKey key(unsigned i) {
  return policy::Triplet{"n", std::to_string(i), "r"}.key();
}

std::optional<GreyRecord> found(state::GreyStore& s, const GreyKey& k) {
  std::optional<GreyRecord> out;
  s.get(k, [&](auto v) { out = v; });
  return out;
}

off_t size_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

}  // namespace

TEST_CASE("this node's greylist store keeps records across a restart, and forgets expired ones") {
  test::TempDir dir;
  std::int64_t now = 1'000'000;
  {
    state::LocalGreyStore s(dir.root().string(), 1000, [&] { return now; });
    CHECK(s.immediate());
    s.put(key(1), GreyRecord{now, now, 0}, std::chrono::seconds(100));
    s.put(key(2), GreyRecord{now, now, 0}, std::chrono::seconds(10));
    s.put(key(1), GreyRecord{now, now + 5, 1}, std::chrono::seconds(100));  // the later wins
    CHECK(found(s, key(1)) == GreyRecord{now, now + 5, 1});
    CHECK(s.size() == 2u);
  }  // no flush at the end: each put is written as it is made
  now += 20;
  state::LocalGreyStore again(dir.root().string(), 1000, [&] { return now; });
  CHECK(again.problems().empty());
  CHECK(found(again, key(1)) == GreyRecord{now - 20, now - 15, 1});
  CHECK_FALSE(found(again, key(2)));  // its 10 s are over
  CHECK(again.size() == 1u);
}

TEST_CASE("the journal is folded into a snapshot as it grows; nothing is lost") {
  test::TempDir dir;
  std::int64_t now = 1'000'000;
  {
    state::LocalGreyStore s(dir.root().string(), 1'000'000, [&] { return now; });
    // 100,000 records over and over: the journal passes its bound and is compacted.
    for (unsigned round = 0; round < 3; ++round)
      for (unsigned i = 0; i < 50'000; ++i)
        s.put(key(i), GreyRecord{now, now, round}, std::chrono::seconds(3600));
    s.settle();
    CHECK(size_of(dir.path("greylist.db")) > 0);
    CHECK(size_of(dir.path("greylist.journal")) < 100'001 * 32);
  }
  state::LocalGreyStore again(dir.root().string(), 1'000'000, [&] { return now; });
  CHECK(again.size() == 50'000u);
  CHECK(found(again, key(49'999)) == GreyRecord{now, now, 2});
}

TEST_CASE("a torn last record is skipped; a file that is not ours is set aside") {
  test::TempDir dir;
  std::int64_t now = 1'000'000;
  {
    state::LocalGreyStore s(dir.root().string(), 1000, [&] { return now; });
    s.put(key(1), GreyRecord{now, now, 0}, std::chrono::seconds(100));
  }
  {
    std::ofstream j(dir.path("greylist.journal"), std::ios::app | std::ios::binary);
    j << "half a record";
  }
  {
    state::LocalGreyStore s(dir.root().string(), 1000, [&] { return now; });
    REQUIRE(s.problems().size() == 1);
    CHECK(s.problems()[0].find("torn record") != std::string::npos);
    CHECK(found(s, key(1)));
    s.put(key(2), GreyRecord{now, now, 0}, std::chrono::seconds(100));  // after the cut: aligned
  }
  {
    state::LocalGreyStore s(dir.root().string(), 1000, [&] { return now; });
    CHECK(s.problems().empty());
    CHECK(found(s, key(2)) == GreyRecord{now, now, 0});
  }
  {
    std::ofstream db(dir.path("greylist.db"), std::ios::binary);
    db << "[block]\nsomething else entirely\n";
  }
  state::LocalGreyStore s(dir.root().string(), 1000, [&] { return now; });
  REQUIRE(s.problems().size() == 1);  // the torn tail was cut at the last open
  CHECK(s.problems()[0].find("not a geomx greylist file") != std::string::npos);
  CHECK(found(s, key(1)));  // the journal still had it
}

TEST_CASE("a compaction cut short (greylist.journal.old left) is finished at the next start") {
  test::TempDir dir;
  std::int64_t now = 1'000'000;
  const auto root = dir.root().string();
  {
    state::LocalGreyStore s(root, 1000, [&] { return now; });
    s.put(key(1), GreyRecord{now, now, 0}, std::chrono::seconds(100));
  }
  // As a crash between setting the journal aside and the snapshot leaves it.
  REQUIRE(::rename(dir.path("greylist.journal").c_str(),
                   dir.path("greylist.journal.old").c_str()) == 0);
  {
    state::LocalGreyStore s(root, 1000, [&] { return now; });
    REQUIRE(s.problems().size() == 1);
    CHECK(s.problems()[0].find("unfinished compaction completed") != std::string::npos);
    s.put(key(2), GreyRecord{now, now, 1}, std::chrono::seconds(100));
  }
  CHECK(size_of(dir.path("greylist.journal.old")) == -1);
  state::LocalGreyStore again(root, 1000, [&] { return now; });
  CHECK(again.problems().empty());
  CHECK(again.size() == 2u);
  CHECK(found(again, key(1)));
  CHECK(found(again, key(2)) == GreyRecord{now, now, 1});
}

TEST_CASE("a file that cannot be read is an error, not an empty store") {
  if (::geteuid() == 0) return;  // root reads anything
  test::TempDir dir;
  { std::ofstream(dir.path("greylist.db")) << "x"; }
  ::chmod((dir.path("greylist.db")).c_str(), 0);
  CHECK_THROWS_AS(state::LocalGreyStore(dir.root().string(), 1000, [] { return std::int64_t{1}; }),
                  std::runtime_error);
}

TEST_CASE("a directory where the snapshot should be is an error") {
  test::TempDir dir;
  ::mkdir((dir.path("greylist.db")).c_str(), 0755);
  CHECK_THROWS_AS(state::LocalGreyStore(dir.root().string(), 1000, [] { return std::int64_t{1}; }),
                  std::runtime_error);
}

TEST_CASE("past capacity the expired go, then the least recently seen tenth") {
  std::int64_t now = 1'000'000;
  state::LocalGreyStore s("", 100, [&] { return now; });
  for (unsigned i = 0; i < 100; ++i)
    s.put(key(i), GreyRecord{now, now + i, 0}, std::chrono::seconds(i < 5 ? 1 : 3600));
  now += 2;  // the first five have expired
  s.put(key(1000), GreyRecord{now, now + 1000, 0}, std::chrono::seconds(3600));
  // 95 left after the expired went: over 90 %, so the least recently seen tenth went too.
  CHECK(s.size() <= 90u);
  CHECK(s.size() >= 80u);
  CHECK_FALSE(found(s, key(0)));
  CHECK_FALSE(found(s, key(5)));
  CHECK(found(s, key(99)));
  CHECK(found(s, key(1000)));
}
