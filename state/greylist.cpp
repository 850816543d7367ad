#include "state/greylist.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

#include "state/durable.hpp"

namespace geomx::state {
namespace {

// Each file begins with this, padded to one record.
constexpr std::string_view magic = "geomx greylist 1";

std::string header() {
  std::string h(magic);
  h.resize(sizeof(LocalGreyStore::Stored), '\n');
  return h;
}

std::runtime_error os_error(const std::string& what) {
  return std::runtime_error(fmt::format("{}: {}", what, std::strerror(errno)));
}

std::uint32_t clamp32(std::int64_t v) {
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(v, 0, 0xffffffffLL));
}

}  // namespace

std::size_t LocalGreyStore::KeyHash::operator()(const policy::GreyKey& k) const {
  std::size_t h;
  std::memcpy(&h, k.data(), sizeof h);
  return h;
}

LocalGreyStore::LocalGreyStore(std::string state_dir, std::size_t capacity,
                               std::function<std::int64_t()> now, bool read_only)
    : dir_(std::move(state_dir)),
      capacity_(std::max<std::size_t>(capacity, 16)),
      now_(std::move(now)) {
  if (dir_.empty()) return;
  snapshot_ = dir_ + "/greylist.db";
  journal_ = dir_ + "/greylist.journal";
  old_journal_ = journal_ + ".old";
  read_only_ = read_only;
  load();
  if (read_only_) return;
  // A compaction that did not finish (a crash, a full disk) left
  // greylist.journal.old: the map holds it and the journal, so a snapshot of
  // the map replaces all three, and the journal begins anew.
  if (::access(old_journal_.c_str(), F_OK) == 0) {
    write_durably(dir_, snapshot_, snapshot_data());
    if (::unlink(old_journal_.c_str()) != 0) throw os_error(old_journal_);
    write_durably(dir_, journal_, header());
    journal_records_ = 0;
    problems_.push_back(fmt::format("{}: an unfinished compaction completed", old_journal_));
  }
  fd_ = ::open(journal_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) throw os_error(journal_);
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw os_error(journal_);
  journal_bytes_ = static_cast<off_t>(st.st_size);
  if (st.st_size == 0) {
    const auto h = header();
    if (::write(fd_, h.data(), h.size()) != static_cast<ssize_t>(h.size()))
      throw os_error(journal_);
    journal_bytes_ = static_cast<off_t>(h.size());
  }
}

std::string LocalGreyStore::snapshot_data() const {
  std::string data = header();
  data.reserve(data.size() + map_.size() * sizeof(Stored));
  for (const auto& [k, v] : map_) {
    const Stored s{k, v.first, v.last, v.passes, v.expires};
    data.append(reinterpret_cast<const char*>(&s), sizeof s);
  }
  return data;
}

LocalGreyStore::~LocalGreyStore() {
  settle();
  if (fd_ >= 0) ::close(fd_);
}

void LocalGreyStore::settle() {
  std::thread t;
  {
    std::lock_guard lock(mutex_);
    t = std::move(writer_);
  }
  if (t.joinable()) t.join();
}

void LocalGreyStore::load() {
  // The snapshot, then a journal a compaction had not folded in yet, then
  // the journal: later records replace earlier ones.
  for (const auto& path : {snapshot_, old_journal_, journal_}) read_file(path);
  const auto now = clamp32(now_());
  std::erase_if(map_, [&](const auto& kv) { return kv.second.expires <= now; });
}

void LocalGreyStore::read_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw os_error(path);
  }
  if (!S_ISREG(st.st_mode)) throw std::runtime_error(path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw os_error(path);
  std::string h(sizeof(Stored), '\0');
  in.read(h.data(), static_cast<std::streamsize>(h.size()));
  if (in.gcount() == 0) return;  // empty: created, nothing written yet
  if (h != header() && read_only_) {
    problems_.push_back(fmt::format("{}: not a geomx greylist file", path));
    return;
  }
  if (h != header()) {
    const auto aside = fmt::format("{}.corrupt-{}", path, now_());
    if (::rename(path.c_str(), aside.c_str()) != 0) throw os_error(path);
    problems_.push_back(fmt::format("{}: not a geomx greylist file; renamed to {}", path, aside));
    return;
  }
  Stored s;
  std::size_t n = 0;
  while (in.read(reinterpret_cast<char*>(&s), sizeof s)) {
    map_[s.key] = Value{s.first, s.last, s.passes, s.expires};
    ++n;
  }
  if (in.gcount() != 0) {  // a write cut short by a crash: the last record is lost
    problems_.push_back(
        fmt::format("{}: a torn record at the end ({} bytes) skipped", path, in.gcount()));
    // Cut it off, so that the records appended from now on are whole ones.
    if (path == journal_ && !read_only_ &&
        ::truncate(path.c_str(), static_cast<off_t>((n + 1) * sizeof(Stored))) != 0)
      throw os_error(path);
  }
  if (path == journal_) journal_records_ = n;
}

