#include "state/local_store.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "conf/text.hpp"
#include "geo/sources.hpp"
#include "state/durable.hpp"

namespace geomx::state {

using policy::Block;

std::string render_blocks(const std::vector<Block>& blocks,
                          const std::vector<policy::Deletion>& deletions) {
  toml::array array;
  for (const auto& b : blocks) {
    toml::table t{{"cidr", b.cidr.to_string()},
                  {"comment", b.comment},
                  {"created", b.created},
                  {"origin", b.origin}};
    if (b.expires) t.insert("expires", *b.expires);
    if (!b.node.empty()) t.insert("node", b.node);
    if (b.version) t.insert("version", b.version);
    array.push_back(std::move(t));
  }
  toml::table doc{{"block", std::move(array)}};
  if (!deletions.empty()) {
    toml::array deleted;
    for (const auto& d : deletions)
      deleted.push_back(
          toml::table{{"cidr", d.cidr.to_string()}, {"version", d.version}, {"node", d.node}});
    doc.insert("deleted", std::move(deleted));
  }
  std::ostringstream out;
  out << "# geomx's dated blocks (unix times; versions in unix ms). Written by geomx;\n"
         "# change them with `geomx block add|del`, which also tells the running daemon.\n\n"
      << doc << "\n";
  return out.str();
}

namespace {

// The value of `key` in block[i], of type T, or nullopt when absent; a value
// of another type is an error (a string where a time should be would
// otherwise make a dated block permanent).
template <class T>
std::optional<T> field(const toml::table& t, std::size_t i, const char* key, const char* type) {
  const toml::node* n = t.get(key);
  if (!n) return std::nullopt;
  if (auto v = n->value_exact<T>()) return v;
  throw std::runtime_error(fmt::format("block[{}].{}: must be {}", i, key, type));
}

}  // namespace

BlocksFile parse_blocks_file(const std::string& path) {
  return parse_blocks(geo::read_input_file(path, geo::max_text_file), path);
}

namespace {

// The tables of array `key` ([[block]], [[deleted]]), each checked for
// unknown keys; none when absent.
std::vector<const toml::table*> tables_of(const toml::table& doc, const char* key,
                                          std::initializer_list<std::string_view> keys) {
  std::vector<const toml::table*> out;
  const toml::node* node = doc.get(key);
  if (!node) return out;
  const auto* array = node->as_array();
  if (!array)
    throw std::runtime_error(fmt::format("{0}: must be an array of tables ([[{0}]])", key));
  for (std::size_t i = 0; i < array->size(); ++i) {
    const auto* t = (*array)[i].as_table();
    if (!t) throw std::runtime_error(fmt::format("{}[{}]: must be a table", key, i));
    for (const auto& [k, value] : *t)
      if (std::find(keys.begin(), keys.end(), k.str()) == keys.end())
        throw std::runtime_error(fmt::format("{}[{}].{}: unknown key", key, i, k.str()));
    out.push_back(t);
  }
  return out;
}

geo::Prefix cidr_of(const toml::table& t, const char* key, std::size_t i) {
  const auto cidr = field<std::string>(t, i, "cidr", "a string (\"192.0.2.0/24\")");
  if (!cidr) throw std::runtime_error(fmt::format("{}[{}]: needs cidr", key, i));
  try {
    return geo::parse_prefix(*cidr);
  } catch (const geo::ParseError& e) {
    throw std::runtime_error(fmt::format("{}[{}].cidr: {}", key, i, e.what()));
  }
}

}  // namespace

BlocksFile parse_blocks(std::string_view text, const std::string& name) {
  const toml::table doc = toml::parse(text, name);  // throws toml::parse_error
  BlocksFile out;
  for (const auto& [key, value] : doc)
    if (key != "block" && key != "deleted")
      throw std::runtime_error(fmt::format("{}: unknown key", key.str()));
  const auto blocks = tables_of(
      doc, "block", {"cidr", "comment", "created", "origin", "expires", "node", "version"});
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const toml::table& t = *blocks[i];
    Block b;
    b.cidr = cidr_of(t, "block", i);
    const auto created = field<std::int64_t>(t, i, "created", "an integer (unix time)");
    if (!created) throw std::runtime_error(fmt::format("block[{}]: needs cidr and created", i));
    b.created = *created;
    b.comment = field<std::string>(t, i, "comment", "a string").value_or("");
    b.origin = field<std::string>(t, i, "origin", "a string").value_or("operator");
    b.node = field<std::string>(t, i, "node", "a string").value_or("");
    if (!conf::printable_line(b.comment) || !conf::printable_line(b.origin) ||
        !conf::printable_line(b.node))
      throw std::runtime_error(fmt::format(
          "block[{}]: comment, origin and node are one line, without control characters", i));
    b.expires = field<std::int64_t>(t, i, "expires", "an integer (unix time)");
    b.version = field<std::int64_t>(t, i, "version", "an integer (unix ms)").value_or(0);
    out.blocks.push_back(std::move(b));
  }
  const auto deleted = tables_of(doc, "deleted", {"cidr", "version", "node"});
  for (std::size_t i = 0; i < deleted.size(); ++i) {
    const toml::table& t = *deleted[i];
    policy::Deletion d;
    d.cidr = cidr_of(t, "deleted", i);
    const auto version = field<std::int64_t>(t, i, "version", "an integer (unix ms)");
    if (!version) throw std::runtime_error(fmt::format("deleted[{}]: needs cidr and version", i));
    d.version = *version;
    d.node = field<std::string>(t, i, "node", "a string").value_or("");
    if (!conf::printable_line(d.node))
      throw std::runtime_error(
          fmt::format("deleted[{}].node: one line, without control characters", i));
    out.deletions.push_back(std::move(d));
  }
  return out;
}

