#include "base/sys.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <signal.h>
#include <linux/magic.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>

#include <fmt/format.h>

namespace cryo::sys {

namespace {
template <class F>
auto retry(F f) {
  decltype(f()) r;
  do r = f();
  while (r < 0 && errno == EINTR);
  return r;
}

std::string dirname_of(const std::string& path) {
  auto pos = path.rfind('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}
}  // namespace

Result<UniqueFd> open(const std::string& path, int flags, mode_t mode) {
  int fd = retry([&] { return ::open(path.c_str(), flags | O_CLOEXEC, mode); });
  if (fd < 0) return sys_error("cannot open '" + path + "'");
  return UniqueFd(fd);
}

Result<UniqueFd> openat(int dirfd, const std::string& path, int flags, mode_t mode) {
  int fd = retry([&] { return ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode); });
  if (fd < 0) return sys_error("cannot open '" + path + "'");
  return UniqueFd(fd);
}

Result<UniqueFd> open_dir(const std::string& path) {
  return open(path, O_RDONLY | O_DIRECTORY);
}

Status write_all(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = retry([&] { return ::write(fd, data.data(), data.size()); });
    if (n < 0) return sys_error("cannot write " + what);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<std::string> read_all(int fd, const std::string& what) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = retry([&] { return ::read(fd, buf, sizeof buf); });
    if (n < 0) return sys_error("cannot read " + what);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<std::string> read_file(const std::string& path) {
  auto fd = open(path, O_RDONLY);
  if (!fd) return fd.error();
  return read_all(fd->get(), "'" + path + "'");
}

Status fsync_fd(int fd, const std::string& what) {
  if (retry([&] { return ::fsync(fd); }) < 0) return sys_error("cannot sync " + what);
  return {};
}

Status fsync_path(const std::string& path) {
  auto fd = open(path, O_RDONLY);
  if (!fd) return fd.error();
  return fsync_fd(fd->get(), "'" + path + "'");
}

Status write_file_atomic(const std::string& path, std::string_view data, mode_t mode, bool durable) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    auto fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (!fd) return fd.error();
    Status st = write_all(fd->get(), data, "'" + tmp + "'");
    if (st && durable) st = fsync_fd(fd->get(), "'" + tmp + "'");
    if (!st) {
      ::unlink(tmp.c_str());
      return st;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    Error e = sys_error("cannot rename '" + tmp + "' to '" + path + "'");
    ::unlink(tmp.c_str());
    return e;
  }
  return durable ? fsync_path(dirname_of(path)) : Status{};
}

Status pread_exact(int fd, void* buf, size_t n, uint64_t off, const std::string& what) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = retry([&] { return ::pread(fd, p, n, static_cast<off_t>(off)); });
    if (r < 0) return sys_error("cannot read " + what);
    if (r == 0) return make_error("cannot read " + what + ": it is shorter than expected");
    p += r;
    n -= static_cast<size_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return {};
}

Status pwrite_all(int fd, const void* buf, size_t n, uint64_t off, const std::string& what) {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t r = retry([&] { return ::pwrite(fd, p, n, static_cast<off_t>(off)); });
    if (r < 0) return sys_error("cannot write " + what);
    p += r;
    n -= static_cast<size_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return {};
}

Status mkdir_p(const std::string& path, mode_t mode) {
  if (path.empty()) return {};
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), mode) < 0 && errno != EEXIST)
      return sys_error("cannot create directory '" + cur + "'");
  }
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) return sys_error("cannot create directory '" + path + "'");
  if (!S_ISDIR(st.st_mode)) return make_error("'" + path + "' exists and is not a directory");
  return {};
}

Status rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) < 0)
    return sys_error("cannot rename '" + from + "' to '" + to + "'");
  return {};
}

Status remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) < 0) {
    if (errno == ENOENT) return {};
    return sys_error("cannot remove '" + path + "'");
  }
  int rc = ::nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p) < 0 ? -1 : 0; },
      64, FTW_DEPTH | FTW_PHYS);
  if (rc < 0) return sys_error("cannot remove '" + path + "'");
  return {};
}

Result<struct stat> stat(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) return sys_error("cannot stat '" + path + "'");
  return st;
}

Result<struct stat> lstat(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) < 0) return sys_error("cannot stat '" + path + "'");
  return st;
}

