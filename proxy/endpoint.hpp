#pragma once
// Conversions between conf::Endpoint and Asio's tcp::endpoint.
#include <boost/asio/ip/tcp.hpp>

#include "conf/config.hpp"

namespace geomx::proxy {

inline boost::asio::ip::tcp::endpoint to_asio(const conf::Endpoint& e) {
  namespace ip = boost::asio::ip;
  if (e.address.is_v4()) return {ip::address_v4(e.address.v4_bits()), e.port};
  ip::address_v6::bytes_type b;
  for (int i = 0; i < 16; ++i)
    b[i] = static_cast<unsigned char>(e.address.v6_bits() >> (8 * (15 - i)));
  return {ip::address_v6(b), e.port};
}

inline conf::Endpoint from_asio(const boost::asio::ip::tcp::endpoint& e) {
  const auto a = e.address();
  if (a.is_v4()) return {geo::Address::v4(a.to_v4().to_uint()), e.port()};
  geo::u128 bits = 0;
  for (auto byte : a.to_v6().to_bytes()) bits = bits << 8 | byte;
  return {geo::Address::v6(bits), e.port()};
}

}  // namespace geomx::proxy
