// cryo-init: PID 1 of a job's PID namespace.
//
//   cryo-init [--lo-up] [--chdir DIR] -- COMMAND [ARGS...]
//
// --chdir moves init itself (not COMMAND) to DIR: CRIU works in the dumped
// init's directory, so two jobs dumped at once must not share it.
// It makes itself a session leader (CRIU refuses to dump a tree whose
// session leader is outside the namespace), starts COMMAND, forwards the
// signals it receives to it, reaps every orphan, and exits with COMMAND's
// status (128+N if a signal N killed it).  It is dumped and restored with
// the job, so it keeps no state outside its own memory.
//
// If COMMAND cannot be executed, the errno is written to fd 3 (the launch
// status pipe, closed on a successful exec) and init exits with 127.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace {

volatile sig_atomic_t child_pid = 0;

void forward(int sig) {
  if (child_pid > 0) ::kill(child_pid, sig);
}

int bring_lo_up() {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct ifreq ifr {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  int rc = ::ioctl(s, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags |= IFF_UP;
    rc = ::ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  ::close(s);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  int i = 1;
  bool lo_up = false;
  const char* chdir_to = nullptr;
  for (; i < argc; i++) {
    if (std::strcmp(argv[i], "--lo-up") == 0) lo_up = true;
    else if (std::strcmp(argv[i], "--chdir") == 0 && i + 1 < argc) chdir_to = argv[++i];
    else if (std::strcmp(argv[i], "--") == 0) { i++; break; }
  }
  if (i >= argc) {
    std::fprintf(stderr, "usage: cryo-init [--lo-up] [--chdir DIR] -- COMMAND [ARGS...]\n");
    return 2;
  }
  ::setsid();
  if (lo_up && bring_lo_up() < 0) std::fprintf(stderr, "cryo-init: cannot bring up lo: %s\n", std::strerror(errno));

  // Forward every catchable signal to the job.  SIGCHLD is ours.
  struct sigaction sa {};
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD) continue;
    ::sigaction(sig, &sa, nullptr);
  }

  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    (void)!::write(3, &e, sizeof e);
    return 127;
  }
  if (pid == 0) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
      if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
    ::fcntl(3, F_SETFD, FD_CLOEXEC);
    ::execvp(argv[i], argv + i);
    int e = errno;
    (void)!::write(3, &e, sizeof e);
    ::_exit(127);
  }
  child_pid = pid;
  ::close(3);
  if (chdir_to && ::chdir(chdir_to) < 0)
    std::fprintf(stderr, "cryo-init: cannot change to %s: %s\n", chdir_to, std::strerror(errno));

  for (;;) {
    int status;
    pid_t w = ::waitpid(-1, &status, 0);
    if (w < 0) {
      if (errno == EINTR) continue;
      return 127;  // no children left at all: cannot happen while the job lives
    }
    if (w != pid) continue;  // an orphan, reaped
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  }
}
