#pragma once
// A hash for tables keyed by client addresses, which clients choose: mixes
// every bit (splitmix64's finaliser), so that addresses that differ only in
// high or low bits do not share buckets.
#include <cstddef>
#include <cstdint>

namespace geomx::proxy {

inline std::size_t mix_hash(std::uint64_t lo, std::uint64_t hi, std::uint64_t extra) {
  std::uint64_t x = lo ^ (hi * 0x9e3779b97f4a7c15ULL) ^ (extra << 56);
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return static_cast<std::size_t>(x);
}

}  // namespace geomx::proxy
