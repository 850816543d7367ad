#pragma once
// RAII for libmaxminddb's MMDB_s. Used only at load time (and by the
// benchmark and tests that compare against libmaxminddb).
#include <maxminddb.h>

#include <string>

namespace geomx::geo {

class MmdbFile {
 public:
  // Throws LoadError with libmaxminddb's message.
  explicit MmdbFile(const std::string& path);
  ~MmdbFile();
  MmdbFile(const MmdbFile&) = delete;
  MmdbFile& operator=(const MmdbFile&) = delete;

  const MMDB_s& get() const { return db_; }
  MMDB_s& get() { return db_; }
  const std::string& path() const { return path_; }

 private:
  MMDB_s db_{};
  std::string path_;
};

}  // namespace geomx::geo
