#pragma once
// A file replaced whole and on disk before the call returns.
#include <string>

namespace geomx::state {

// All of `data` to `path` in `dir`: a temp file beside it, fsync, rename
// over, fsync of the directory (so the rename itself is durable). Throws
// std::runtime_error naming the file and the error; the old file stays.
void write_durably(const std::string& dir, const std::string& path, const std::string& data);

}  // namespace geomx::state
