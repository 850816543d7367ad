#pragma once
// geo.watch: inotify on the directories of the data files, because
// geoipupdate (and any careful writer) writes a temporary file and renames it
// over the old one, which a watch on the file itself would not follow. Only
// a finished file is reported: a rename into place (IN_MOVED_TO) or a writer
// closing it (IN_CLOSE_WRITE), never a write in progress. A symlinked
// file is watched where the link is, not where it points.
#include <array>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

namespace geomx::daemon {

class FileWatch {
 public:
  using Changed = std::function<void(const std::string& path)>;
  FileWatch(boost::asio::io_context& io, Changed changed);
  ~FileWatch();
  FileWatch(const FileWatch&) = delete;
  FileWatch& operator=(const FileWatch&) = delete;

  // Watches these files (replacing the last set; empty: none). Returns the
  // directories that cannot be watched, with why.
  std::vector<std::string> watch(const std::vector<std::string>& files);
  void stop();

 private:
  void read();
  boost::asio::posix::stream_descriptor fd_;
  Changed changed_;
  std::map<int, std::string> dirs_;           // watch descriptor -> directory
  std::map<std::string, std::string> files_;  // directory/name -> the path as configured
  alignas(8) std::array<char, 8192> buffer_{};
};

}  // namespace geomx::daemon
