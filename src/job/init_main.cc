// cryo-init: PID 1 of a job's PID namespace.
//
//   cryo-init [--lo-up] [--chdir DIR] [--hostname NAME] [--user UID:GID:GROUPS] [--serve FD]
//             [--own-proc [--own-shm] | --root ROOTFS [--bind SRC:DST]... [--workdir DIR]]
//             -- [COMMAND [ARGS...]]
//
// --chdir moves init itself (not COMMAND) to DIR: CRIU works in the dumped
// init's directory, so two jobs dumped at once must not share it.
//
// --own-proc (init must be PID 1 of a new mount namespace too) makes the
// host's mounts slaves of the host's, drops the namespaces bound to files
// (ip netns's), and mounts a new /proc, of the job's PID namespace, in
// place of the host's; --own-shm (with a new IPC
// namespace) a new tmpfs on /dev/shm and a new mqueue on /dev/mqueue
// (if the host has that directory).  job/mounts.h says why.
//
// --root runs the job in a container image's root file system (an
// Apptainer sandbox; job/apptainer.h).  init must then be PID 1 of a new
// mount namespace too.  It builds the container's mounts: ROOTFS itself
// (read-only), a new /proc, a small /dev (a tmpfs with the host's null,
// zero, full, random, urandom and tty bound in, and /dev/shm), a tmpfs /tmp,
// its own binary at /dev/.cryo-init, and each --bind; then it makes ROOTFS
// the root (pivot_root), drops every other mount, and executes itself
// again from /dev/.cryo-init, so that nothing it or the job uses lies
// outside the namespace's mounts (CRIU could not name it).  COMMAND starts
// in --workdir (default /).  It is statically linked for the same reason.
//
// --user UID:GID:G1,G2,... is whom the job runs as: once its namespaces
// and mounts are built, init takes on that user's ids and groups (all of
// real, effective and saved), so that it and everything it starts hold no
// more than she does; it stays dumpable, so her supervisor can read it.
//
// --hostname sets the UTS namespace's host name (a part of a multi-node
// job, src/coord/).  --serve FD also starts the commands that arrive on
// the pipe FD (each a 4-byte length, then its arguments, each ending in a
// NUL), as init's children: how an MPI launcher in part 0 starts its
// daemons in the other parts.  With --serve, COMMAND may be left out; init
// then runs until it is killed, or until the pipe is closed and none of
// its children is left.
// It makes itself a session leader (CRIU refuses to dump a tree whose
// session leader is outside the namespace), starts COMMAND, forwards the
// signals it receives to it, reaps every orphan, and exits with COMMAND's
// status (128+N if a signal N killed it).  It is dumped and restored with
// the job, so it keeps no state outside its own memory.
//
// If COMMAND cannot be executed, or the container cannot be set up, the
// errno and a message are written to fd 3 (the launch status pipe, closed
// on a successful exec) and init exits with 127.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

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

// Reports a failure on the launch status pipe (and stderr), then exits.
[[noreturn]] void fail(const std::string& what) {
  int e = errno;
  std::string msg = what + ": " + std::strerror(e);
  std::fprintf(stderr, "cryo-init: %s\n", msg.c_str());
  (void)!::write(3, &e, sizeof e);
  (void)!::write(3, msg.data(), msg.size());
  ::_exit(127);
}

// Makes path exist as a directory (dir) or an empty file, for a mount point.
void mount_point(const std::string& path, bool dir) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return;
  std::string parent = path.substr(0, path.rfind('/'));
  if (!parent.empty()) mount_point(parent, true);
  if (dir ? ::mkdir(path.c_str(), 0755) : ::close(::open(path.c_str(), O_WRONLY | O_CREAT, 0644)))
    if (errno != EEXIST) fail("cannot create the mount point " + path);
}

void bind(const std::string& src, const std::string& dst) {
  struct stat st;
  if (::stat(src.c_str(), &st) < 0) fail("cannot bind " + src);
  mount_point(dst, S_ISDIR(st.st_mode));
  if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND, nullptr) < 0) fail("cannot bind " + src + " to " + dst);
}

