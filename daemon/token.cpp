#include "daemon/token.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "geo/sources.hpp"

namespace geomx::daemon {
namespace {

AdminToken create(const std::string& path, const conf::Process& process) {
  unsigned char random[32];
  if (getrandom(random, sizeof random, 0) != static_cast<ssize_t>(sizeof random))
    return {{}, fmt::format("admin token {}: getrandom: {}", path, std::strerror(errno))};
  std::string token;
  for (const auto b : random) token += fmt::format("{:02x}", b);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0)
    return {{},
            fmt::format("admin token {} could not be created: {}; /blocks, /reload, /status and "
                        "/top are refused",
                        path, std::strerror(errno))};
  const std::string text = token + "\n";
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                       ::fsync(fd) == 0;
  if (geteuid() == 0) (void)::fchown(fd, static_cast<uid_t>(-1), admin_group(process));
  ::close(fd);
  if (!written) {
    ::unlink(path.c_str());
    return {{}, fmt::format("admin token {} could not be written: {}", path, std::strerror(errno))};
  }
  return {token, {}, true};
}

}  // namespace

gid_t admin_group(const conf::Process& p) {
  if (!p.group.empty())
    if (const group* g = getgrnam(p.group.c_str())) return g->gr_gid;
  if (!p.user.empty())
    if (const passwd* u = getpwnam(p.user.c_str())) return u->pw_gid;
  return static_cast<gid_t>(-1);  // unchanged
}

std::string token_of(std::string_view text) {
  text = text.substr(0, text.find('\n'));
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r'))
    text.remove_suffix(1);
  if (text.size() < 16 || text.size() > 256) return {};
  for (const char c : text)
    if (c <= 0x20 || c >= 0x7f) return {};
  return std::string(text);
}

AdminToken admin_token(const std::string& path, const conf::Process& process) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return create(path, process);
    return {{},
            fmt::format("admin token {}: {}; /blocks, /reload, /status and /top are refused", path,
                        std::strerror(errno))};
  }
  std::string text;
  try {
    text = geo::read_input_file(path, 4096);
  } catch (const geo::LoadError& e) {
    return {
        {},
        fmt::format("admin token {}; /blocks, /reload, /status and /top are refused", e.what())};
  }
  auto token = token_of(text);
  if (token.empty())
    return {{},
            fmt::format("admin token {}: its first line must be 16 to 256 printable characters; "
                        "/blocks, /reload, /status and /top are refused",
                        path)};
  if (st.st_mode & S_IROTH)
    return {token, fmt::format("admin token {} is readable by every user of this host (chmod "
                               "0640 it)",
                               path)};
  return {token, {}};
}

}  // namespace geomx::daemon
