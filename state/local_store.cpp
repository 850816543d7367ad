#include "state/local_store.hpp"

#include <sys/stat.h>
#include <unistd.h>

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

std::string render_blocks(const std::vector<Block>& blocks) {
  toml::array array;
  for (const auto& b : blocks) {
    toml::table t{{"cidr", b.cidr.to_string()},
                  {"comment", b.comment},
                  {"created", b.created},
                  {"origin", b.origin}};
    if (b.expires) t.insert("expires", *b.expires);
    array.push_back(std::move(t));
  }
  std::ostringstream out;
  out << "# geomx's dated blocks (unix times). Written by geomx; change them with\n"
         "# `geomx block add|del`, which also tells the running daemon.\n\n"
      << toml::table{{"block", std::move(array)}} << "\n";
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

std::vector<Block> parse_blocks_file(const std::string& path) {
  return parse_blocks(geo::read_input_file(path, geo::max_text_file), path);
}

std::vector<Block> parse_blocks(std::string_view text, const std::string& name) {
  const toml::table doc = toml::parse(text, name);  // throws toml::parse_error
  std::vector<Block> out;
  for (const auto& [key, value] : doc)
    if (key != "block") throw std::runtime_error(fmt::format("{}: unknown key", key.str()));
  const toml::node* node = doc.get("block");
  if (!node) return out;
  const auto* array = node->as_array();
  if (!array) throw std::runtime_error("block: must be an array of tables ([[block]])");
  for (std::size_t i = 0; i < array->size(); ++i) {
    const auto* t = (*array)[i].as_table();
    if (!t) throw std::runtime_error(fmt::format("block[{}]: must be a table", i));
    for (const auto& [key, value] : *t)
      if (key != "cidr" && key != "comment" && key != "created" && key != "origin" &&
          key != "expires")
        throw std::runtime_error(fmt::format("block[{}].{}: unknown key", i, key.str()));
    const auto cidr = field<std::string>(*t, i, "cidr", "a string (\"192.0.2.0/24\")");
    const auto created = field<std::int64_t>(*t, i, "created", "an integer (unix time)");
    if (!cidr || !created)
      throw std::runtime_error(fmt::format("block[{}]: needs cidr and created", i));
    Block b;
    try {
      b.cidr = geo::parse_prefix(*cidr);
    } catch (const geo::ParseError& e) {
      throw std::runtime_error(fmt::format("block[{}].cidr: {}", i, e.what()));
    }
    b.created = *created;
    b.comment = field<std::string>(*t, i, "comment", "a string").value_or("");
    b.origin = field<std::string>(*t, i, "origin", "a string").value_or("operator");
    if (!conf::printable_line(b.comment) || !conf::printable_line(b.origin))
      throw std::runtime_error(
          fmt::format("block[{}]: comment and origin are one line, without control characters", i));
    b.expires = field<std::int64_t>(*t, i, "expires", "an integer (unix time)");
    out.push_back(std::move(b));
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
            {fmt::format("{} {}; serving without its blocks, and refusing to write it until it "
                         "can be read (fix it, then reload)",
                         file_, why)}};
  };
  struct stat st {};
  if (::stat(file_.c_str(), &st) != 0) {
    if (errno != ENOENT) return refuse(fmt::format("cannot be read: {}", std::strerror(errno)));
    if (::stat(dir_.c_str(), &st) != 0)
      return {{},
              {fmt::format("state_dir {}: {}; blocks will not survive a restart", dir_,
                           std::strerror(errno))}};
    return {};  // no blocks yet
  }
  if (!S_ISREG(st.st_mode)) return refuse("is not a regular file");
  if (::access(file_.c_str(), R_OK) != 0)
    return refuse(fmt::format("cannot be read: {}", std::strerror(errno)));
  try {
    return {parse_blocks_file(file_), {}};
  } catch (const std::exception& e) {
    const auto aside = fmt::format("{}.corrupt-{}", file_, now);
    if (::rename(file_.c_str(), aside.c_str()) != 0)
      return refuse(fmt::format("does not parse ({}) and could not be moved aside: {}", e.what(),
                                std::strerror(errno)));
    return {{},
            {fmt::format("{} does not parse ({}); kept as {}; starting with no blocks", file_,
                         e.what(), aside)}};
  }
}

void LocalBlockStore::save(const std::vector<Block>& blocks) {
  if (file_.empty()) return;
  if (!refused_.empty()) throw std::runtime_error(refused_);
  write_durably(dir_, file_, render_blocks(blocks));
}

}  // namespace geomx::state
