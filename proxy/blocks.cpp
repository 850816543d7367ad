#include "proxy/blocks.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <toml++/toml.h>

namespace geomx::proxy {
namespace {

std::runtime_error os_error(const std::string& what) {
  return std::runtime_error(fmt::format("{}: {}", what, std::strerror(errno)));
}

// All of `data` to `path` and on disk: a temp file beside it, fsync,
// rename over, fsync of the directory (so the rename itself is durable).
void write_durably(const std::string& dir, const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) throw os_error(tmp);
  std::size_t done = 0;
  while (done < data.size()) {
    const auto n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const auto e = os_error(tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      throw e;
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const int saved = errno;
  if (::close(fd) != 0 || !synced) {
    if (!synced) errno = saved;
    const auto e = os_error(tmp);
    ::unlink(tmp.c_str());
    throw e;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const auto e = os_error(path);
    ::unlink(tmp.c_str());
    throw e;
  }
  // The new file is in place: from here on the change is made. Making the
  // rename itself durable is best effort (a failure is not a reason to say
  // "not added" about a file that already has it).
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  ::fsync(dfd);
  ::close(dfd);
}

std::string render(const std::vector<Block>& blocks) {
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

std::vector<Block> parse(const std::string& path) {
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

}  // namespace

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

BlockList::BlockList(std::string state_dir)
    : dir_(std::move(state_dir)),
      file_(dir_.empty() ? "" : dir_ + "/blocks.toml"),
      blocks_(make_set({})) {}

std::shared_ptr<const BlockList::Set> BlockList::make_set(std::vector<Block> blocks) {
  auto set = std::make_shared<Set>();
  set->blocks = std::move(blocks);
  for (std::size_t i = 0; i < set->blocks.size(); ++i) {
    const auto& cidr = set->blocks[i].cidr;
    set->by_cidr[cidr] = i;  // CIDRs are unique: add() replaces
    auto& lengths = cidr.family() == geo::Family::v4 ? set->v4_lengths : set->v6_lengths;
    if (std::find(lengths.begin(), lengths.end(), cidr.length()) == lengths.end())
      lengths.push_back(cidr.length());
  }
  for (auto* l : {&set->v4_lengths, &set->v6_lengths}) std::sort(l->rbegin(), l->rend());
  return set;
}

std::vector<std::string> BlockList::load() {
  if (file_.empty()) return {};
  struct stat st {};
  if (::stat(file_.c_str(), &st) != 0) {
    if (errno != ENOENT) return {fmt::format("{}: {}", file_, std::strerror(errno))};
    if (::stat(dir_.c_str(), &st) != 0)
      return {fmt::format("state_dir {}: {}; blocks will not survive a restart", dir_,
                          std::strerror(errno))};
    return {};  // no blocks yet
  }
  if (::access(file_.c_str(), R_OK) != 0)  // unreadable is not corrupt: keep it
    return {fmt::format("{}: {}; serving without its blocks", file_, std::strerror(errno))};
  try {
    auto blocks = parse(file_);
    blocks_.store(make_set(std::move(blocks)));
    return {};
  } catch (const std::exception& e) {
    const auto aside = fmt::format("{}.corrupt-{}", file_, unix_now());
    const bool moved = ::rename(file_.c_str(), aside.c_str()) == 0;
    return {fmt::format("{} does not parse ({}); {}; starting with no blocks", file_, e.what(),
                        moved ? "kept as " + aside : "could not move it aside")};
  }
}

void BlockList::save(const std::vector<Block>& blocks) const {
  if (file_.empty()) return;
  write_durably(dir_, file_, render(blocks));
}

void BlockList::add(Block b) {
  std::lock_guard lock(write_);
  auto next = list(unix_now());
  std::erase_if(next, [&](const Block& old) { return old.cidr == b.cidr; });
  next.push_back(std::move(b));
  save(next);  // throws: nothing changed
  blocks_.store(make_set(std::move(next)));
}

bool BlockList::remove(const geo::Prefix& cidr) {
  std::lock_guard lock(write_);
  auto next = list(unix_now());
  if (std::erase_if(next, [&](const Block& old) { return old.cidr == cidr; }) == 0) return false;
  save(next);
  blocks_.store(make_set(std::move(next)));
  return true;
}

std::vector<Block> BlockList::list(std::int64_t now) const {
  std::vector<Block> out;
  for (const auto& b : blocks_.load()->blocks)
    if (b.active(now)) out.push_back(b);
  return out;
}

std::optional<Block> BlockList::find(const geo::Address& a, std::int64_t now) const {
  return covering(geo::Prefix::containing(a, a.is_v4() ? 32 : 128), now);
}

std::optional<Block> BlockList::covering(const geo::Prefix& p, std::int64_t now) const {
  const auto set = blocks_.load();
  const auto& a = p.network();
  for (const auto length : a.is_v4() ? set->v4_lengths : set->v6_lengths) {
    if (length > p.length()) continue;  // inside `p`, not around it
    const auto it = set->by_cidr.find(geo::Prefix::containing(a, length));
    if (it != set->by_cidr.end() && set->blocks[it->second].active(now))
      return set->blocks[it->second];
  }
  return std::nullopt;
}

std::size_t BlockList::count(std::string_view origin_prefix, std::int64_t now) const {
  std::size_t n = 0;
  for (const auto& b : blocks_.load()->blocks)
    n += b.active(now) && b.origin.starts_with(origin_prefix);
  return n;
}

}  // namespace geomx::proxy
