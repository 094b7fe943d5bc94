// cryod's side of the service: accept, identify, start cryo for the caller.
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "base/identity.h"
#include "base/sys.h"
#include "job/control.h"
#include "service.pb.h"
#include "service/service.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace cryo::service {

namespace {

constexpr size_t kMaxRequest = 1 << 20;  // arguments and environment
constexpr double kRequestTimeout = 10;   // seconds a caller has to send her request
// The signals a caller may have forwarded to her cryo (client.cc sends these).
const std::set<int> kForwardable = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGCONT};

// What the service did, for the admin: on stderr, which the system's
// journal (or the log the admin points it at) keeps.
void note(const std::string& line) { std::fprintf(stderr, "cryod: %s %s\n", sys::iso_time(sys::now()).c_str(), line.c_str()); }

void reply(int conn, const ServiceReply& r) {
  std::string data;
  r.SerializeToString(&data);
  (void)sys::send_packet(conn, data);
}

void refuse(int conn, const Error& e) {
  ServiceReply r;
  *r.mutable_failure() = job::failure_reply(e).failure();
  reply(conn, r);
}

// What the service knows of a caller, from the kernel alone.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  UniqueFd pidfd;  // the caller's process, so that a reused PID is noticed
};

Result<Caller> identify(int conn) {
  Caller c;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return sys_error("SO_PEERCRED");
  c.uid = cred.uid;
  c.gid = cred.gid;
  c.pid = cred.pid;
  int pidfd = -1;
  len = sizeof pidfd;
  if (::getsockopt(conn, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0)
    return sys_error("cannot get the caller's process (SO_PEERPIDFD needs Linux 6.5)");
  c.pidfd.reset(pidfd);
  return c;
}

bool alive(const Caller& c) { return ::syscall(SYS_pidfd_send_signal, c.pidfd.get(), 0, nullptr, 0) == 0; }

// Her process's status line `key`, split into words.
std::vector<std::string> status_field(const std::string& status, const std::string& key) {
  std::stringstream in(status);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) {
      std::stringstream f(line.substr(key.size() + 1));
      std::vector<std::string> out;
      for (std::string w; f >> w;) out.push_back(w);
      return out;
    }
  return {};
}

// Everything the started cryo takes on from the caller, read from her
// process (not from her request).
struct Taken {
  Identity who;
  mode_t umask = 022;
  std::vector<std::pair<int, rlimit>> limits;
  std::string cgroups;  // her /proc/PID/cgroup
  std::string name, home;
};

Result<Taken> take_from(const Caller& c) {
  Taken t;
  t.who.uid = c.uid;
  t.who.gid = c.gid;
  std::string proc = fmt::format("/proc/{}/", c.pid);
  auto status = sys::read_file(proc + "status");
  if (!status) return status.error();
  auto creds = parse_process_status(*status);
  if (!creds) return creds.error();
  t.who.groups = creds->groups;
  auto um = status_field(*status, "Umask");
  if (um.size() == 1) t.umask = static_cast<mode_t>(std::stoul(um[0], nullptr, 8)) & 0777;
  // Her limits from /proc/PID/limits, one line per resource in the
  // kernel's order (prlimit on another user's process would need
  // CAP_SYS_RESOURCE, which some nodes' root lacks).
  auto limits = sys::read_file(proc + "limits");
  if (!limits) return limits.error();
  std::stringstream lines(*limits);
  std::string line;
  std::getline(lines, line);  // the header
  for (int r = 0; r < RLIM_NLIMITS && std::getline(lines, line); r++) {
    if (line.size() < 26) continue;
    std::stringstream f(line.substr(26));
    std::string soft, hard;
    f >> soft >> hard;
    auto value = [](const std::string& v) -> rlim_t {
      return v == "unlimited" ? RLIM_INFINITY : static_cast<rlim_t>(std::stoull(v));
    };
    try {
      t.limits.emplace_back(r, rlimit{value(soft), value(hard)});
    } catch (...) {
    }
  }
  auto cg = sys::read_file(proc + "cgroup");
  if (cg) t.cgroups = *cg;
  // All of that was her process's only if it still lives: a PID reused
  // meanwhile would have been someone else's.
  if (!alive(c)) return make_error("the caller ended before the service could start her job");
  passwd pw{}, *res = nullptr;
  char buf[4096];
  if (::getpwuid_r(c.uid, &pw, buf, sizeof buf, &res) != 0 || !res)
    return make_error(ErrorKind::denied, fmt::format("uid {} has no account on this node", c.uid))
        .with_hint("the node's user database (passwd, LDAP) must know every user who runs jobs");
  t.name = pw.pw_name;
  t.home = pw.pw_dir;
  return t;
}

