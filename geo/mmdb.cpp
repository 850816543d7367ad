#include "geo/mmdb.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "geo/sources.hpp"

namespace geomx::geo {

MmdbFile::MmdbFile(const std::string& path) : path_(path) {
  check_input_file(path, max_database_file);  // MMDB_open would wait on a FIFO
  const int status = MMDB_open(path.c_str(), MMDB_MODE_MMAP, &db_);
  if (status != MMDB_SUCCESS) {
    std::string why = MMDB_strerror(status);
    if (status == MMDB_IO_ERROR || status == MMDB_FILE_OPEN_ERROR)
      why += fmt::format(" ({})", std::strerror(errno));
    throw LoadError(fmt::format("{}: {}", path, why));
  }
}

MmdbFile::~MmdbFile() {
  MMDB_close(&db_);
}

namespace {

// Walks the search tree depth-first, left before right, so spans come out in
// address order, and records one span per data record.
class TreeWalker {
 public:
  enum class Kind { country, asn };
  TreeWalker(MmdbFile& file, Kind kind)
      : file_(file),
        db_(file.get()),
        width_(db_.metadata.ip_version == 6 ? 128 : 32),
        kind_(kind) {}

  GeoData walk() {
    GeoData out{file_.path(), {}, {}, {}};
    if (width_ == 128) v4_node_ = find_v4_node();
    struct Item {
      std::uint8_t type;
      std::uint64_t record;
      MMDB_entry_s entry;
      unsigned depth;
      u128 bits;
    };
    std::vector<Item> stack{{MMDB_RECORD_TYPE_SEARCH_NODE, 0, {}, 0, 0}};
    const std::uint64_t budget = 2 * std::uint64_t{db_.metadata.node_count} + 2;
    for (std::uint64_t visits = 0; !stack.empty();) {
      const Item item = stack.back();
      stack.pop_back();
      if (++visits > budget) fail("search tree has a cycle or shared nodes");
      if (item.type == MMDB_RECORD_TYPE_DATA) {
        if (auto value = value_of(item.entry)) emit(out, item.bits, item.depth, *value);
        continue;
      }
      if (item.type == MMDB_RECORD_TYPE_EMPTY) continue;
      if (item.type != MMDB_RECORD_TYPE_SEARCH_NODE)
        fail("search tree record points outside the file");
      if (item.depth >= width_) fail("search tree is deeper than the address width");
      const bool in_v4_subtree = item.depth >= 96 && (item.bits >> 32) == 0;
      if (width_ == 128 && item.depth > 0 && item.record == v4_node_ &&
          (!in_v4_subtree || item.depth == 96)) {
        // The IPv4 subtree answers IPv6 lookups in ::/96 and in its aliases
        // (::ffff:0:0/96, 2001::/32, 2002::/16) with the embedded IPv4 address.
        const bool home = item.depth == 96 && item.bits == 0;
        if (item.depth > 96) fail("IPv4 subtree aliased below /96");
        out.v6.push_back({{item.bits, item.bits | low_mask(128 - item.depth, 128)},
                          GeoValue{{}, 0, 0, static_cast<std::uint8_t>(item.depth)}});
        if (!home) continue;
      }
      MMDB_search_node_s node{};
      if (const int st = MMDB_read_node(&db_, static_cast<std::uint32_t>(item.record), &node);
          st != MMDB_SUCCESS)
        fail(MMDB_strerror(st));
      const unsigned depth = item.depth + 1;
      const u128 right_bit = u128{1} << (width_ - depth);
      stack.push_back({node.right_record_type, node.right_record, node.right_record_entry, depth,
                       item.bits | right_bit});
      stack.push_back(
          {node.left_record_type, node.left_record, node.left_record_entry, depth, item.bits});
    }
    if (known_ == 0) {
      const std::string type(db_.metadata.database_type ? db_.metadata.database_type : "");
      throw LoadError(fmt::format(
          "{}: no {} in any of its records (database_type \"{}\"){}", file_.path(),
          kind_ == Kind::country ? "country data" : "autonomous system numbers", type,
          kind_ == Kind::country ? "; an ASN database goes in [geo] asn_databases" : ""));
    }
    for (auto& [asn, org] : organisations_) out.organisations.emplace_back(asn, std::move(org));
    std::sort(out.organisations.begin(), out.organisations.end());
    return out;
  }

 private:
  static constexpr std::uint64_t no_node = ~std::uint64_t{0};

  [[noreturn]] void fail(std::string_view why) const {
    throw LoadError(fmt::format("{}: corrupt database: {}", file_.path(), why));
  }

  // The node reached by 96 zero bits in an IPv6 tree: the IPv4 subtree.
  std::uint64_t find_v4_node() {
    std::vector<std::uint64_t> path{0};
    for (int i = 0; i < 96; ++i) {
      MMDB_search_node_s n{};
      if (MMDB_read_node(&db_, static_cast<std::uint32_t>(path.back()), &n) != MMDB_SUCCESS)
        return no_node;
      if (n.left_record_type != MMDB_RECORD_TYPE_SEARCH_NODE) return no_node;
      if (std::find(path.begin(), path.end(), n.left_record) != path.end())
        fail("search tree has a cycle");
      path.push_back(n.left_record);
    }
    return path.back();
  }

