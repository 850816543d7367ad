// libFuzzer target for the PROXY header parser. Each input is fed as the
// bytes arrive over a socket: in chunks whose sizes come from the input's
// first byte, re-parsing everything so far after each chunk, and must give
// the same answer as parsing it whole. Built with clang (tests/fuzz/run.sh)
// for fuzzing, and with a replay main() (GEOMX_FUZZ_REPLAY) so that the test
// suite runs the corpus under ASan+UBSan.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "proxy/proxy_protocol.hpp"

using namespace geomx::proxy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto mode = static_cast<geomx::conf::ProxyProtocol>(1 + data[0] % 3);  // v1, v2, any
  const std::size_t step = 1 + data[0] / 3 % 17;
  const std::span<const std::uint8_t> input(data + 1, size - 1);
  const ParseResult whole = parse_proxy_header(input, mode);
  ParseResult r;
  for (std::size_t have = std::min(step, input.size());;
       have = std::min(have + step, input.size())) {
    r = parse_proxy_header(input.first(have), mode);
    if (r.status != ParseStatus::incomplete || have == input.size()) break;
  }
  // Fragmentation never changes the outcome; a complete header lies inside the input.
  if (r.status != whole.status) std::abort();
  if (r.status == ParseStatus::complete &&
      (r.header.length != whole.header.length || r.header.length > input.size() ||
       r.header.length > max_proxy_header))
    std::abort();
  return 0;
}
