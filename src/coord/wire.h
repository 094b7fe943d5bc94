// The coordination protocol's transport (proto/coord.proto): TCP, each
// message a 4-byte big-endian length and an Envelope.
#pragma once

#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "coord.pb.h"

namespace cryo::coord {

inline constexpr uint32_t kVersion = 1;

// "IP:PORT"; port 0 picks a free one.  local_address() tells which.
Result<UniqueFd> listen_tcp(const std::string& address);
std::string local_address(int fd);
Result<UniqueFd> connect_tcp(const std::string& address, double timeout_seconds);

Status send(int fd, const Envelope& e);
// Waits at most timeout_seconds (< 0: for ever); a timeout fails with
// code ETIMEDOUT, a closed connection with ECONNRESET.
Status recv(int fd, Envelope& e, double timeout_seconds);

}  // namespace cryo::coord
