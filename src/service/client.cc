// The user's side of the service: send the request, forward signals, wait.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/sys.h"
#include "job/control.h"
#include "service.pb.h"
#include "service/service.h"

namespace cryo::service {

bool served_verb(const std::string& verb) { return verb == "run" || verb == "restore"; }

std::string verb_of(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    if (a == "--") return "";
    if (a.rfind("-", 0) == 0) {
      // Every global option takes a value, but these.
      if (a.find('=') == std::string::npos && a != "-h" && a != "--help" && a != "--version") i++;
      continue;
    }
    return a;
  }
  return "";
}

namespace {

// The signals a user sends her foreground cryo, and Slurm its batch
// script's: each goes on to the cryo the service runs.
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGCONT};

Result<UniqueFd> connect_service(const std::string& path, const std::string& verb) {
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s.valid()) return sys_error("cannot create a socket");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return make_error(ErrorKind::config, "the service's socket path is too long: " + path);
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  int rc;
  do rc = ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int e = errno;
    std::string who = sys::user_name(::getuid());
    if (e == ENOENT || e == ECONNREFUSED)
      return Error{"'cryo " + verb + "' as " + who + " goes through cryo's service on this node, and it is not running (" +
                       path + ": " + std::strerror(e) + ")",
                   e, "ask the node's admin to start it: 'systemctl enable --now cryod.socket' (docs/admin.md); "
                      "'cryo check' says what else this node lacks"}
          .of_kind(ErrorKind::unfit);
    return Error{"cannot reach cryo's service at " + path + ": " + std::strerror(e), e,
                 "docs/admin.md says how the service is installed"};
  }
  return s;
}

}  // namespace

Status reachable(const std::string& socket) {
  auto s = connect_service(socket, "run");
  if (!s) return s.error();
  return {};
}

Result<int> run_through_service(const std::string& socket, const std::vector<std::string>& args,
                                const std::vector<std::string>& env) {
  auto s = connect_service(socket, verb_of(args));
  if (!s) return s.error();
  auto cwd = sys::open(".", O_RDONLY | O_DIRECTORY);
  if (!cwd) return cwd.error().context("cannot open the working directory");

  // Signals are blocked before the request goes, so none is lost.
  sigset_t set, old;
  sigemptyset(&set);
  for (int sig : kForwarded) sigaddset(&set, sig);
  ::sigprocmask(SIG_BLOCK, &set, &old);
  struct Restore {
    sigset_t old;
    ~Restore() { ::sigprocmask(SIG_SETMASK, &old, nullptr); }
  } restore{old};
  UniqueFd sigfd(::signalfd(-1, &set, SFD_CLOEXEC));
  if (!sigfd.valid()) return sys_error("cannot create a signalfd");

  ServiceRequest req;
  req.set_version(kVersion);
  for (const auto& a : args) req.mutable_start()->add_args(a);
  for (const auto& e : env) req.mutable_start()->add_env(e);
  std::string data;
  req.SerializeToString(&data);
  CRYO_TRY(sys::send_packet(s->get(), data, {0, 1, 2, cwd->get()}));
  cwd->reset();

  for (;;) {
    pollfd p[2] = {{s->get(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return sys_error("poll");
    }
    if (p[1].revents & POLLIN) {
      signalfd_siginfo si;
      if (::read(sigfd.get(), &si, sizeof si) == sizeof si) {
        ServiceRequest fwd;
        fwd.set_version(kVersion);
        fwd.mutable_signal()->set_number(static_cast<int>(si.ssi_signo));
        fwd.SerializeToString(&data);
        (void)sys::send_packet(s->get(), data);
      }
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      auto packet = sys::recv_packet(s->get(), 1 << 16);
      if (!packet)
        return make_error("cryo's service closed the connection without an answer")
            .with_hint("its log (the node's system journal, or cryod's stderr) says why");
      ServiceReply reply;
      if (!reply.ParseFromString(*packet)) return make_error("cryo's service sent an answer that does not parse");
      if (reply.has_failure()) return job::failure_error(reply.failure());
      if (reply.has_exit_status()) return reply.exit_status();
    }
  }
}

}  // namespace cryo::service