// Builds the container's mounts under root and makes root the root.
void enter_root(const std::string& root, const std::vector<std::string>& binds) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) fail("cannot make the mounts private");
  if (::mount(root.c_str(), root.c_str(), nullptr, MS_BIND, nullptr) < 0) fail("cannot bind " + root);
  for (const char* d : {"/proc", "/dev", "/tmp"}) mount_point(root + d, true);
  if (::mount("proc", (root + "/proc").c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0)
    fail("cannot mount /proc");
  if (::mount("tmpfs", (root + "/dev").c_str(), "tmpfs", MS_NOSUID, "mode=755,size=1m") < 0) fail("cannot mount /dev");
  for (const char* d : {"null", "zero", "full", "random", "urandom", "tty"}) bind(std::string("/dev/") + d, root + "/dev/" + d);
  mount_point(root + "/dev/shm", true);
  if (::mount("tmpfs", (root + "/dev/shm").c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
    fail("cannot mount /dev/shm");
  for (const char* l : {"fd:/proc/self/fd", "stdin:/proc/self/fd/0", "stdout:/proc/self/fd/1", "stderr:/proc/self/fd/2"}) {
    std::string s = l;
    (void)!::symlink(s.substr(s.find(':') + 1).c_str(), (root + "/dev/" + s.substr(0, s.find(':'))).c_str());
  }
  if (::mount("tmpfs", (root + "/tmp").c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) fail("cannot mount /tmp");
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n < 0) fail("cannot find cryo-init's own binary");
  self[n] = 0;
  bind(self, root + "/dev/.cryo-init");
  for (const auto& b : binds) {
    auto colon = b.find(':');
    std::string src = b.substr(0, colon), dst = colon == std::string::npos ? src : b.substr(colon + 1);
    bind(src, root + dst);
  }
  // The image stays as it is: read-only, as Apptainer runs it.
  if (::mount(nullptr, root.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) < 0)
    fail("cannot make " + root + " read-only");
  if (::chdir(root.c_str()) < 0) fail("cannot enter " + root);
  if (::syscall(SYS_pivot_root, ".", ".") < 0) fail("cannot make " + root + " the root");
  if (::umount2(".", MNT_DETACH) < 0) fail("cannot drop the host's mounts");
  if (::chdir("/") < 0) fail("cannot enter /");
  // Standard input from the container's own /dev/null (the host's is outside).
  int null = ::open("/dev/null", O_RDONLY);
  if (null < 0 || ::dup2(null, 0) < 0) fail("cannot open /dev/null");
  ::close(null);
}

// Namespaces bound to files (ip netns's /run/netns/NAME, for one) are the
// host's business, not the job's: a restore elsewhere would have to bind
// them again.  They go, and the mounts they were in take no new ones.
void drop_namespace_mounts() {
  FILE* f = std::fopen("/proc/self/mountinfo", "r");
  if (!f) fail("cannot read the mounts");
  std::vector<std::pair<std::string, std::string>> mounts;  // id, point
  std::vector<std::pair<std::string, std::string>> ns;      // point, parent id
  char line[8192];
  while (std::fgets(line, sizeof line, f)) {
    char id[32], parent[32], devno[32], root[4096], point[4096];
    if (std::sscanf(line, "%31s %31s %31s %4095s %4095s", id, parent, devno, root, point) != 5) continue;
    mounts.emplace_back(id, point);
    const char* dash = std::strstr(line, " - ");
    if (dash && std::strncmp(dash + 3, "nsfs ", 5) == 0) ns.emplace_back(point, parent);
  }
  std::fclose(f);
  for (const auto& [point, parent] : ns) {
    (void)::umount2(point.c_str(), MNT_DETACH);
    for (const auto& [id, p] : mounts)
      if (id == parent) (void)::mount(nullptr, p.c_str(), nullptr, MS_PRIVATE, nullptr);
  }
}

// The job's own /proc (and /dev/shm, /dev/mqueue) in the host's tree.
void own_mounts(bool shm) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) < 0) fail("cannot make the mounts the job's own");
  drop_namespace_mounts();
  // The host's go, with what is mounted under them: CRIU would have to
  // name mounts hidden under the job's.
  if (::umount2("/proc", MNT_DETACH) < 0) fail("cannot unmount the host's /proc");
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0) fail("cannot mount /proc");
  struct stat st;
  if (!shm || ::stat("/dev/shm", &st) < 0) return;
  while (::umount2("/dev/shm", MNT_DETACH) == 0) {
  }
  if (::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) fail("cannot mount /dev/shm");
  if (::stat("/dev/mqueue", &st) < 0 || !S_ISDIR(st.st_mode)) return;
  while (::umount2("/dev/mqueue", MNT_DETACH) == 0) {
  }
  if (::mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0)
    fail("cannot mount /dev/mqueue");
}

}  // namespace

// Starts a command that arrived on the serve pipe; false once the pipe is closed.
bool serve_one(int fd) {
  uint32_t len;
  ssize_t n = ::read(fd, &len, sizeof len);
  if (n == 0) return false;
  if (n != sizeof len || len == 0 || len > 65536) return true;
  std::string buf(len, '\0');
  size_t got = 0;
  while (got < len) {
    ssize_t r = ::read(fd, buf.data() + got, len - got);
    if (r <= 0) return r != 0;
    got += static_cast<size_t>(r);
  }
  std::vector<char*> args;
  for (size_t p = 0; p < buf.size(); p += std::strlen(buf.data() + p) + 1) args.push_back(buf.data() + p);
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
      if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
    ::close(fd);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cryo-init: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  return true;
}

