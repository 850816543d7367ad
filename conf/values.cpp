// Diagnostics, and the value syntaxes the config shares with the command
// line and the admin endpoint: durations, endpoints, country codes.
#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "conf/loader.hpp"
#include "geo/sources.hpp"

namespace geomx::conf {
namespace {

constexpr std::string_view iso_3166 =
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR "
    "BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ "
    "EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW "
    "GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY "
    "KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV "
    "MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY "
    "QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG "
    "TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM "
    "ZW "
    // Not ISO 3166-1, but what geo databases put in the country field.
    "EU AP XK A1 A2 A3 ZZ";

[[noreturn]] void file_error(const std::string& path, std::string message) {
  std::vector<Diagnostic> diagnostics;
  diagnostics.push_back(Diagnostic{Position{path, 0, 0}, std::string(), std::move(message)});
  throw ConfigError(std::move(diagnostics));
}

}  // namespace

std::string read_config_file(const std::string& path) {
  try {
    return geo::read_input_file(path, std::uint64_t{16} << 20);
  } catch (const geo::LoadError& e) {
    std::string message = e.what();
    if (message.starts_with(path + ": ")) message.erase(0, path.size() + 2);
    file_error(path, std::move(message));
  }
}

std::string Diagnostic::to_string() const {
  if (where.line == 0) return fmt::format("{}: {}", where.file, message);
  return fmt::format("{}:{}:{}: {}: {}", where.file, where.line, where.column, path, message);
}

ConfigError::ConfigError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error([&] {
        std::string s;
        for (const auto& d : diagnostics) {
          if (!s.empty()) s += '\n';
          s += d.to_string();
        }
        return s;
      }()),
      diagnostics_(std::move(diagnostics)) {}

void sort_diagnostics(std::vector<Diagnostic>& diagnostics) {
  std::stable_sort(diagnostics.begin(), diagnostics.end(), [](const auto& a, const auto& b) {
    return std::tie(a.where.file, a.where.line, a.where.column) <
           std::tie(b.where.file, b.where.line, b.where.column);
  });
}

Duration parse_duration(std::string_view text) {
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  const std::pair<std::string_view, std::uint64_t> units[] = {
      {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}};
  if (ec == std::errc() && end != text.data() && n <= 100'000'000)
    for (auto [name, ms] : units)
      if (unit == name) return Duration(static_cast<std::int64_t>(n * ms));
  throw std::invalid_argument(fmt::format(
      "\"{}\" is not a duration: a whole number with a unit, ms, s, m, h or d (e.g. \"20s\")",
      text));
}

std::string format_duration(Duration d) {
  const auto ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 86'400'000 == 0) return fmt::format("{}d", ms / 86'400'000);
  if (ms % 3'600'000 == 0) return fmt::format("{}h", ms / 3'600'000);
  if (ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
  if (ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

Endpoint parse_endpoint(std::string_view text) {
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find("]:");
    if (close == std::string_view::npos)
      throw std::invalid_argument(fmt::format("\"{}\" is not [IPv6]:port", text));
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      throw std::invalid_argument(fmt::format("\"{}\" has no port (address:port)", text));
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      throw std::invalid_argument(
          fmt::format("\"{}\": write IPv6 addresses in brackets, e.g. [::1]:25", text));
  }
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || end != port.data() + port.size() || port.empty() || p > 65535)
    throw std::invalid_argument(fmt::format("\"{}\": port must be 0-65535", text));
  auto address = geo::try_parse_address(host);
  if (!address)
    throw std::invalid_argument(fmt::format(
        "\"{}\": \"{}\" is not an IP address (geomx does not resolve host names)", text, host));
  return {*address, static_cast<std::uint16_t>(p)};
}

bool is_country_code(geo::Country c) {
  for (std::size_t i = 0; i + 2 <= iso_3166.size(); i += 3)
    if (iso_3166.substr(i, 2) == c.code()) return true;
  return false;
}

}  // namespace geomx::conf

