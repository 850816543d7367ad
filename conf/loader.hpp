#pragma once
// TOML -> validated Config. Every problem in a file is reported, each as
// FILE:LINE:COLUMN: key.path: message; a file with any error yields no Config.
#include <stdexcept>
#include <string>
#include <vector>

#include "conf/config.hpp"

namespace geomx::conf {

struct Diagnostic {
  // A constructor, not aggregate init: g++ 12 at -O3 warns (falsely) that
  // strings in aggregate-initialised temporaries may be used uninitialised.
  Diagnostic(Position where_, std::string path_, std::string message_)
      : where(std::move(where_)), path(std::move(path_)), message(std::move(message_)) {}
  Position where;
  std::string path;  // key path, e.g. pool.primary.members[1]
  std::string message;
  std::string to_string() const;
};

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<Diagnostic> diagnostics);
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

struct Defaults {
  std::string hostname;  // server.hostname when the file has none
};

// Throws ConfigError with every diagnostic of the file.
Config parse_config(std::string_view toml_text, const std::string& path, const Defaults& defaults);
Config load_config(const std::string& path, const Defaults& defaults);
// The same, collecting diagnostics instead of throwing; the Config is then
// partial (for `geomx check`, which goes on to check the files it names).
// A TOML syntax error ends parsing: only the first one is reported.
Config parse_config(std::string_view toml_text, const std::string& path, const Defaults& defaults,
                    std::vector<Diagnostic>& diagnostics);
std::string read_config_file(const std::string& path);        // throws ConfigError
void sort_diagnostics(std::vector<Diagnostic>& diagnostics);  // by file, line, column

// "500ms", "20s", "35m", "1h", "7d"; throws std::invalid_argument.
Duration parse_duration(std::string_view text);
std::string format_duration(Duration d);
// "1.2.3.4:25", "[2001:db8::1]:25"; throws std::invalid_argument.
Endpoint parse_endpoint(std::string_view text);
// ISO 3166-1 alpha-2, plus the codes geo databases use for special networks
// (EU, AP, XK, A1, A2, A3) and ZZ for addresses no database knows.
bool is_country_code(geo::Country c);

}  // namespace geomx::conf