void LocalGreyStore::get(const policy::GreyKey& key, Found found) {
  found(get(key));
}

std::optional<policy::GreyRecord> LocalGreyStore::get(const policy::GreyKey& key) {
  std::lock_guard lock(mutex_);
  const auto it = map_.find(key);
  if (it == map_.end() || it->second.expires <= clamp32(now_())) return std::nullopt;
  return policy::GreyRecord{it->second.first, it->second.last, it->second.passes};
}

void LocalGreyStore::put(const policy::GreyKey& key, const policy::GreyRecord& r,
                         std::chrono::seconds ttl) {
  const auto now = clamp32(now_());
  const Stored s{key, clamp32(r.first), clamp32(r.last), r.passes,
                 clamp32(static_cast<std::int64_t>(now) + ttl.count())};
  std::lock_guard lock(mutex_);
  if (map_.size() >= capacity_ && !map_.contains(key)) make_room(now);
  map_[key] = Value{s.first, s.last, s.passes, s.expires};
  append(s);
}

void LocalGreyStore::make_room(std::uint32_t now) {
  std::erase_if(map_, [&](const auto& kv) { return kv.second.expires <= now; });
  if (map_.size() < capacity_ - capacity_ / 10) return;
  // The least recently seen tenth goes.
  std::vector<std::uint32_t> lasts;
  lasts.reserve(map_.size());
  for (const auto& kv : map_) lasts.push_back(kv.second.last);
  const auto cut = lasts.begin() + static_cast<std::ptrdiff_t>(lasts.size() / 10);
  std::nth_element(lasts.begin(), cut, lasts.end());
  const auto oldest = *cut;
  std::erase_if(map_, [&](const auto& kv) { return kv.second.last <= oldest; });
}

void LocalGreyStore::append(const Stored& s) {
  if (fd_ < 0) return;
  for (;;) {
    const auto n = ::write(fd_, &s, sizeof s);
    if (n == static_cast<ssize_t>(sizeof s)) {
      journal_bytes_ += static_cast<off_t>(sizeof s);
      break;
    }
    if (n < 0 && errno == EINTR) continue;
    // A full disk: the record lives in memory until the next snapshot, and
    // a part of it written is cut off, so that the next ones stay aligned.
    ++write_errors_;
    if (n > 0 && ::ftruncate(fd_, journal_bytes_) != 0) {
      ::close(fd_);  // misaligned from here: no more journal until a restart folds it
      fd_ = -1;
    }
    break;
  }
  if (++journal_records_ > std::max<std::size_t>(100'000, 2 * map_.size()) && !stuck_) compact();
}

void LocalGreyStore::compact() {
  if (writing_) return;
  // The journal so far is set aside (read at load until the snapshot that
  // holds it is in place) and a new one begun; the snapshot is written
  // from a copy, on a thread of its own. A compaction that failed leaves
  // greylist.journal.old: no other is tried (stuck_) until a restart folds
  // it (the constructor), and the failure is counted.
  if (::access(old_journal_.c_str(), F_OK) == 0 ||
      ::rename(journal_.c_str(), old_journal_.c_str()) != 0) {
    stuck_ = true;
    ++write_errors_;
    return;
  }
  const auto h = header();
  const int fd =
      ::open(journal_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0 || ::write(fd, h.data(), h.size()) != static_cast<ssize_t>(h.size())) {
    // Back as it was: the old journal goes on.
    if (fd >= 0) ::close(fd);
    ::rename(old_journal_.c_str(), journal_.c_str());
    stuck_ = true;
    ++write_errors_;
    return;
  }
  ::close(fd_);
  fd_ = fd;
  journal_bytes_ = static_cast<off_t>(h.size());
  journal_records_ = 0;
  std::string data = snapshot_data();
  if (writer_.joinable()) writer_.join();  // finished: writing_ is false
  writing_ = true;
  writer_ = std::thread([this, data = std::move(data)] {
    bool ok = true;
    try {
      write_durably(dir_, snapshot_, data);
      ok = ::unlink(old_journal_.c_str()) == 0;
    } catch (const std::exception&) {
      ok = false;  // greylist.journal.old stays, read at load and folded there
    }
    std::lock_guard lock(mutex_);
    writing_ = false;
    if (!ok) {
      stuck_ = true;
      ++write_errors_;
    }
  });
}

std::optional<std::size_t> LocalGreyStore::size() const {
  std::lock_guard lock(mutex_);
  return map_.size();
}

void CacheGreyStore::get(const policy::GreyKey& key, Found found) {
  cache_.get("grey:" + policy::to_hex(key),
             [found = std::move(found)](std::optional<std::string> v) {
               found(v ? policy::decode_grey(*v) : std::nullopt);
             });
}

void CacheGreyStore::put(const policy::GreyKey& key, const policy::GreyRecord& record,
                         std::chrono::seconds ttl) {
  cache_.put("grey:" + policy::to_hex(key), policy::encode(record), ttl);
}

}  // namespace geomx::state