namespace geomx::conf {
namespace {

// A number of a filter octet, 0-255, all of `text`.
unsigned octet_number(std::string_view text, std::string_view site) {
  unsigned v = 256;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || v > 255)
    throw std::invalid_argument(
        fmt::format("\"{}\": \"{}\" is not a reply octet (0-255)", site, text));
  return v;
}

// One octet of a filter: "2", or "[2..11]", "[1;3;5..7]".
std::bitset<256> octet_set(std::string_view text, std::string_view site) {
  std::bitset<256> set;
  if (text.size() < 2 || text.front() != '[' || text.back() != ']') {
    set.set(octet_number(text, site));
    return set;
  }
  text = text.substr(1, text.size() - 2);
  while (true) {
    const auto semi = text.find(';');
    const auto item = text.substr(0, semi);
    const auto dots = item.find("..");
    const unsigned lo = octet_number(item.substr(0, dots), site);
    const unsigned hi =
        dots == std::string_view::npos ? lo : octet_number(item.substr(dots + 2), site);
    if (hi < lo)
      throw std::invalid_argument(fmt::format("\"{}\": the range {} is backwards", site, item));
    for (unsigned v = lo; v <= hi; ++v) set.set(v);
    if (semi == std::string_view::npos) break;
    text = text.substr(semi + 1);
  }
  return set;
}

}  // namespace

DnsblSite parse_dnsbl_site(std::string_view text) {
  DnsblSite site;
  site.text = std::string(text);
  std::string_view rest = text;
  if (const auto star = rest.rfind('*'); star != std::string_view::npos) {
    const auto w = rest.substr(star + 1);
    const auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), site.weight);
    if (ec != std::errc() || end != w.data() + w.size() || w.empty() || site.weight < -1000 ||
        site.weight > 1000)
      throw std::invalid_argument(
          fmt::format("\"{}\": the weight after '*' must be a whole number, -1000 to 1000", text));
    rest = rest.substr(0, star);
  }
  const auto eq = rest.find('=');
  site.domain = std::string(rest.substr(0, eq));
  // The query name adds 64 octets for an IPv6 client (DNS names end at 253).
  if (site.domain.empty() || site.domain.size() > 189 || site.domain.front() == '.' ||
      site.domain.back() == '.' || site.domain.find("..") != std::string::npos ||
      !std::all_of(site.domain.begin(), site.domain.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_';
      }))
    throw std::invalid_argument(
        fmt::format("\"{}\": \"{}\" is not a DNS zone (letters, digits, '-', '_' and inner dots)",
                    text, site.domain));
  for (std::string_view labels = site.domain; !labels.empty();) {
    const auto dot = labels.find('.');
    if (labels.substr(0, dot).size() > 63)
      throw std::invalid_argument(
          fmt::format("\"{}\": a label of \"{}\" is longer than 63 octets", text, site.domain));
    labels = dot == std::string_view::npos ? std::string_view() : labels.substr(dot + 1);
  }
  if (eq == std::string_view::npos) return site;
  std::string_view filter = rest.substr(eq + 1);
  site.filtered = true;
  for (int i = 0; i < 4; ++i) {
    // An octet's set may hold dots of its own ("[2..11]"): split outside brackets.
    std::size_t end = 0;
    for (int depth = 0; end < filter.size(); ++end) {
      if (filter[end] == '[') ++depth;
      if (filter[end] == ']') --depth;
      if (filter[end] == '.' && depth == 0) break;
    }
    if ((end == filter.size()) != (i == 3))
      throw std::invalid_argument(
          fmt::format("\"{}\": the filter after '=' is a reply address of four octets, e.g. "
                      "127.0.0.[2..11]",
                      text));
    site.octets[i] = octet_set(filter.substr(0, end), text);
    filter = end == filter.size() ? std::string_view() : filter.substr(end + 1);
  }
  return site;
}

}  // namespace geomx::conf
