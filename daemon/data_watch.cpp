// geo.watch: a data file renamed into place reloads the data (the running
// config, read again), once the burst of renames is over.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "conf/data.hpp"
#include "daemon/server.hpp"
#include "daemon/watch.hpp"

namespace geomx::daemon {

using proxy::nothrow;

void Server::update_watch(const policy::Snapshot& snapshot) {
  if (!snapshot.config.geo.watch) {
    if (watch_) watch_->watch({});
    return;
  }
  try {
    if (!watch_)
      watch_ = std::make_unique<FileWatch>(control_io_,
                                           [this](const std::string& p) { file_changed(p); });
    for (const auto& problem : watch_->watch(conf::data_files(snapshot.config)))
      state_.log.event("warning",
                       {{"problem", "geo.watch cannot watch a directory"}, {"error", problem}});
  } catch (const std::exception& e) {
    state_.log.event("warning", {{"problem", "geo.watch is off"}, {"error", e.what()}});
  }
}

// Renames come in bursts (geoipupdate replaces several files): wait until
// none came for `quiet`, then reload once.
void Server::file_changed(const std::string& path) {
  constexpr auto quiet = std::chrono::milliseconds(500);
  if (stopping_) return;
  state_.log.event("watch", {{"file", path}, {"action", "reload when quiet for 500ms"}});
  changed_files_.insert(path);
  settle_until_ = std::chrono::steady_clock::now() + quiet;
  if (!settling_) {
    settling_ = true;
    asio::co_spawn(control_io_, watch_settle(), asio::detached);
  }
}

asio::awaitable<void> Server::watch_settle() {
  while (std::chrono::steady_clock::now() < settle_until_ && !stopping_) {
    settle_.expires_at(settle_until_);
    co_await settle_.async_wait(nothrow);
  }
  settling_ = false;
  if (stopping_) co_return;
  std::string files;
  for (const auto& f : changed_files_) files += (files.empty() ? "" : " ") + f;
  changed_files_.clear();
  co_await reload("watch " + files, false);
}

}  // namespace geomx::daemon