// Takes on "UID:GID:G1,G2,...": groups, then gid, then uid.
void become(const char* user) {
  char* end = nullptr;
  unsigned long uid = std::strtoul(user, &end, 10);
  if (*end != ':') fail("bad --user");
  unsigned long gid = std::strtoul(end + 1, &end, 10);
  if (*end != ':') fail("bad --user");
  std::vector<gid_t> groups;
  for (const char* p = end + 1; *p;) {
    groups.push_back(static_cast<gid_t>(std::strtoul(p, &end, 10)));
    if (end == p || (*end && *end != ',')) fail("bad --user");
    p = *end ? end + 1 : end;
  }
  if (::setgroups(groups.size(), groups.data()) < 0) fail("cannot take on the user's groups");
  if (::setresgid(static_cast<gid_t>(gid), static_cast<gid_t>(gid), static_cast<gid_t>(gid)) < 0)
    fail("cannot take on the user's group");
  if (::setresuid(static_cast<uid_t>(uid), static_cast<uid_t>(uid), static_cast<uid_t>(uid)) < 0)
    fail("cannot take on the user's id");
  ::prctl(PR_SET_DUMPABLE, 1);
}

int main(int argc, char** argv) {
  int i = 1;
  const char* user = nullptr;
  bool lo_up = false;
  bool own_proc = false, own_shm = false;
  const char* chdir_to = nullptr;
  const char* root = nullptr;
  const char* workdir = nullptr;
  const char* hostname = nullptr;
  int serve = -1;
  std::vector<std::string> binds;
  for (; i < argc; i++) {
    if (std::strcmp(argv[i], "--lo-up") == 0) lo_up = true;
    else if (std::strcmp(argv[i], "--own-proc") == 0) own_proc = true;
    else if (std::strcmp(argv[i], "--own-shm") == 0) own_shm = true;
    else if (std::strcmp(argv[i], "--chdir") == 0 && i + 1 < argc) chdir_to = argv[++i];
    else if (std::strcmp(argv[i], "--root") == 0 && i + 1 < argc) root = argv[++i];
    else if (std::strcmp(argv[i], "--bind") == 0 && i + 1 < argc) binds.push_back(argv[++i]);
    else if (std::strcmp(argv[i], "--workdir") == 0 && i + 1 < argc) workdir = argv[++i];
    else if (std::strcmp(argv[i], "--hostname") == 0 && i + 1 < argc) hostname = argv[++i];
    else if (std::strcmp(argv[i], "--user") == 0 && i + 1 < argc) user = argv[++i];
    else if (std::strcmp(argv[i], "--serve") == 0 && i + 1 < argc) serve = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--") == 0) { i++; break; }
  }
  if (i >= argc && serve < 0) {
    std::fprintf(stderr, "usage: cryo-init [--lo-up] [--chdir DIR] [--hostname NAME] [--user UID:GID:GROUPS] [--serve FD] [--own-proc [--own-shm] | --root ROOTFS [--bind SRC:DST]... [--workdir DIR]] -- [COMMAND [ARGS...]]\n");
    return 2;
  }
  if (hostname && ::sethostname(hostname, std::strlen(hostname)) < 0) fail("cannot set the host name");
  if (own_proc) own_mounts(own_shm);
  if (root) {
    enter_root(root, binds);
    // Again, from inside: the same PID 1, its binary now within the mounts.
    std::vector<char*> args{const_cast<char*>("/dev/.cryo-init")};
    if (lo_up) args.push_back(const_cast<char*>("--lo-up"));
    if (workdir) args.insert(args.end(), {const_cast<char*>("--workdir"), const_cast<char*>(workdir)});
    if (user) args.insert(args.end(), {const_cast<char*>("--user"), const_cast<char*>(user)});
    args.push_back(const_cast<char*>("--"));
    for (int k = i; k < argc; k++) args.push_back(argv[k]);
    args.push_back(nullptr);
    ::execv("/dev/.cryo-init", args.data());
    fail("cannot run /dev/.cryo-init");
  }
  ::setsid();
  if (lo_up && bring_lo_up() < 0) std::fprintf(stderr, "cryo-init: cannot bring up lo: %s\n", std::strerror(errno));
  if (user) become(user);

  // Forward every catchable signal to the job.  SIGCHLD is ours.
  struct sigaction sa {};
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD) continue;
    ::sigaction(sig, &sa, nullptr);
  }

  pid_t pid = i < argc ? ::fork() : 0;
  if (i >= argc) {
    ::close(3);  // nothing to start: the launch succeeded
    pid = -2;
  } else if (pid < 0) {
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
    if (workdir && ::chdir(workdir) < 0) std::fprintf(stderr, "cryo-init: cannot change to %s: %s\n", workdir, std::strerror(errno));
    ::execvp(argv[i], argv + i);
    int e = errno;
    (void)!::write(3, &e, sizeof e);
    ::_exit(127);
  }
  if (pid > 0) {
    child_pid = pid;
    ::close(3);
  }
  if (chdir_to && ::chdir(chdir_to) < 0)
    std::fprintf(stderr, "cryo-init: cannot change to %s: %s\n", chdir_to, std::strerror(errno));

  if (serve >= 0) {
    bool open = true;
    for (;;) {
      pollfd p{open ? serve : -1, POLLIN, 0};
      if (::poll(&p, 1, 100) > 0 && (p.revents & (POLLIN | POLLHUP))) open = serve_one(serve);
      int status;
      pid_t w;
      while ((w = ::waitpid(-1, &status, WNOHANG)) > 0)
        if (w == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      // No command can arrive any more (the agent is gone) and none runs.
      if (!open && w < 0 && errno == ECHILD) return 0;
    }
  }
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