Result<struct stat> fstat(int fd, const std::string& what) {
  struct stat st;
  if (::fstat(fd, &st) < 0) return sys_error("cannot stat " + what);
  return st;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

Result<std::vector<std::string>> list_dir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return sys_error("cannot read directory '" + path + "'");
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::vector<std::string>> files_below(const std::string& dir) {
  std::vector<std::string> out;
  std::vector<std::string> todo{""};
  while (!todo.empty()) {
    std::string rel = todo.back();
    todo.pop_back();
    auto names = list_dir(rel.empty() ? dir : dir + "/" + rel);
    if (!names) return names.error();
    for (const auto& n : *names) {
      std::string r = rel.empty() ? n : rel + "/" + n;
      auto st = lstat(dir + "/" + r);
      if (!st) return st.error();
      if (S_ISDIR(st->st_mode))
        todo.push_back(r);
      else
        out.push_back(r);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::string> readlink(const std::string& path) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  if (n < 0) return sys_error("cannot read link '" + path + "'");
  return std::string(buf, static_cast<size_t>(n));
}

Status symlink_atomic(const std::string& target, const std::string& linkpath) {
  std::string tmp = linkpath + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) < 0) return sys_error("cannot create link '" + tmp + "'");
  if (::rename(tmp.c_str(), linkpath.c_str()) < 0) {
    Error e = sys_error("cannot rename '" + tmp + "' to '" + linkpath + "'");
    ::unlink(tmp.c_str());
    return e;
  }
  return fsync_path(dirname_of(linkpath));
}

namespace {
// The sizes, or the allocated bytes, of the files below path.
uint64_t tree_sum(const std::string& path, bool allocated) {
  static thread_local uint64_t total;
  static thread_local bool blocks;
  total = 0;
  blocks = allocated;
  ::nftw(
      path.c_str(),
      [](const char*, const struct stat* st, int type, struct FTW*) {
        if (type == FTW_F) total += blocks ? static_cast<uint64_t>(st->st_blocks) * 512 : static_cast<uint64_t>(st->st_size);
        return 0;
      },
      64, FTW_PHYS);
  return total;
}
}  // namespace

uint64_t tree_size(const std::string& path) { return tree_sum(path, false); }

uint64_t disk_usage(const std::string& path) { return tree_sum(path, true); }

Result<std::string> realpath(const std::string& path) {
  char* r = ::realpath(path.c_str(), nullptr);
  if (!r) return sys_error("cannot resolve '" + path + "'");
  std::string s = r;
  ::free(r);
  return s;
}

bool pid_alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

Result<UniqueFd> lock_file(const std::string& path, bool exclusive, bool wait) {
  auto fd = open(path, O_RDWR | O_CREAT, 0600);
  if (!fd) return fd.error();
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
  if (retry([&] { return ::flock(fd->get(), op); }) < 0) return sys_error("cannot lock '" + path + "'");
  return fd;
}

Result<FsSpace> fs_space(const std::string& path) {
  struct statfs sf;
  if (retry([&] { return ::statfs(path.c_str(), &sf); }) < 0) return sys_error("cannot read the file system of '" + path + "'");
  FsSpace s;
  s.total = static_cast<uint64_t>(sf.f_blocks) * static_cast<uint64_t>(sf.f_bsize);
  s.available = static_cast<uint64_t>(sf.f_bavail) * static_cast<uint64_t>(sf.f_bsize);
  s.tmpfs = sf.f_type == TMPFS_MAGIC;
  // Their statfs magic numbers, as the kernel and the file systems' own modules define them.
  static constexpr uint64_t kShared[] = {
      0x6969,      // NFS
      0x0BD00BD0,  // Lustre
      0x47504653,  // GPFS (IBM Storage Scale)
      0x19830326,  // BeeGFS
      0x00C36400,  // CephFS
      0xFE534D42,  // SMB2
      0xFF534D42,  // CIFS
      0xAAD7AAEA,  // PanFS
      0x13661366,  // OrangeFS
      0x5346414F,  // AFS
      0x01021997,  // 9p
      0x65735546,  // FUSE
  };
  for (uint64_t m : kShared) s.shared |= static_cast<uint64_t>(sf.f_type) == m;
  return s;
}

namespace {
// Mount points escape space, tab, newline and backslash as \ooo.
std::string unescape_octal(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out += static_cast<char>(std::strtol(s.substr(i + 1, 3).c_str(), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}
bool at_or_below(const std::string& path, const std::string& point) {
  if (point == "/") return true;
  return path.compare(0, point.size(), point) == 0 && (path.size() == point.size() || path[point.size()] == '/');
}
}  // namespace

Result<Mount> mount_from_mountinfo(const std::string& mountinfo, const std::string& real_path) {
  // "36 35 98:0 /root /point opts [optional fields...] - fstype source superopts"
  std::optional<Mount> found;
  size_t start = 0;
  while (start < mountinfo.size()) {
    size_t end = mountinfo.find('\n', start);
    if (end == std::string::npos) end = mountinfo.size();
    std::istringstream line(mountinfo.substr(start, end - start));
    start = end + 1;
    std::vector<std::string> f;
    for (std::string w; line >> w;) f.push_back(w);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 6 || dash == f.end() || f.end() - dash < 4) continue;
    std::string point = unescape_octal(f[4]);
    // Later lines are mounted on top of earlier ones.
    if (at_or_below(real_path, point) && (!found || point.size() >= found->point.size()))
      found = Mount{point, dash[1], dash[3]};
  }
  if (!found) return make_error("no mount holds '" + real_path + "'");
  return *found;
}

Result<Mount> mount_of(const std::string& path) {
  auto real = realpath(path);
  if (!real) return real.error();
  auto text = read_file("/proc/self/mountinfo");
  if (!text) return text.error();
  return mount_from_mountinfo(*text, *real);
}

namespace {
uint64_t meminfo(const char* key) {
  auto text = read_file("/proc/meminfo");
  if (!text) return 0;
  auto p = text->find(key);
  if (p == std::string::npos) return 0;
  return std::strtoull(text->c_str() + p + std::strlen(key), nullptr, 10) * 1024;
}
}  // namespace

uint64_t mem_total() { return meminfo("MemTotal:"); }
uint64_t mem_available() { return meminfo("MemAvailable:"); }

std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string kernel_release() {
  struct utsname u;
  ::uname(&u);
  return u.release;
}

std::string user_name(uid_t uid) {
  struct passwd* pw = ::getpwuid(uid);
  return pw ? pw->pw_name : std::to_string(uid);
}

double now() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

int signal_number(const std::string& name) {
  std::string n = name.rfind("SIG", 0) == 0 ? name.substr(3) : name;
  for (int s = 1; s < NSIG; s++)
    if (const char* abbrev = sigabbrev_np(s); abbrev && n == abbrev) return s;
  return 0;
}

UniqueFd interval_timer(double seconds) {
  UniqueFd fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  struct itimerspec its {};
  its.it_value.tv_sec = static_cast<time_t>(seconds);
  its.it_value.tv_nsec = static_cast<long>((seconds - static_cast<double>(its.it_value.tv_sec)) * 1e9);
  if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;  // zero would disarm it
  its.it_interval = its.it_value;
  if (fd.valid()) ::timerfd_settime(fd.get(), 0, &its, nullptr);
  return fd;
}

std::string iso_time(double t) {
  time_t s = static_cast<time_t>(t);
  struct tm tm;
  ::localtime_r(&s, &tm);
  char buf[64];
  ::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tm);
  return buf;
}

std::string self_dir() {
  auto p = readlink("/proc/self/exe");
  return p ? dirname_of(*p) : ".";
}

namespace {
std::string& search_path() {
  static std::string path = "/usr/local/bin:/usr/bin:/bin";
  return path;
}
}  // namespace

void set_search_path(const std::string& path) {
  if (!path.empty()) search_path() = path;
}

std::string find_in_path(const std::string& cmd) {
  if (cmd.find('/') != std::string::npos) return ::access(cmd.c_str(), X_OK) == 0 ? cmd : "";
  const std::string& p = search_path();
  for (size_t start = 0; start <= p.size();) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string candidate = p.substr(start, end - start) + "/" + cmd;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

Status send_packet(int sock, std::string_view data, const std::vector<int>& fds) {
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("cannot send on the socket");
  return {};
}

Result<std::string> recv_packet(int sock, size_t max, std::vector<UniqueFd>* fds) {
  std::string buf(max + 1, '\0');
  iovec iov{buf.data(), buf.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("cannot receive on the socket");
  std::vector<UniqueFd> got;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      for (size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
        got.emplace_back(fd);
      }
  if (n == 0) return make_error("the peer closed the socket");
  if (static_cast<size_t>(n) > max || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
    return make_error(ErrorKind::usage, fmt::format("a message larger than {} bytes", max));
  buf.resize(static_cast<size_t>(n));
  if (fds) *fds = std::move(got);
  return buf;
}

Result<std::string> run_command(const std::vector<std::string>& argv, const std::string& input) {
  std::string shown;
  for (const auto& a : argv) shown += (shown.empty() ? "" : " ") + a;
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) < 0) return sys_error("cannot run '" + shown + "'");
  if (::pipe2(err, O_CLOEXEC) < 0) {
    ::close(out[0]);
    ::close(out[1]);
    return sys_error("cannot run '" + shown + "'");
  }
  UniqueFd out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
  // The input is small (a batch script): it fits in the pipe, written before the command starts.
  int in[2];
  if (::pipe2(in, O_CLOEXEC) < 0) return sys_error("cannot run '" + shown + "'");
  UniqueFd in_r(in[0]), in_w(in[1]);
  if (input.size() > 65536) return make_error("input for '" + shown + "' is too large");
  CRYO_TRY(write_all(in_w.get(), input, "input for '" + shown + "'"));
  in_w.reset();
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_r.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
  // The caller may block signals for a signalfd; the command gets them back.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    errno = rc;
    return sys_error("cannot run '" + argv[0] + "'");
  }
  out_w.reset();
  err_w.reset();
  in_r.reset();
  // The command's stderr is small; read it after stdout.
  auto text = read_all(out_r.get(), argv[0] + "'s output");
  auto errors = read_all(err_r.get(), argv[0] + "'s errors");
  int status;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!text) return text.error();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string why = errors ? *errors : "";
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return make_error(fmt::format("'{}' failed ({}){}", shown,
                                  WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                                    : fmt::format("signal {}", WTERMSIG(status)),
                                  why.empty() ? "" : ": " + why));
  }
  return *text;
}

}  // namespace cryo::sys
