#include "state/local_store.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <toml++/toml.h>

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

std::vector<Block> parse_blocks_file(const std::string& path) {
  const toml::table doc = toml::parse_file(path);  // throws toml::parse_error
  std::vector<Block> out;
  const auto* array = doc["block"].as_array();
  if (!array) return out;
  for (std::size_t i = 0; i < array->size(); ++i) {
    const auto* t = (*array)[i].as_table();
    const auto cidr = t ? (*t)["cidr"].value<std::string>() : std::nullopt;
    const auto created = t ? (*t)["created"].value<std::int64_t>() : std::nullopt;
    if (!cidr || !created)
      throw std::runtime_error(fmt::format("block[{}]: needs cidr and created", i));
    Block b;
    try {
      b.cidr = geo::parse_prefix(*cidr);
    } catch (const geo::ParseError& e) {
      throw std::runtime_error(fmt::format("block[{}].cidr: {}", i, e.what()));
    }
    b.created = *created;
    b.comment = (*t)["comment"].value_or(std::string());
    b.origin = (*t)["origin"].value_or(std::string("operator"));
    b.expires = (*t)["expires"].value<std::int64_t>();
    out.push_back(std::move(b));
  }
  return out;
}

LocalBlockStore::LocalBlockStore(std::string state_dir)
    : dir_(std::move(state_dir)), file_(dir_.empty() ? "" : dir_ + "/blocks.toml") {}

BlockStore::Loaded LocalBlockStore::load(std::int64_t now) {
  if (file_.empty()) return {};
  struct stat st {};
  if (::stat(file_.c_str(), &st) != 0) {
    if (errno != ENOENT) return {{}, {fmt::format("{}: {}", file_, std::strerror(errno))}};
    if (::stat(dir_.c_str(), &st) != 0)
      return {{},
              {fmt::format("state_dir {}: {}; blocks will not survive a restart", dir_,
                           std::strerror(errno))}};
    return {};  // no blocks yet
  }
  if (::access(file_.c_str(), R_OK) != 0)  // unreadable is not corrupt: keep it
    return {{}, {fmt::format("{}: {}; serving without its blocks", file_, std::strerror(errno))}};
  try {
    return {parse_blocks_file(file_), {}};
  } catch (const std::exception& e) {
    const auto aside = fmt::format("{}.corrupt-{}", file_, now);
    const bool moved = ::rename(file_.c_str(), aside.c_str()) == 0;
    return {{},
            {fmt::format("{} does not parse ({}); {}; starting with no blocks", file_, e.what(),
                         moved ? "kept as " + aside : "could not move it aside")}};
  }
}

void LocalBlockStore::save(const std::vector<Block>& blocks) {
  if (file_.empty()) return;
  write_durably(dir_, file_, render_blocks(blocks));
}

}  // namespace geomx::state