// Moves this process into every cgroup of `cgroups` (a /proc/PID/cgroup):
// v2's and each mounted v1 hierarchy's.  Under Slurm that is the job's.
Status join_cgroups(const std::string& cgroups) {
  auto mountinfo = sys::read_file("/proc/self/mountinfo");
  if (!mountinfo) return mountinfo.error();
  // Each cgroup mount: where, and its options ("" for v2).  A v1
  // hierarchy is the mount whose options include every controller (or
  // name=) that a line of /proc/PID/cgroup names; other options (rw,
  // xattr, ...) do not matter.
  auto split = [](const std::string& list) {
    std::set<std::string> out;
    std::stringstream ss(list);
    for (std::string p; std::getline(ss, p, ',');) out.insert(p);
    return out;
  };
  std::vector<std::pair<std::set<std::string>, std::string>> mounts;
  std::string v2;
  std::stringstream in(*mountinfo);
  for (std::string line; std::getline(in, line);) {
    std::stringstream f(line);
    std::vector<std::string> w;
    for (std::string x; f >> x;) w.push_back(x);
    auto dash = std::find(w.begin(), w.end(), "-");
    if (w.size() < 5 || dash == w.end() || w.end() - dash < 4) continue;
    if (*(dash + 1) == "cgroup2" && v2.empty()) v2 = w[4];
    else if (*(dash + 1) == "cgroup") mounts.emplace_back(split(*(dash + 3)), w[4]);
  }
  auto where = [&](const std::string& controllers) -> std::string {
    if (controllers.empty()) return v2;
    auto want = split(controllers);
    for (const auto& [options, point] : mounts)
      if (std::includes(options.begin(), options.end(), want.begin(), want.end())) return point;
    return "";
  };
  std::stringstream cg(cgroups);
  for (std::string line; std::getline(cg, line);) {
    auto a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string path = line.substr(b + 1);
    if (path.empty() || path[0] != '/' || path.find("/..") != std::string::npos) continue;
    std::string point = where(line.substr(a + 1, b - a - 1));
    if (point.empty()) continue;  // a hierarchy this node does not mount
    std::string procs = point + path + "/cgroup.procs";
    auto fd = sys::open(procs, O_WRONLY);
    if (!fd) return fd.error().context("cannot join the caller's cgroup");
    CRYO_TRY(sys::write_all(fd->get(), std::to_string(::getpid()), procs));
  }
  return {};
}

// In the started cryo's process, before its exec: never returns.
[[noreturn]] void exec_cryo(const DaemonOptions& o, const Taken& t, const Start& start, std::vector<UniqueFd>& fds) {
  auto die = [](const std::string& what) {
    std::fprintf(stderr, "cryo: error: the service cannot start cryo for you: %s: %s\n", what.c_str(), std::strerror(errno));
    ::_exit(1);
  };
  ::setsid();
  for (int k = 0; k < 3; k++)
    if (::dup2(fds[static_cast<size_t>(k)].get(), k) < 0) ::_exit(1);
  if (auto st = join_cgroups(t.cgroups); !st) {
    errno = st.error().code;
    die(st.error().message);
  }
  if (::fchdir(fds[3].get()) < 0) die("cannot enter your working directory");
  // Her environment, as data for her command: a file on fd 3.
  int env = ::memfd_create("cryo-job-env", 0);
  if (env < 0) die("memfd_create");
  std::string text;
  for (const auto& e : start.env()) text += e + '\0';
  if (!sys::write_all(env, text, "the job's environment")) die("cannot hand over your environment");
  ::lseek(env, 0, SEEK_SET);
  if (::dup2(env, 3) < 0) die("dup2");
  ::syscall(SYS_close_range, 4, ~0U, 0);
  for (const auto& [r, lim] : t.limits) ::setrlimit(static_cast<__rlimit_resource>(r), &lim);
  ::umask(t.umask);
  std::vector<std::string> envs = o.env;
  envs.push_back("CRYO_ACT_FOR=" + t.who.text());
  envs.push_back("CRYO_JOB_ENV_FD=3");
  std::vector<std::string> args{"cryo"};
  for (const auto& a : start.args()) args.push_back(a);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(o.cryo.c_str(), argv.data(), envp.data());
  die("cannot run " + o.cryo);
  ::_exit(1);
}

