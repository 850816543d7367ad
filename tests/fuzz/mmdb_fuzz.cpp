// libFuzzer target for the .mmdb loader: the bytes are written to a file (in
// /dev/shm when it is there) and loaded as geomx loads a database; a corrupt
// one is refused with LoadError, never a crash. Seeded with real files
// (tests/fuzz/corpus/mmdb: written by MaxMind's writer) that the fuzzer
// mutates. A loaded one compiles into a table.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "geo/sources.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace geomx::geo;
  static const std::string path = [] {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return std::string(dir) + "/geomx-mmdb-fuzz-" + std::to_string(getpid()) + ".mmdb";
  }();
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  } else {
    return 0;
  }
  try {
    (void)build_table({path});  // load_mmdb, then the table
  } catch (const LoadError&) {
  }
  return 0;
}
