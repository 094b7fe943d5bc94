#include "job/control.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/sys.h"

namespace cryo::job {

namespace {
Result<sockaddr_un> address(int dirfd) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::string p = "/proc/self/fd/" + std::to_string(dirfd) + "/control.sock";
  std::strncpy(a.sun_path, p.c_str(), sizeof a.sun_path - 1);
  return a;
}
}  // namespace

Result<UniqueFd> control_listen(const std::string& job_dir) {
  auto dir = sys::open_dir(job_dir);
  if (!dir) return dir.error();
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s.valid()) return sys_error("cannot create the control socket");
  ::unlinkat(dir->get(), "control.sock", 0);
  auto a = address(dir->get());
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&*a), sizeof *a) < 0)
    return sys_error("cannot create the control socket in '" + job_dir + "'");
  if (::listen(s.get(), 16) < 0) return sys_error("cannot listen on the control socket");
  return s;
}

Result<UniqueFd> control_connect(const std::string& job_dir) {
  auto dir = sys::open_dir(job_dir);
  if (!dir) return dir.error();
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s.valid()) return sys_error("cannot create a socket");
  auto a = address(dir->get());
  int rc;
  do rc = ::connect(s.get(), reinterpret_cast<sockaddr*>(&*a), sizeof *a);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) return sys_error("cannot reach the job's supervisor");
  return s;
}

Status send_message(int fd, const google::protobuf::Message& m) {
  std::string buf;
  m.SerializeToString(&buf);
  ssize_t n;
  do n = ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("cannot send on the control socket");
  return {};
}

Status recv_message(int fd, google::protobuf::Message& m) {
  std::string buf(1 << 16, '\0');
  ssize_t n;
  do n = ::recv(fd, buf.data(), buf.size(), 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("cannot read from the control socket");
  if (n == 0) return make_error("the job's supervisor closed the connection");
  if (!m.ParseFromArray(buf.data(), static_cast<int>(n))) return make_error("undecodable message on the control socket");
  return {};
}

control::Reply failure_reply(const Error& e) {
  control::Reply r;
  auto* f = r.mutable_failure();
  f->set_message(e.message);
  if (!e.hint.empty()) f->set_hint(e.hint);
  if (e.code) f->set_code(e.code);
  if (ErrorKind k = kind_of(e); k != ErrorKind::unknown) f->set_kind(kind_name(k));
  return r;
}

Error failure_error(const control::Failure& f) {
  Error e{f.message(), f.code(), f.hint()};
  for (auto k : {ErrorKind::usage, ErrorKind::config, ErrorKind::not_found, ErrorKind::denied, ErrorKind::busy,
                 ErrorKind::corrupt, ErrorKind::no_space, ErrorKind::criu, ErrorKind::exec, ErrorKind::unfit})
    if (f.kind() == kind_name(k)) e.kind = k;
  return e;
}

void send_failure(int fd, const Error& e) { (void)send_message(fd, failure_reply(e)); }

}  // namespace cryo::job
