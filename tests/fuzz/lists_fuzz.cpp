// libFuzzer target for the text files geomx reads besides its config: CIDR
// lists and range files (tor-geoipdb, CSV). The first byte picks the parser.
// A list's ranges are sorted-safe (aggregating them never fails); a range
// file's spans are ordered and apart.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "geo/range.hpp"
#include "geo/sources.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace geomx::geo;
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (data[0] % 2 == 0) {
      RangeSet set = parse_cidr_list(text, "fuzz.txt");
      (void)aggregate(set);
    } else {
      const GeoData d = parse_range_file(text, "fuzz.csv");
      for (std::size_t i = 1; i < d.v4.size(); ++i)
        if (!(d.v4[i - 1].range.last < d.v4[i].range.first)) std::abort();
      for (std::size_t i = 1; i < d.v6.size(); ++i)
        if (!(d.v6[i - 1].range.last < d.v6[i].range.first)) std::abort();
    }
  } catch (const LoadError&) {
  }
  return 0;
}