LocalBlockStore::LocalBlockStore(std::string state_dir)
    : dir_(std::move(state_dir)), file_(dir_.empty() ? "" : dir_ + "/blocks.toml") {}

BlockStore::Loaded LocalBlockStore::load(std::int64_t now) {
  refused_.clear();
  if (file_.empty()) return {};
  // A file that is there but cannot be read is not corrupt: keep it, serve
  // without its blocks, and write nothing over it until it can be read.
  const auto refuse = [&](std::string why) -> Loaded {
    refused_ = fmt::format(
        "{} {}; it is not overwritten until it can be read (fix it, then "
        "reload)",
        file_, why);
    return {{},
            {},
            {fmt::format("{} {}; serving without its blocks, and refusing to write it until it "
                         "can be read (fix it, then reload)",
                         file_, why)}};
  };
  struct stat st {};
  if (::stat(file_.c_str(), &st) != 0) {
    if (errno != ENOENT) return refuse(fmt::format("cannot be read: {}", std::strerror(errno)));
    if (::stat(dir_.c_str(), &st) != 0)
      return {{},
              {},
              {fmt::format("state_dir {}: {}; blocks will not survive a restart", dir_,
                           std::strerror(errno))}};
    return {};  // no blocks yet
  }
  if (!S_ISREG(st.st_mode)) return refuse("is not a regular file");
  if (::access(file_.c_str(), R_OK) != 0)
    return refuse(fmt::format("cannot be read: {}", std::strerror(errno)));
  try {
    auto file = parse_blocks_file(file_);
    return {std::move(file.blocks), std::move(file.deletions), {}};
  } catch (const std::exception& e) {
    const auto aside = fmt::format("{}.corrupt-{}", file_, now);
    if (::rename(file_.c_str(), aside.c_str()) != 0)
      return refuse(fmt::format("does not parse ({}) and could not be moved aside: {}", e.what(),
                                std::strerror(errno)));
    return {{},
            {},
            {fmt::format("{} does not parse ({}); kept as {}; starting with no blocks", file_,
                         e.what(), aside)}};
  }
}

void LocalBlockStore::save(const std::vector<Block>& blocks,
                           const std::vector<policy::Deletion>& deletions) {
  if (file_.empty()) return;
  if (!refused_.empty()) throw std::runtime_error(refused_);
  write_durably(dir_, file_, render_blocks(blocks, deletions));
}

}  // namespace geomx::state
