// The coordination protocol's transport (proto/coord.proto): TCP, each
// message a 4-byte big-endian length and an Envelope, and each after the
// Hellos checked with a key that only holders of the site's key can derive.
#pragma once

#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "store/signing.h"
#include "coord.pb.h"

namespace cryo::coord {

// 2: connections are authenticated with the site's key.
inline constexpr uint32_t kVersion = 2;

// "IP:PORT"; port 0 picks a free one.  local_address() tells which.
Result<UniqueFd> listen_tcp(const std::string& address);
std::string local_address(int fd);
Result<UniqueFd> connect_tcp(const std::string& address, double timeout_seconds);

// A connection between a coordinator and an agent after the Hellos, on
// which every message is authenticated (proto/coord.proto says how).
class Channel {
 public:
  Channel() = default;
  bool valid() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }
  void reset() { fd_.reset(); }
  // The other end's Hello.
  const Hello& peer() const { return peer_; }

  Status send(const Envelope& e);
  // Waits at most timeout_seconds (< 0: for ever); a timeout fails with
  // code ETIMEDOUT, a closed connection with ECONNRESET, a message that
  // fails its check with EBADMSG (and the connection is then closed).
  Status recv(Envelope& e, double timeout_seconds);

 private:
  friend Result<Channel> handshake(UniqueFd fd, const store::SigningKey& key, bool coordinator,
                                   const std::string& node, const std::string& who, double timeout_seconds);
  UniqueFd fd_;
  std::string key_;
  bool coordinator_ = false;
  uint64_t sent_ = 0, received_ = 0;
  Hello peer_;
};

// Exchanges Hellos on fd, from the coordinator's end or the agent's (node:
// its name), and checks that the other end (`who`, in errors) speaks this
// protocol and holds the same site key.  Channel checks every message
// after.
Result<Channel> handshake(UniqueFd fd, const store::SigningKey& key, bool coordinator, const std::string& node,
                          const std::string& who, double timeout_seconds);

}  // namespace cryo::coord
