#pragma once
// The one mixing hash for tables keyed by addresses, which clients choose
// (and for the balancer's rendezvous hash): splitmix64's finaliser mixes
// every bit, so that addresses that differ only in high or low bits do not
// share buckets.
#include <cstddef>
#include <cstdint>

#include "geo/address.hpp"

namespace geomx::geo {

constexpr std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

inline std::size_t mix_hash(std::uint64_t lo, std::uint64_t hi, std::uint64_t extra) {
  return static_cast<std::size_t>(mix64(lo ^ (hi * 0x9e3779b97f4a7c15ULL) ^ (extra << 56)));
}

// For unordered containers keyed by client addresses or prefixes.
struct AddressHash {
  std::size_t operator()(const Address& a) const {
    const auto bits = a.v6_bits();
    return mix_hash(static_cast<std::uint64_t>(bits), static_cast<std::uint64_t>(bits >> 64),
                    static_cast<unsigned>(a.family()));
  }
  std::size_t operator()(const Prefix& p) const {
    const auto bits = p.network().v6_bits();
    return mix_hash(static_cast<std::uint64_t>(bits), static_cast<std::uint64_t>(bits >> 64),
                    p.length() * 2u + static_cast<unsigned>(p.family()));
  }
  // An address and a port (any type with .address and .port).
  template <class Endpoint>
  requires requires(const Endpoint& e) { e.port; }
  std::size_t operator()(const Endpoint& e) const {
    const auto bits = e.address.v6_bits();
    return mix_hash(static_cast<std::uint64_t>(bits), static_cast<std::uint64_t>(bits >> 64),
                    std::uint64_t{e.port} * 2u + static_cast<unsigned>(e.address.family()));
  }
};

}  // namespace geomx::geo