// The handler of one caller's request, in its own process: starts her cryo,
// forwards her signals to it, and answers with its exit status.
[[noreturn]] void handle(const DaemonOptions& o, UniqueFd conn, Caller c, const Start& start,
                         std::vector<UniqueFd> fds) {
  auto t = take_from(c);
  if (!t) {
    refuse(conn.get(), t.error());
    ::_exit(1);
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    refuse(conn.get(), sys_error("cannot start cryo"));
    ::_exit(1);
  }
  if (pid == 0) exec_cryo(o, *t, start, fds);
  fds.clear();
  note(fmt::format("started cryo {} for {} (uid {}), pid {}", verb_of({start.args().begin(), start.args().end()}),
                   t->name, c.uid, pid));
  UniqueFd child(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  bool open = true;
  for (;;) {
    pollfd p[2] = {{open ? conn.get() : -1, POLLIN, 0}, {child.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) continue;
    if (p[1].revents & POLLIN) break;
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      auto packet = sys::recv_packet(conn.get(), 4096);
      ServiceRequest r;
      if (!packet) {
        open = false;  // she is gone: her job goes on, as it would under nohup
        continue;
      }
      if (r.ParseFromString(*packet) && r.has_signal() && kForwardable.count(r.signal().number()))
        ::kill(pid, r.signal().number());
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ServiceReply r;
  r.set_exit_status(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  reply(conn.get(), r);
  ::_exit(0);
}

// Checks a request's descriptors before anything is started for it.
Status check_fds(const std::vector<UniqueFd>& fds) {
  if (fds.size() != 4) return make_error(ErrorKind::usage, "a request comes with stdin, stdout, stderr and a directory");
  auto st = sys::fstat(fds[3].get(), "the working directory");
  if (!st || !S_ISDIR(st->st_mode)) return make_error(ErrorKind::usage, "the request's fourth descriptor is not a directory");
  return {};
}

struct Pending {
  UniqueFd conn;
  Caller caller;
  double deadline;
};

}  // namespace

Result<ServiceRequest> parse_request(const std::string& packet, uid_t caller) {
  ServiceRequest r;
  if (!r.ParseFromString(packet)) return make_error(ErrorKind::usage, "a request that does not parse");
  if (r.version() != kVersion)
    return make_error(ErrorKind::usage, fmt::format("the service speaks protocol {}, the request {}", kVersion, r.version()))
        .with_hint("use the cryo installed on this node");
  if (!r.has_start() || !served_verb(verb_of({r.start().args().begin(), r.start().args().end()})))
    return make_error(ErrorKind::usage, "the service starts only 'cryo run' and 'cryo restore'");
  if (caller == 0) return make_error(ErrorKind::usage, "root runs cryo directly, not through the service");
  return r;
}

Status prepare_criu_cache(const std::string& criu) {
  if (!lacks_sys_resource()) return {};
  auto run = sys::open_dir("/run");
  if (!run) return run.error();
  pid_t pid = ::fork();
  if (pid < 0) return sys_error("fork");
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) < 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
        ::mount("cryo-kdat", "/run", "tmpfs", 0, "mode=0755") < 0)
      ::_exit(2);
    auto checked = sys::run_command({criu, "check"});
    auto cache = sys::read_file("/run/criu.kdat");
    if (!cache) ::_exit(checked ? 3 : 4);
    auto tmp = sys::openat(run->get(), "criu.kdat.cryo", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
    if (!tmp || !sys::write_all(tmp->get(), *cache, "criu.kdat") ||
        ::renameat(run->get(), "criu.kdat.cryo", run->get(), "criu.kdat") < 0)
      ::_exit(5);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return make_error(ErrorKind::criu, fmt::format("cannot have {} write its kernel probe into /run/criu.kdat (step {})",
                                                   criu, WIFEXITED(status) ? WEXITSTATUS(status) : -1))
        .with_hint("run '" + criu + " check' as root: it says what CRIU lacks");
  note("this node's root lacks CAP_SYS_RESOURCE: CRIU runs with each user's real uid, and its kernel probe is "
       "cached in /run/criu.kdat");
  return {};
}

namespace {

// The service's socket: its own, made 0666 (every user may ask: who she is
// comes from the socket, not from her), or the one systemd's cryod.socket
// made and handed over.
Result<UniqueFd> listening_socket(const DaemonOptions& o) {
  if (o.listen_fd >= 0) {
    UniqueFd s(o.listen_fd);
    ::fcntl(s.get(), F_SETFD, FD_CLOEXEC);
    ::fcntl(s.get(), F_SETFL, ::fcntl(s.get(), F_GETFL) | O_NONBLOCK);
    return s;
  }
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s.valid()) return sys_error("cannot create the service's socket");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (o.socket.size() >= sizeof a.sun_path) return make_error(ErrorKind::config, "socket path too long: " + o.socket);
  std::strncpy(a.sun_path, o.socket.c_str(), sizeof a.sun_path - 1);
  auto slash = o.socket.rfind('/');
  if (slash != std::string::npos && slash > 0) CRYO_TRY(sys::mkdir_p(o.socket.substr(0, slash), 0755));
  ::unlink(o.socket.c_str());
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return sys_error("cannot bind " + o.socket);
  if (::chmod(o.socket.c_str(), 0666) < 0) return sys_error("cannot open " + o.socket + " to every user");
  if (::listen(s.get(), 128) < 0) return sys_error("cannot listen on " + o.socket);
  return s;
}

}  // namespace

Status serve(const DaemonOptions& o) {
  CRYO_TRY(prepare_criu_cache(o.criu));
  auto listening = listening_socket(o);
  if (!listening) return listening.error();
  UniqueFd s = std::move(*listening);

  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGCHLD}) sigaddset(&set, sig);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  UniqueFd sigfd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  note("listening on " + o.socket);

  std::vector<Pending> pending;
  for (;;) {
    std::vector<pollfd> p{{sigfd.get(), POLLIN, 0}, {s.get(), POLLIN, 0}};
    for (const auto& q : pending) p.push_back({q.conn.get(), POLLIN, 0});
    ::poll(p.data(), p.size(), 1000);
    if (p[0].revents & POLLIN) {
      signalfd_siginfo si;
      bool stop = false;
      while (::read(sigfd.get(), &si, sizeof si) == sizeof si)
        if (si.ssi_signo != SIGCHLD) stop = true;
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
      if (stop) break;
    }
    // Requests that arrived, or timed out.
    double now = sys::now();
    for (size_t k = pending.size(); k-- > 0;) {
      short ev = p[2 + k].revents;
      Pending& q = pending[k];
      if (!(ev & (POLLIN | POLLHUP | POLLERR)) && now < q.deadline) continue;
      Pending taken = std::move(q);
      pending.erase(pending.begin() + static_cast<long>(k));
      if (!(ev & (POLLIN | POLLHUP | POLLERR))) {
        refuse(taken.conn.get(), make_error(ErrorKind::usage, "no request within the time allowed"));
        continue;
      }
      std::vector<UniqueFd> fds;
      auto packet = sys::recv_packet(taken.conn.get(), kMaxRequest, &fds);
      auto parsed = packet ? parse_request(*packet, taken.caller.uid) : Result<ServiceRequest>(packet.error());
      Status ok = !parsed ? Status(parsed.error()) : check_fds(fds);
      if (!ok) {
        note(fmt::format("refused uid {} (pid {}): {}", taken.caller.uid, taken.caller.pid, ok.error().message));
        refuse(taken.conn.get(), ok.error());
        continue;
      }
      pid_t h = ::fork();
      if (h == 0) {
        s.reset();
        sigfd.reset();
        for (auto& other : pending) other.conn.reset();
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGCHLD, SIG_DFL);
        handle(o, std::move(taken.conn), std::move(taken.caller), parsed->start(), std::move(fds));
      }
      if (h < 0) refuse(taken.conn.get(), sys_error("cannot start a handler"));
    }
    // New callers; past max_requests waiting, each is told to come back.
    for (;;) {
      UniqueFd conn(::accept4(s.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn.valid()) break;
      if (pending.size() >= static_cast<size_t>(o.max_requests)) {
        refuse(conn.get(), make_error(ErrorKind::busy, fmt::format("cryo's service has {} requests waiting", pending.size()))
                               .with_hint("try again in a moment"));
        continue;
      }
      auto c = identify(conn.get());
      if (!c) {
        refuse(conn.get(), c.error());
        continue;
      }
      pending.push_back({std::move(conn), std::move(*c), sys::now() + kRequestTimeout});
    }
  }
  if (o.listen_fd < 0) ::unlink(o.socket.c_str());
  return {};
}

}  // namespace cryo::service
