#include "daemon/watch.hpp"

#include <sys/inotify.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>

namespace geomx::daemon {

namespace {

int open_inotify() {
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "inotify_init1");
  return fd;
}

// The directory as the kernel will name it once: `a/../a` and a symlinked
// spelling of one directory are one watch.
std::string directory_of(const std::string& file) {
  auto dir = std::filesystem::path(file).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  auto canonical = std::filesystem::weakly_canonical(dir, ec);
  return (ec ? dir : canonical).string();
}

// How an event names the file: its directory (as watched) and its name.
std::string event_path(const std::string& dir, const std::string& name) {
  return dir + "/" + name;
}

}  // namespace

FileWatch::FileWatch(boost::asio::io_context& io, Changed changed)
    : fd_(io, open_inotify()), changed_(std::move(changed)) {
  read();
}

FileWatch::~FileWatch() = default;

std::vector<std::string> FileWatch::watch(const std::vector<std::string>& files) {
  std::vector<std::string> problems;
  for (const auto& [wd, dir] : dirs_) inotify_rm_watch(fd_.native_handle(), wd);
  dirs_.clear();
  files_.clear();
  std::set<std::string> dirs;
  for (const auto& f : files) {
    dirs.insert(directory_of(f));
    files_[event_path(directory_of(f), std::filesystem::path(f).filename().string())] = f;
  }
  for (const auto& dir : dirs) {
    const int wd = inotify_add_watch(fd_.native_handle(), dir.c_str(),
                                     IN_CLOSE_WRITE | IN_MOVED_TO | IN_ONLYDIR);
    if (wd < 0)
      problems.push_back(dir + ": " + std::strerror(errno));
    else
      dirs_[wd] = dir;
  }
  return problems;
}

void FileWatch::stop() {
  boost::system::error_code ignored;
  fd_.close(ignored);
}

void FileWatch::read() {
  fd_.async_read_some(boost::asio::buffer(buffer_),
                      [this](const boost::system::error_code& ec, std::size_t n) {
                        if (ec == boost::asio::error::operation_aborted || !fd_.is_open()) return;
                        if (ec) return;  // the descriptor broke: nothing more will come
                        for (std::size_t at = 0; at + sizeof(inotify_event) <= n;) {
                          inotify_event e;
                          std::memcpy(&e, buffer_.data() + at, sizeof e);
                          const char* name = buffer_.data() + at + sizeof e;
                          at += sizeof e + e.len;
                          if (e.mask & IN_Q_OVERFLOW) {  // events were lost: assume all changed
                            for (const auto& [key, file] : files_) changed_(file);
                            continue;
                          }
                          const auto dir = dirs_.find(e.wd);
                          if (dir == dirs_.end() || e.len == 0) continue;
                          const auto file = files_.find(event_path(dir->second, name));
                          if (file != files_.end()) changed_(file->second);
                        }
                        read();
                      });
}

}  // namespace geomx::daemon
