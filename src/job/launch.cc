#include "job/launch.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>

#include "base/hash.h"
#include "base/log.h"
#include "base/identity.h"
#include "base/sys.h"

namespace cryo::job {

namespace {
Tools g_tools;
}  // namespace

void configure(const Tools& t) { g_tools = t; }
const Tools& tools() { return g_tools; }

std::string default_init_path() {
  if (!g_tools.init.empty()) return g_tools.init;
  return sys::self_dir() + "/cryo-init";
}

namespace {

constexpr const char* kInitDir = "/var/lib/cryo/init";
constexpr double kInitIdleSeconds = 24 * 3600;

// Installs the cryo-init `bytes` at its content's path, unless there, and
// marks the copy as just handed out (its mtime) for remove_unused_inits.
Result<std::string> install_init(const std::string& bytes) {
  AsRoot root;
  std::string path = std::string(kInitDir) + "/cryo-init-" + sha256_bytes(bytes.data(), bytes.size()).substr(0, 16);
  if (auto st = sys::stat(path); st && static_cast<size_t>(st->st_size) == bytes.size()) {
    (void)::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);
    return path;
  }
  CRYO_TRY(sys::mkdir_p(kInitDir, 0755));
  CRYO_TRY(sys::write_file_atomic(path, bytes, 0755));
  return path;
}

// Drops from `files` those that a process on the node (in any namespace)
// runs; false if that cannot be told.
bool drop_executed(std::map<std::pair<dev_t, ino_t>, std::string>& files) {
  auto pids = sys::list_dir("/proc");
  if (!pids) return false;
  for (const auto& p : *pids) {
    struct stat st;
    if (std::isdigit(static_cast<unsigned char>(p[0])) && ::stat(("/proc/" + p + "/exe").c_str(), &st) == 0)
      files.erase({st.st_dev, st.st_ino});
  }
  return true;
}

}  // namespace

size_t remove_unused_inits(const std::string& dir, double idle_seconds) {
  AsRoot root;
  auto names = sys::list_dir(dir);
  if (!names) return 0;
  double now = sys::now();
  std::map<std::pair<dev_t, ino_t>, std::string> idle;
  for (const auto& name : *names) {
    std::string path = dir + "/" + name;
    struct stat st;
    if (name.rfind("cryo-init-", 0) == 0 && ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        now - static_cast<double>(st.st_mtime) >= idle_seconds)
      idle[{st.st_dev, st.st_ino}] = path;
  }
  if (idle.empty() || !drop_executed(idle)) return 0;
  size_t removed = 0;
  for (const auto& [key, path] : idle)
    if (::unlink(path.c_str()) == 0) {
      CRYO_LOG("job", info) << "removed " << path << ": no job has used it for a day";
      removed++;
    }
  return removed;
}

std::string make_job_init(const store::JobDir& dir) {
  std::string installed = default_init_path();
  auto bytes = sys::read_file(installed);
  auto path = bytes ? install_init(*bytes) : Result<std::string>(bytes.error());
  Status kept = path ? sys::write_file_atomic(dir.file(store::JobFile::init_copy), *bytes, 0600) : Status{path.error()};
  if (!kept) {
    CRYO_LOG("job", warn) << "cannot keep a copy of cryo-init for job '" << dir.name() << "' ("
                          << kept.error().message << "); it runs " << installed
                          << ", which must stay as it is for its checkpoints to restore";
    return installed;
  }
  remove_unused_inits(kInitDir, kInitIdleSeconds);
  return *path;
}

bool is_job_init(const std::string& path) { return path.rfind(std::string(kInitDir) + "/cryo-init-", 0) == 0; }

Result<std::string> job_init(const store::JobDir& dir) {
  std::string kept = dir.file(store::JobFile::init_copy);
  if (!sys::exists(kept)) return default_init_path();
  auto bytes = sys::read_file(kept);
  if (!bytes) return bytes.error();
  auto path = install_init(*bytes);
  if (!path) return path.error().context("cannot put back the job's cryo-init");
  return path;
}

