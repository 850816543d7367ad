#include "state/fleet_top.hpp"

#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace geomx::state {
namespace {

constexpr std::string_view magic = "geomx-top 1 ";

// The next field of `line` up to `sep` (consumed), or nullopt at the end.
std::optional<std::string_view> field(std::string_view& line, char sep = ' ') {
  if (line.empty()) return std::nullopt;
  const auto end = line.find(sep);
  const auto f = line.substr(0, end);
  line = end == std::string_view::npos ? std::string_view() : line.substr(end + 1);
  if (f.empty()) return std::nullopt;
  return f;
}

template <class T>
std::optional<T> number(std::optional<std::string_view> text) {
  if (!text) return std::nullopt;
  T v{};
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc() || end != text->data() + text->size()) return std::nullopt;
  if constexpr (std::is_floating_point_v<T>)
    if (!std::isfinite(v) || v < 0 || v > FleetTop::max_count) return std::nullopt;
  return v;
}

}  // namespace

FleetTop::FleetTop(RedisConnection& commands, std::string key_prefix, std::string node)
    : redis_(commands), prefix_(std::move(key_prefix)), node_(std::move(node)) {}

std::string FleetTop::encode(const Report& report, std::int64_t written) {
  std::string out = fmt::format("{}{} {:.3f}\n", magic, written, report.total);
  for (const auto& r : report.rows)
    out += fmt::format("{} {} {:.3f} {:.3f}\n", r.address.to_string(),
                       r.country ? r.country->code() : "-", r.connections, r.refused);
  return out;
}

std::optional<FleetTop::Decoded> FleetTop::decode(std::string_view record) {
  if (record.size() > max_record || !record.starts_with(magic) || !record.ends_with('\n'))
    return std::nullopt;
  record.remove_prefix(magic.size());
  auto first = field(record, '\n');
  if (!first) return std::nullopt;
  auto head = *first;
  Decoded d;
  const auto written = number<std::int64_t>(field(head));
  const auto total = number<double>(field(head));
  if (!written || !total || !head.empty()) return std::nullopt;
  d.written = *written;
  d.report.total = *total;
  while (auto line = field(record, '\n')) {
    policy::TopTalkers::Row row;
    const auto address = field(*line);
    const auto country = field(*line);
    const auto connections = number<double>(field(*line));
    const auto refused = number<double>(field(*line));
    if (!address || !country || !connections || !refused || !line->empty()) return std::nullopt;
    const auto a = geo::try_parse_address(*address);
    if (!a) return std::nullopt;
    row.address = *a;
    if (*country != "-") {
      row.country = geo::Country::parse(*country);
      if (!row.country) return std::nullopt;
    }
    row.connections = *connections;
    row.refused = *refused;
    d.report.rows.push_back(row);
    if (d.report.rows.size() > rows) return std::nullopt;
  }
  if (!record.empty()) return std::nullopt;  // an empty line inside
  return d;
}

void FleetTop::publish(std::string_view window, const Report& report, std::int64_t now) {
  redis_.command({"HSET", key(window), node_, encode(report, now)}, [](auto) {});
}

void FleetTop::others(std::string_view window, std::int64_t now,
                      std::function<void(std::optional<std::vector<NodeReport>>)> done) {
  redis_.command({"HGETALL", key(window)},
                 [this, k = key(window), now, done = std::move(done)](std::optional<RedisReply> r) {
                   if (!r || r->type != RedisReply::Type::array) return done(std::nullopt);
                   std::vector<NodeReport> out;
                   std::vector<std::string> stale{"HDEL", k};
                   for (std::size_t i = 0; i + 1 < r->elements.size(); i += 2) {
                     const auto& node = r->elements[i].str;
                     if (node == node_) continue;  // this node's own comes live
                     const auto d = decode(r->elements[i + 1].str);
                     if (!d) continue;  // not a report this version reads: left alone
                     if (d->written < now - stale_after) {
                       stale.push_back(node);  // gone quiet: removed
                       continue;
                     }
                     out.push_back({node, d->written, d->report});
                   }
                   if (stale.size() > 2) redis_.command(std::move(stale), [](auto) {});
                   done(std::move(out));
                 });
}

}  // namespace geomx::state
