#include "coord/wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "base/hash.h"
#include "base/sys.h"

namespace cryo::coord {

namespace {

Result<sockaddr_in> parse(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return make_error("'" + address + "' is not IP:PORT");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::atoi(address.c_str() + colon + 1)));
  if (::inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr) != 1)
    return make_error("'" + address + "' is not IP:PORT");
  return a;
}

// Waits until fd is ready for `events`, at most until deadline (< 0: for ever).
Status wait_for(int fd, short events, double deadline) {
  for (;;) {
    int ms = -1;
    if (deadline >= 0) {
      double left = deadline - sys::now();
      if (left <= 0) return Error{"no answer in time", ETIMEDOUT, ""};
      ms = static_cast<int>(left * 1000) + 1;
    }
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("cannot wait on a connection");
    if (n > 0) return {};
  }
}

Status read_exact(int fd, char* buf, size_t len, double deadline) {
  while (len > 0) {
    CRYO_TRY(wait_for(fd, POLLIN, deadline));
    ssize_t n = ::read(fd, buf, len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return sys_error("cannot read from the connection");
    if (n == 0) return Error{"the connection was closed", ECONNRESET, ""};
    buf += n;
    len -= static_cast<size_t>(n);
  }
  return {};
}

Status send_frame(int fd, const std::string& body) {
  uint32_t len = htonl(static_cast<uint32_t>(body.size()));
  std::string frame(reinterpret_cast<const char*>(&len), 4);
  frame += body;
  size_t off = 0;
  while (off < frame.size()) {
    ssize_t n = ::send(fd, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("cannot send on the connection");
    off += static_cast<size_t>(n);
  }
  return {};
}

Result<std::string> recv_frame(int fd, double timeout) {
  double deadline = timeout < 0 ? -1 : sys::now() + timeout;
  uint32_t len;
  CRYO_TRY(read_exact(fd, reinterpret_cast<char*>(&len), 4, deadline));
  len = ntohl(len);
  if (len > (64u << 20)) return make_error("a coordination message claims " + std::to_string(len) + " bytes");
  std::string body(len, '\0');
  CRYO_TRY(read_exact(fd, body.data(), len, deadline));
  return body;
}

constexpr size_t kNonceBytes = 32;
constexpr size_t kMacChars = 64;  // hex HMAC-SHA256

std::string length_prefixed(const std::string& s) {
  uint32_t len = htonl(static_cast<uint32_t>(s.size()));
  return std::string(reinterpret_cast<const char*>(&len), 4) + s;
}

std::string message_mac(const std::string& key, char direction, uint64_t seq, std::string_view body) {
  std::string text = direction + std::to_string(seq) + "\n";
  text += body;
  return hmac_sha256(key, text);
}

}  // namespace

Result<UniqueFd> listen_tcp(const std::string& address) {
  auto a = parse(address);
  if (!a) return a.error();
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return sys_error("cannot create a socket");
  int one = 1;
  ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&*a), sizeof *a) < 0) return sys_error("cannot listen on " + address);
  if (::listen(s.get(), 16) < 0) return sys_error("cannot listen on " + address);
  return s;
}

std::string local_address(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) < 0) return "";
  char ip[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
  return std::string(ip) + ":" + std::to_string(ntohs(a.sin_port));
}

Result<UniqueFd> connect_tcp(const std::string& address, double timeout) {
  auto a = parse(address);
  if (!a) return a.error();
  double deadline = sys::now() + timeout;
  for (;;) {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s.valid()) return sys_error("cannot create a socket");
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&*a), sizeof *a) == 0) {
      int one = 1;
      ::setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return s;
    }
    // An agent still starting: try again until the deadline.
    if ((errno != ECONNREFUSED && errno != EINTR) || sys::now() > deadline)
      return sys_error("cannot reach the agent at " + address);
    ::usleep(100000);
  }
}

Result<Channel> handshake(UniqueFd fd, const store::SigningKey& key, bool coordinator, const std::string& node,
                          const std::string& who, double timeout) {
  Envelope mine;
  Hello* h = mine.mutable_hello();
  h->set_version(kVersion);
  if (!coordinator) h->set_node(node);
  std::string nonce(kNonceBytes, '\0');
  if (::getrandom(nonce.data(), nonce.size(), 0) != static_cast<ssize_t>(nonce.size()))
    return sys_error("cannot get random bytes for a connection");
  h->set_nonce(nonce);
  h->set_key_id(key.id());
  std::string mine_bytes;
  if (!mine.SerializeToString(&mine_bytes)) return make_error("cannot encode a coordination message");
  // The coordinator speaks first; the agent always answers, so that the
  // coordinator can say what differs.
  std::string theirs_bytes;
  if (coordinator) CRYO_TRY(send_frame(fd.get(), mine_bytes));
  auto got = recv_frame(fd.get(), timeout);
  if (!got) return got.error();
  theirs_bytes = std::move(*got);
  if (!coordinator) CRYO_TRY(send_frame(fd.get(), mine_bytes));
  Envelope theirs;
  if (!theirs.ParseFromString(theirs_bytes) || !theirs.has_hello())
    return make_error(who + " did not answer the handshake");
  const Hello& peer = theirs.hello();
  if (peer.version() != kVersion)
    return make_error(fmt::format("{} speaks protocol {}, this cryo {}", who, peer.version(), kVersion))
        .with_hint("run the same cryo version on every node");
  CRYO_TRY(key.same_key(peer.key_id(), who));
  if (peer.nonce().size() != kNonceBytes) return make_error(who + " sent a malformed handshake");
  const std::string& hc = coordinator ? mine_bytes : theirs_bytes;
  const std::string& ha = coordinator ? theirs_bytes : mine_bytes;
  Channel c;
  c.fd_ = std::move(fd);
  c.key_ = key.mac("cryo coordination\n" + length_prefixed(hc) + length_prefixed(ha));
  c.coordinator_ = coordinator;
  c.peer_ = peer;
  return c;
}

Status Channel::send(const Envelope& e) {
  std::string body;
  if (!e.SerializeToString(&body)) return make_error("cannot encode a coordination message");
  body += message_mac(key_, coordinator_ ? 'c' : 'a', ++sent_, body);
  return send_frame(fd_.get(), body);
}

Status Channel::recv(Envelope& e, double timeout) {
  auto frame = recv_frame(fd_.get(), timeout);
  if (!frame) return frame.error();
  std::string_view body(*frame);
  bool sound = body.size() >= kMacChars;
  if (sound) {
    std::string_view mac = body.substr(body.size() - kMacChars);
    body.remove_suffix(kMacChars);
    sound = equal_in_constant_time(message_mac(key_, coordinator_ ? 'a' : 'c', ++received_, body), mac);
  }
  if (!sound) {
    fd_.reset();
    return Error{"a coordination message fails its check (not sent by a holder of the site's key on this connection)",
                 EBADMSG, ""};
  }
  if (!e.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return make_error("a coordination message cannot be decoded");
  return {};
}

}  // namespace cryo::coord
