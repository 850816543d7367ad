#include "geo/sources.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace geomx::geo {
namespace {

std::string read_file(const std::string& path) {
  return read_input_file(path, max_text_file);
}

std::string size_text(std::uint64_t bytes) {
  return bytes >= (1 << 20) ? fmt::format("{} MiB", bytes >> 20) : fmt::format("{} bytes", bytes);
}

std::string_view kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

void check_stat(const std::string& path, const struct stat& st, std::uint64_t max_bytes) {
  if (!S_ISREG(st.st_mode))
    throw LoadError(fmt::format("{}: is {}, not a regular file", path, kind_of(st.st_mode)));
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes)
    throw LoadError(fmt::format("{}: {} is over the limit of {} for this kind of file", path,
                                size_text(static_cast<std::uint64_t>(st.st_size)),
                                size_text(max_bytes)));
}

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view unquote(std::string_view s) {
  s = trim(s);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return trim(s);
}

// Calls fn(line_number, line) for every line that is not blank or a comment.
template <class Fn>
void for_each_line(const std::string& data, Fn fn) {
  std::size_t line_no = 0;
  for (std::size_t pos = 0; pos < data.size();) {
    auto end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    auto line = std::string_view(data).substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = trim(line);
    if (!line.empty()) fn(line_no, line);
  }
}

