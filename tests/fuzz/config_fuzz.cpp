// libFuzzer target for the TOML config loader: any bytes either give a
// config that holds what the loader promises (a listener, rules ending in a
// catch-all, every rule's pool known) or diagnostics; never a crash, a hang
// or a config with diagnostics.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "conf/loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace geomx::conf;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<Diagnostic> diagnostics;
  const Config c = parse_config(text, "/fuzz/geomx.toml", {"fuzz.test"}, diagnostics);
  if (!diagnostics.empty()) return 0;
  if (c.listeners.empty() || c.rules.empty() || !c.rules.back().match.empty()) std::abort();
  for (const auto& r : c.rules)
    if (r.action == Action::route && !c.find_pool(r.pool)) std::abort();
  return 0;
}
