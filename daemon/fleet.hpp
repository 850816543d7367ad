#pragma once
// [store] for the process: the credentials from store.password_file (and
// store.sentinel_password_file),
// and what `check` and `run` warn about.
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "state/redis.hpp"

namespace geomx::daemon {

struct StoreCredentials {
  std::string user, password;
  std::string problem;  // why none were read (empty: read, or none asked for)
};
// Reads a password file (`setting` names it in problems): its first line,
// "password" or "user:password" (a password with a colon needs the user:
// "default:pa:ss"). No file: no credentials.
StoreCredentials read_credentials(const std::string& file, std::string_view setting);
// Redis's (store.password_file) and the sentinels' (store.sentinel_password_file).
inline StoreCredentials store_credentials(const conf::Store& store) {
  return read_credentials(store.password_file, "store.password_file");
}
inline StoreCredentials sentinel_credentials(const conf::Store& store) {
  return read_credentials(store.sentinel_password_file, "store.sentinel_password_file");
}
// How to reach Redis, with those credentials.
state::RedisOptions redis_options(const conf::Store& store, const StoreCredentials& credentials);
// What an operator should hear of [store] (never the password): Redis off
// this host without TLS, a password file others can read or that cannot be read.
std::vector<std::string> store_warnings(const conf::Store& store);

}  // namespace geomx::daemon
