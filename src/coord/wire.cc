#include "coord/wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

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

Status send(int fd, const Envelope& e) {
  std::string body;
  if (!e.SerializeToString(&body)) return make_error("cannot encode a coordination message");
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

Status recv(int fd, Envelope& e, double timeout) {
  double deadline = timeout < 0 ? -1 : sys::now() + timeout;
  uint32_t len;
  CRYO_TRY(read_exact(fd, reinterpret_cast<char*>(&len), 4, deadline));
  len = ntohl(len);
  if (len > (64u << 20)) return make_error("a coordination message claims " + std::to_string(len) + " bytes");
  std::string body(len, '\0');
  CRYO_TRY(read_exact(fd, body.data(), len, deadline));
  if (!e.ParseFromString(body)) return make_error("a coordination message cannot be decoded");
  return {};
}

}  // namespace cryo::coord