bool is_decimal(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

u128 parse_decimal(std::string_view text) {
  u128 v = 0;
  for (char c : text) {
    const u128 next = v * 10 + static_cast<unsigned>(c - '0');
    if (text.size() > 39 || next / 10 != v)
      throw ParseError(fmt::format("'{}' exceeds 128 bits", text));
    v = next;
  }
  return v;
}

// The endpoints of a range line: address text, or decimal integers, which
// are IPv4 when both fit in 32 bits and IPv6 otherwise (IP2Location's IPv6
// files write ::ffff:a.b.c.d as decimals too).
std::pair<Address, Address> parse_endpoints(std::string_view low, std::string_view high) {
  if (is_decimal(low) && is_decimal(high)) {
    const u128 lo = parse_decimal(low), hi = parse_decimal(high);
    if (lo <= 0xffffffffu && hi <= 0xffffffffu)
      return {Address::v4(static_cast<std::uint32_t>(lo)),
              Address::v4(static_cast<std::uint32_t>(hi))};
    return {Address::v6(lo), Address::v6(hi)};
  }
  auto endpoint = [](std::string_view text) {
    if (!is_decimal(text)) return parse_address(text);
    const u128 v = parse_decimal(text);
    if (v > 0xffffffffu)
      throw ParseError(fmt::format("'{}' is too large for an IPv4 address", text));
    return Address::v4(static_cast<std::uint32_t>(v));
  };
  return {endpoint(low), endpoint(high)};
}

template <class Key>
struct Parsed {
  std::vector<Span<Key>> spans;
  std::vector<std::size_t> lines;
};

template <class Key>
void check_overlaps(const std::string& path, Parsed<Key>& p) {
  std::vector<std::size_t> order(p.spans.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto by_first = [&](std::size_t a, std::size_t b) {
    return p.spans[a].range.first < p.spans[b].range.first;
  };
  if (!std::is_sorted(order.begin(), order.end(), by_first)) {
    std::sort(order.begin(), order.end(), by_first);
    Parsed<Key> sorted;
    for (auto i : order) {
      sorted.spans.push_back(p.spans[i]);
      sorted.lines.push_back(p.lines[i]);
    }
    p = std::move(sorted);
  }
  for (std::size_t i = 1; i < p.spans.size(); ++i)
    if (p.spans[i].range.first <= p.spans[i - 1].range.last)
      throw LoadError(fmt::format("{}:{}: range overlaps the range on line {}", path,
                                  std::max(p.lines[i], p.lines[i - 1]),
                                  std::min(p.lines[i], p.lines[i - 1])));
}

}  // namespace

void check_input_file(const std::string& path, std::uint64_t max_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw LoadError(fmt::format("{}: {}", path, std::strerror(errno)));
  check_stat(path, st, max_bytes);
}

std::string read_input_file(const std::string& path, std::uint64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO does not wait for a writer; fstat refuses it.
  struct Fd {
    int fd;
    ~Fd() {
      if (fd >= 0) ::close(fd);
    }
  } file{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
  const int fd = file.fd;
  if (fd < 0) throw LoadError(fmt::format("{}: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw LoadError(fmt::format("{}: {}", path, std::strerror(errno)));
  check_stat(path, st, max_bytes);
  std::string data;
  data.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw LoadError(fmt::format("{}: {}", path, std::strerror(errno)));
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
    if (data.size() > max_bytes)  // it grew while we read it
      throw LoadError(fmt::format("{}: over the limit of {} for this kind of file", path,
                                  size_text(max_bytes)));
  }
  return data;
}

GeoData load_range_file(const std::string& path) {
  return parse_range_file(read_file(path), path);
}

namespace {

// A file's bad lines, each said (the first ten; then how many more), so an
// operator fixes them in one go rather than one per `geomx check`.
class BadLines {
 public:
  explicit BadLines(const std::string& path) : path_(path) {}
  void add(std::size_t line_no, const char* what) {
    if (++count_ <= shown) said_.push_back(fmt::format("{}:{}: {}", path_, line_no, what));
  }
  void throw_if_any() const {
    if (count_ == 0) return;
    std::string message = fmt::format("{}", fmt::join(said_, "; "));
    if (count_ > shown) message += fmt::format("; and {} more bad lines", count_ - shown);
    throw LoadError(message);
  }
  static constexpr std::size_t shown = 10;

 private:
  const std::string& path_;
  std::vector<std::string> said_;
  std::size_t count_ = 0;
};

}  // namespace

GeoData parse_range_file(const std::string& data, const std::string& path) {
  Parsed<std::uint32_t> v4;
  Parsed<u128> v6;
  BadLines bad(path);
  for_each_line(data, [&](std::size_t line_no, std::string_view line) {
    try {
      std::string_view fields[3];
      std::size_t n = 0;
      for (std::size_t pos = 0; n < 3;) {
        auto comma = line.find(',', pos);
        fields[n++] = unquote(line.substr(pos, comma - pos));
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
      }
      if (n < 3) throw ParseError("expected low,high,country");
      const auto [low, high] = parse_endpoints(fields[0], fields[1]);
      if (low.family() != high.family())
        throw ParseError(fmt::format("{} and {} are of different address families", low.to_string(),
                                     high.to_string()));
      if (high < low)
        throw ParseError(
            fmt::format("inverted range: {} is after {}", low.to_string(), high.to_string()));
      const auto cc = fields[2];
      if (cc == "??" || cc == "-" || cc.empty()) return;  // known to nobody
      const auto country = Country::parse(cc);
      if (!country) throw ParseError(fmt::format("'{}' is not a two-character country code", cc));
      if (low.is_v4()) {
        v4.spans.push_back({{low.v4_bits(), high.v4_bits()}, {*country, 0, 0}});
        v4.lines.push_back(line_no);
      } else {
        v6.spans.push_back({{low.v6_bits(), high.v6_bits()}, {*country, 0, 0}});
        v6.lines.push_back(line_no);
      }
    } catch (const ParseError& e) {
      bad.add(line_no, e.what());
    }
  });
  bad.throw_if_any();
  check_overlaps(path, v4);
  check_overlaps(path, v6);
  return GeoData{path, std::move(v4.spans), std::move(v6.spans), {}};
}

RangeSet load_cidr_file(const std::string& path) {
  return parse_cidr_list(read_file(path), path);
}

RangeSet parse_cidr_list(const std::string& data, const std::string& path) {
  RangeSet set;
  BadLines bad(path);
  for_each_line(data, [&](std::size_t line_no, std::string_view line) {
    try {
      set.add(parse_prefix(line));
    } catch (const ParseError& e) {
      bad.add(line_no, e.what());
    }
  });
  bad.throw_if_any();
  merge_ranges(set.v4);
  merge_ranges(set.v6);
  return set;
}

GeoData load_database(const std::string& path) {
  if (std::filesystem::path(path).extension() == ".mmdb") return load_mmdb(path);
  return load_range_file(path);
}

std::vector<std::string> default_databases() {
  for (const char* dir : {"/var/lib/GeoIP", "/usr/share/GeoIP"}) {
    for (const char* name : {"GeoLite2-Country.mmdb", "GeoIP2-Country.mmdb"}) {
      auto path = std::filesystem::path(dir) / name;
      if (std::filesystem::exists(path)) return {path.string()};
    }
  }
  return {"/usr/share/tor/geoip", "/usr/share/tor/geoip6"};
}

GeoTable build_table(const std::vector<std::string>& databases,
                     const std::vector<std::string>& asn_databases) {
  TableBuilder builder;
  for (const auto& path : databases) builder.add_database(load_database(path));
  for (const auto& path : asn_databases) builder.add_asn_database(load_asn_mmdb(path));
  try {
    return std::move(builder).build();
  } catch (const std::logic_error& e) {  // overlapping data, a table beyond the index's limits
    throw LoadError(fmt::format("{}: {}", fmt::join(databases, ", "), e.what()));
  }
}

}  // namespace geomx::geo