Result<Launched> launch(const LaunchSpec& spec) {
  if (spec.command.empty() && spec.serve_fd < 0) return make_error("no command given").with_hint("usage: cryo run [OPTIONS] -- COMMAND [ARGS...]");
  if (::access(spec.init_path.c_str(), X_OK) != 0)
    return sys_error("cannot run cryo-init at '" + spec.init_path + "'")
        .with_hint("install cryo-init next to cryo, or set CRYO_INIT");
  int out[2], err[2], status[2];
  if (::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0 || ::pipe2(status, O_CLOEXEC) < 0)
    return sys_error("cannot create the job's pipes");
  UniqueFd out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]), st_r(status[0]), st_w(status[1]);

  std::vector<std::string> args{"cryo-init"};
  if (spec.private_net) args.push_back("--lo-up");
  if (!spec.init_dir.empty()) args.insert(args.end(), {"--chdir", spec.init_dir});
  if (!spec.hostname.empty()) args.insert(args.end(), {"--hostname", spec.hostname});
  if (!spec.user.empty()) args.insert(args.end(), {"--user", spec.user});
  if (spec.serve_fd >= 0) args.insert(args.end(), {"--serve", "4"});
  if (spec.rootfs.empty()) {
    args.push_back("--own-proc");
    if (spec.private_ipc) args.push_back("--own-shm");
  } else {
    args.insert(args.end(), {"--root", spec.rootfs});
    for (const auto& b : spec.binds) args.insert(args.end(), {"--bind", b});
    if (!spec.workdir.empty()) args.insert(args.end(), {"--workdir", spec.workdir});
  }
  args.push_back("--");
  args.insert(args.end(), spec.command.begin(), spec.command.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = spec.env;
  env.push_back("CRYO_JOB=" + spec.job_name);

  // Joining a part's network namespace: this thread enters it for the
  // clone, and goes back after.
  UniqueFd own_net;
  if (!spec.netns.empty()) {
    auto target = sys::open(spec.netns, O_RDONLY);
    if (!target) return target.error();
    auto own = sys::open("/proc/thread-self/ns/net", O_RDONLY);
    if (!own) return own.error();
    own_net = std::move(*own);
    if (::setns(target->get(), CLONE_NEWNET) < 0) return sys_error("cannot enter the network namespace " + spec.netns);
  }
  struct Back {
    const UniqueFd& fd;
    ~Back() {
      if (fd.valid()) ::setns(fd.get(), CLONE_NEWNET);
    }
  } back{own_net};
  unsigned long flags = CLONE_NEWPID | CLONE_NEWNS | SIGCHLD;
  if (!spec.hostname.empty()) flags |= CLONE_NEWUTS;
  if (spec.private_net) flags |= CLONE_NEWNET;
  if (spec.private_ipc) flags |= CLONE_NEWIPC;
  pid_t pid = static_cast<pid_t>(::syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr));
  if (pid < 0) return sys_error("cannot create the job's namespaces").with_hint("cryo must run as root (or with CAP_SYS_ADMIN)");
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(out_w.get(), 1);
    ::dup2(err_w.get(), 2);
    ::dup2(st_w.get(), 3);
    if (spec.serve_fd >= 0) ::dup2(spec.serve_fd, 4);
    ::syscall(SYS_close_range, spec.serve_fd >= 0 ? 5 : 4, ~0U, 0);
    if (spec.environment) {
      ::clearenv();
      for (const auto& e : *spec.environment) ::putenv(const_cast<char*>(e.c_str()));
    }
    for (auto& e : env) ::putenv(e.data());
    ::execv(spec.init_path.c_str(), argv.data());
    int e = errno;
    (void)!::write(3, &e, sizeof e);
    ::_exit(127);
  }
  st_w.reset();
  out_w.reset();
  err_w.reset();
  // errno, then (from cryo-init setting up a container) what failed.
  auto report = sys::read_all(st_r.get(), "cryo-init's launch status");
  if (report && report->size() >= sizeof(int)) {
    int e;
    std::memcpy(&e, report->data(), sizeof e);
    int status_code;
    ::waitpid(pid, &status_code, 0);
    if (report->size() > sizeof e)
      return Error{"cannot set up the job: " + report->substr(sizeof e), e, ""};
    return Error{"cannot run '" + (spec.command.empty() ? std::string("cryo-init") : spec.command[0]) + "': " + std::strerror(e), e,
                 e == ENOENT ? "check the command's name and PATH" : ""};
  }
  return Launched{pid, std::move(out_r), std::move(err_r)};
}

}  // namespace cryo::job