  std::optional<Country> iso_code(MMDB_entry_s entry, const char* key) {
    MMDB_entry_data_s data{};
    const int st = MMDB_get_value(&entry, &data, key, "iso_code", nullptr);
    if (st == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR) return std::nullopt;
    if (st != MMDB_SUCCESS) fail(MMDB_strerror(st));
    if (!data.has_data || data.type != MMDB_DATA_TYPE_UTF8_STRING) return std::nullopt;
    const std::string_view code(data.utf8_string, data.data_size);
    auto country = Country::parse(code);
    if (!country) fail(fmt::format("{}.iso_code '{}' is not a two-character code", key, code));
    return country;
  }

  // GeoLite2-ASN's fields: autonomous_system_number (uint32) and
  // autonomous_system_organization (kept once per number).
  std::optional<GeoValue> asn_of(MMDB_entry_s entry) {
    MMDB_entry_data_s data{};
    int st = MMDB_get_value(&entry, &data, "autonomous_system_number", nullptr);
    if (st == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR) return std::nullopt;
    if (st != MMDB_SUCCESS) fail(MMDB_strerror(st));
    if (!data.has_data) return std::nullopt;
    std::uint64_t number = 0;
    switch (data.type) {
      case MMDB_DATA_TYPE_UINT16:
        number = data.uint16;
        break;
      case MMDB_DATA_TYPE_UINT32:
        number = data.uint32;
        break;
      case MMDB_DATA_TYPE_UINT64:
        number = data.uint64;
        break;
      default:
        fail("autonomous_system_number is not an unsigned integer");
    }
    if (number == 0 || number > 0xffffffffu)
      fail(fmt::format("autonomous_system_number {} is not an AS number", number));
    const auto asn = static_cast<std::uint32_t>(number);
    if (!organisations_.contains(asn)) {
      MMDB_entry_data_s org{};
      st = MMDB_get_value(&entry, &org, "autonomous_system_organization", nullptr);
      if (st == MMDB_SUCCESS && org.has_data && org.type == MMDB_DATA_TYPE_UTF8_STRING)
        organisations_.emplace(asn, std::string(org.utf8_string, org.data_size));
      else if (st != MMDB_SUCCESS && st != MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR)
        fail(MMDB_strerror(st));
      else
        organisations_.emplace(asn, std::string());
    }
    return GeoValue{{}, asn, 0, 0};
  }

  // The record's country (or AS), decoded once per data record.
  std::optional<GeoValue> value_of(MMDB_entry_s entry) {
    auto [it, added] = cache_.try_emplace(entry.offset);
    if (added) {
      if (kind_ == Kind::asn) {
        it->second = asn_of(entry);
      } else {
        auto country = iso_code(entry, "country");
        if (!country) country = iso_code(entry, "registered_country");
        if (country) it->second = GeoValue{*country, 0, 0, 0};
      }
    }
    known_ += it->second.has_value();
    return it->second;
  }

  void emit(GeoData& out, u128 bits, unsigned depth, const GeoValue& value) {
    const u128 last = bits | low_mask(width_ - depth, width_);
    if (width_ == 32) {
      out.v4.push_back(
          {{static_cast<std::uint32_t>(bits), static_cast<std::uint32_t>(last)}, value});
      return;
    }
    if (depth >= 96 && (bits >> 32) == 0) {  // inside the IPv4 subtree
      out.v4.push_back(
          {{static_cast<std::uint32_t>(bits), static_cast<std::uint32_t>(last)}, value});
      return;
    }
    if (bits == 0 && depth < 96)  // covers ::/96: IPv4 lookups land here too
      out.v4.push_back({{0, 0xffffffffu}, value});
    out.v6.push_back({{bits, last}, value});
  }

  MmdbFile& file_;
  MMDB_s& db_;
  const unsigned width_;
  const Kind kind_;
  std::uint64_t v4_node_ = no_node;
  std::uint64_t known_ = 0;  // data records with a country (or AS)
  std::unordered_map<std::uint32_t, std::optional<GeoValue>> cache_;
  std::unordered_map<std::uint32_t, std::string> organisations_;
};

}  // namespace

GeoData load_mmdb(const std::string& path) {
  MmdbFile file(path);
  return TreeWalker(file, TreeWalker::Kind::country).walk();
}

GeoData load_asn_mmdb(const std::string& path) {
  if (std::filesystem::path(path).extension() != ".mmdb")
    throw LoadError(
        fmt::format("{}: an ASN database is a MaxMind DB (.mmdb, GeoLite2-ASN schema)", path));
  MmdbFile file(path);
  return TreeWalker(file, TreeWalker::Kind::asn).walk();
}

}  // namespace geomx::geo
