#include "criu/client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>

#include "base/log.h"
#include "base/identity.h"
#include "base/sys.h"
#include "rpc.pb.h"

namespace cryo::criu {

std::string Version::text() const {
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(sublevel);
}

std::string default_path() {
  if (::access("/opt/cryo/criu/bin/criu", X_OK) == 0) return "/opt/cryo/criu/bin/criu";
  return "criu";
}

namespace {

// In the work directory, while a dump by a CRIU that another process
// started runs (Session::dump).
constexpr const char* kRpcConf = "criu-rpc.conf";

constexpr const char* kInstallHint =
    "install a working CRIU >= 4.2 with 'scripts/install-criu.sh' from the cryo source tree "
    "(it unpacks Debian's newest CRIU into /opt/cryo/criu), or point CRYO_CRIU at one";

Status send(int sk, const ::criu_req& req) {
  std::string buf;
  if (!req.SerializeToString(&buf)) return make_error("cannot encode a CRIU request");
  ssize_t n;
  do n = ::send(sk, buf.data(), buf.size(), MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("cannot send a request to CRIU");
  return {};
}

Result<::criu_resp> recv(int sk) {
  std::string buf(1 << 16, '\0');
  ssize_t n;
  do n = ::recv(sk, buf.data(), buf.size(), 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return sys_error("cannot read CRIU's answer");
  if (n == 0) return make_error("CRIU exited without answering (it was killed or crashed)");
  ::criu_resp resp;
  if (!resp.ParseFromArray(buf.data(), static_cast<int>(n))) return make_error("CRIU sent an answer cryo cannot decode");
  return resp;
}

// Answers the notifications of a request already sent, and returns its
// final response.  `first`: a message already received.
Result<::criu_resp> answer(int sk, const NotifyFn& notify, std::optional<::criu_resp> first = std::nullopt) {
  for (;;) {
    auto resp = first ? Result<::criu_resp>(std::move(*first)) : recv(sk);
    first.reset();
    if (!resp) return resp.error();
    if (resp->type() != ::NOTIFY) return resp;
    const std::string& script = resp->notify().script();
    CRYO_LOG("criu", debug) << "notify " << script;
    Status st;
    if (notify) st = notify(script, resp->notify().pid());
    ::criu_req ack;
    ack.set_type(::NOTIFY);
    ack.set_notify_success(st.ok());
    CRYO_TRY(send(sk, ack));
    if (!st.ok()) {
      // CRIU aborts and still sends its final answer; drain it, keep our error.
      for (;;) {
        auto r = recv(sk);
        if (!r || r->type() != ::NOTIFY) break;
        ::criu_req again;
        again.set_type(::NOTIFY);
        again.set_notify_success(false);
        if (!send(sk, again).ok()) break;
      }
      return st.error();
    }
  }
}

// Runs one request, answering notifications on the way, and returns the final response.
Result<::criu_resp> call(int sk, const ::criu_req& req, const NotifyFn& notify) {
  CRYO_TRY(send(sk, req));
  return answer(sk, notify);
}

// name_log: whether the hint names log_path (not if it is to be removed).
Error failure(const std::string& what, const ::criu_resp& resp, const std::string& log_path, bool name_log = true) {
  std::string log;
  if (!log_path.empty()) {
    auto r = sys::read_file(log_path);
    if (r) log = *r;
  }
  // The log's first real error is the cause; what CRIU logs after it
  // ("Dumping FAILED") only says that it gave up.  cr_errmsg may hold a
  // harmless one (RLIMIT_NOFILE, where cryo lacks CAP_SYS_RESOURCE).
  std::string msg = what + " failed";
  if (std::string cause = first_error(log); !cause.empty())
    msg += ": " + cause;
  else if (resp.has_cr_errmsg() && !resp.cr_errmsg().empty() && resp.cr_errmsg().find("RLIMIT_NOFILE") == std::string::npos)
    msg += ": " + resp.cr_errmsg();
  else if (resp.has_cr_errno() && resp.cr_errno() != 0)
    msg += std::string(": ") + std::strerror(resp.cr_errno());
  Error e{msg, resp.has_cr_errno() ? resp.cr_errno() : 0, {}, ErrorKind::criu};
  // CRIU reports a full disk only in its log's words.
  if (e.code == ENOSPC || (log + msg).find("No space left on device") != std::string::npos) e.kind = ErrorKind::no_space;
  std::string hint = hint_for_log(log + "\n" + msg);
  if (!log_path.empty() && name_log) hint += (hint.empty() ? "" : "; ") + std::string("CRIU's log: ") + log_path;
  e.hint = hint;
  return e;
}

}  // namespace

Result<Session> Session::start(const std::string& criu_path, const std::vector<int>& keep_fds) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    return sys_error("cannot create a socket for CRIU");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  pid_t pid = ::fork();
  if (pid < 0) return sys_error("cannot start CRIU");
  if (pid == 0) {
    ::fcntl(theirs.get(), F_SETFD, 0);
    for (int fd : keep_fds) ::fcntl(fd, F_SETFD, 0);
    std::string fdarg = std::to_string(theirs.get());
    // CRIU must not take our terminal signals (^C goes to cryo, which
    // decides), must not inherit the supervisor's blocked signals, and must
    // not write into our stdout (it may carry --json output).  What CRIU
    // prints on its stdout is meant for its own terminal ("Looks good.");
    // its errors go to its log, or to stderr before the log is open.
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null >= 0 ? null : 2, 1);
    if (null > 2) ::close(null);
    lend_real_ids_for_criu();
    if (criu_path.find('/') != std::string::npos)
      ::execl(criu_path.c_str(), criu_path.c_str(), "swrk", fdarg.c_str(), nullptr);
    else
      ::execlp(criu_path.c_str(), criu_path.c_str(), "swrk", fdarg.c_str(), nullptr);
    ::_exit(127);
  }
  return Session(std::move(ours), pid, criu_path);
}

Session::~Session() { finish(); }

void Session::finish() {
  if (pid_ <= 0) return;
  // CRIU takes a closed socket for a crashed client and says so on its
  // stderr; one that was never asked anything is let go with a question,
  // one that is armed with a "no" to its pre-dump notification.
  if (armed_) {
    disarm();
  } else if (!asked_) {
    ::criu_req req;
    req.set_type(::VERSION);
    (void)call(sk_.get(), req, {});
  }
  sk_.reset();
  int status;
  // Only CRIU's parent can reap it; in a child it was left to, closing the
  // socket is all there is to do.
  if (owner_ == ::getpid())
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  pid_ = -1;
}

Result<::criu_resp> Session::ask(const ::criu_req& req, const NotifyFn& notify) {
  asked_ = true;
  return call(sk_.get(), req, notify);
}

bool Session::waiting() const {
  pollfd p{sk_.get(), POLLOUT | POLLRDHUP, 0};
  return pid_ > 0 && ::poll(&p, 1, 0) == 1 && !(p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

void Session::release() {
  armed_ = false;
  sk_.reset();
  pid_ = -1;
}

Result<Version> Session::version() {
  ::criu_req req;
  req.set_type(::VERSION);
  auto resp = ask(req, {});
  if (!resp) return resp.error();
  if (!resp->success() || !resp->has_version()) return make_error("CRIU did not report its version");
  Version v;
  v.major = resp->version().major_number();
  v.minor = resp->version().minor_number();
  v.sublevel = resp->version().has_sublevel() ? resp->version().sublevel() : 0;
  return v;
}

Status Session::check() {
  // CRIU logs what it finds in a directory of its own; a failure quotes
  // the log's last errors before the directory goes.
  char tmpl[] = "/tmp/cryo-criu-check-XXXXXX";
  if (!::mkdtemp(tmpl)) return sys_error("cannot create a directory for CRIU's check");
  std::string dir = tmpl;
  Status st = [&]() -> Status {
    auto fd = sys::open_dir(dir);
    if (!fd) return fd.error();
    ::criu_req req;
    req.set_type(::CHECK);
    auto* o = req.mutable_opts();
    o->set_images_dir_fd(fd->get());
    o->set_work_dir_fd(fd->get());
    o->set_log_file("criu-check.log");
    auto resp = ask(req, {});
    if (!resp) return resp.error();
    if (!resp->success()) return failure("criu check", *resp, dir + "/criu-check.log", false);
    return {};
  }();
  (void)sys::remove_tree(dir);
  return st;
}

void Session::disarm() {
  if (!armed_) return;
  armed_ = false;
  ::criu_req no;
  no.set_type(::NOTIFY);
  no.set_notify_success(false);
  // CRIU reads this as its answer to "pre-dump", sent or still to come,
  // and gives up before it freezes anything; its last word is drained.
  if (!send(sk_.get(), no).ok()) return;
  for (;;) {
    auto r = recv(sk_.get());
    if (!r || r->type() != ::NOTIFY) return;
  }
}

Status Session::arm_dump(const DumpRequest& r) {
  if (owner_ != ::getpid()) return make_error("only the process that started CRIU can arm it");
  ::criu_req req;
  fill_dump(req, r);
  req.mutable_opts()->set_notify_scripts(true);
  asked_ = true;
  CRYO_TRY(send(sk_.get(), req));
  armed_ = true;
  armed_for_ = {r.pid, r.leave_running, r.tcp_established, r.external};
  return {};
}

bool Session::armed_for(const DumpRequest& r) const {
  return armed_ && armed_for_.pid == r.pid && armed_for_.leave_running == r.leave_running &&
         armed_for_.tcp_established == r.tcp_established && armed_for_.external == r.external;
}

void Session::fill_dump(::criu_req& req, const DumpRequest& r) {
  req.set_type(::DUMP);
  auto* o = req.mutable_opts();
  o->set_images_dir_fd(r.images_dir_fd);
  if (r.work_dir_fd >= 0) o->set_work_dir_fd(r.work_dir_fd);
  o->set_pid(r.pid);
  o->set_log_file(r.log_file);
  o->set_log_level(4);
  o->set_leave_running(r.leave_running);
  o->set_tcp_established(r.tcp_established);
  o->set_file_locks(true);
  // Deleted files the job holds open are dumped whole (MPI's shared memory,
  // for one, is such a file), up to this size; CRIU's default is 1 MiB.
  o->set_ghost_limit(kGhostLimit);
  o->set_notify_scripts(static_cast<bool>(r.notify));
  for (const auto& e : r.external) o->add_external(e);
}

Status Session::dump(const DumpRequest& r, const std::string& log_path, bool* not_started) {
  if (not_started) *not_started = false;
  auto resp = armed_ ? go_on(r, not_started) : send_dump(r);
  if (!resp) return resp.error();
  if (!resp->success()) return failure("CRIU dump", *resp, log_path);
  return {};
}

Result<::criu_resp> Session::go_on(const DumpRequest& r, bool* not_started) {
  // The request went ahead: CRIU waits at (or is on its way to) its
  // pre-dump notification, which r's notify now answers.
  if (!armed_for(r)) return make_error("CRIU was armed for another dump");
  armed_ = false;
  auto first = recv(sk_.get());
  if (first && first->type() == ::NOTIFY && first->notify().script() == "pre-dump")
    return answer(sk_.get(), r.notify, std::move(*first));
  // It failed, or died, before freezing anything: a new CRIU may try.
  if (not_started) *not_started = true;
  if (!first) return first.error().context("the CRIU armed for this dump is gone");
  if (first->type() == ::NOTIFY) return make_error("CRIU armed for this dump sent '" + first->notify().script() + "' first");
  return first;
}

Result<::criu_resp> Session::send_dump(const DumpRequest& r) {
  ::criu_req req;
  fill_dump(req, r);
  auto* o = req.mutable_opts();
  bool named = false;
  if (owner_ != ::getpid()) {
    // CRIU would look for our fds in its peer, the process that started it:
    // name them through this process's /proc instead, in a configuration
    // file (which CRIU's RPC lets set the images and work directories).
    if (r.work_dir_fd < 0) return make_error("a CRIU started by another process needs a work directory");
    std::string self = "/proc/" + std::to_string(::getpid()) + "/fd/";
    std::string conf = "images-dir " + self + std::to_string(r.images_dir_fd) + "\nwork-dir " + self +
                       std::to_string(r.work_dir_fd) + "\n";
    UniqueFd f(::openat(r.work_dir_fd, kRpcConf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!f.valid()) return sys_error("cannot write CRIU's configuration for this dump");
    CRYO_TRY(sys::write_all(f.get(), conf, "CRIU's configuration for this dump"));
    o->set_config_file(self + std::to_string(r.work_dir_fd) + "/" + kRpcConf);
    named = true;
  }
  auto resp = ask(req, r.notify);
  if (named) ::unlinkat(r.work_dir_fd, kRpcConf, 0);
  return resp;
}

Result<pid_t> Session::restore(const RestoreRequest& r, const std::string& log_path) {
  ::criu_req req;
  req.set_type(::RESTORE);
  auto* o = req.mutable_opts();
  o->set_images_dir_fd(r.images_dir_fd);
  if (r.work_dir_fd >= 0) o->set_work_dir_fd(r.work_dir_fd);
  o->set_log_file(r.log_file);
  o->set_log_level(4);
  o->set_tcp_established(r.tcp_established);
  o->set_file_locks(true);
  o->set_rst_sibling(true);
  o->set_notify_scripts(static_cast<bool>(r.notify));
  for (const auto& e : r.external) o->add_external(e);
  if (!r.root.empty()) o->set_root(r.root);
  if (r.compat_mounts) o->set_mntns_compat_mode(true);
  for (const auto& [key, fd] : r.inherit) {
    auto* i = o->add_inherit_fd();
    i->set_key(key);
    i->set_fd(fd);
  }
  auto resp = ask(req, r.notify);
  if (!resp) return resp.error();
  if (!resp->success()) return failure("CRIU restore", *resp, log_path);
  return static_cast<pid_t>(resp->restore().pid());
}

Result<Version> probe(const std::string& criu_path) {
  std::string shown = criu_path;
  if (criu_path.find('/') == std::string::npos) {
    shown = sys::find_in_path(criu_path);
    if (shown.empty())
      return make_error(ErrorKind::criu, "CRIU is not installed (no 'criu' in PATH)").with_hint(kInstallHint);
  } else if (::access(criu_path.c_str(), X_OK) != 0) {
    return sys_error("cannot run CRIU at '" + criu_path + "'").with_hint(kInstallHint);
  }
  auto s = Session::start(criu_path);
  if (!s) return s.error();
  auto v = s->version();
  if (!v)
    return make_error(ErrorKind::criu, "CRIU at '" + shown + "' does not run on this kernel (" + v.error().message + ")")
        .with_hint(kInstallHint);
  if (v->code() < kMinVersion.code())
    return make_error(ErrorKind::criu, "CRIU " + v->text() + " at '" + shown + "' is too old: cryo needs CRIU >= " +
                      kMinVersion.text() + " (older ones cannot dump sockets on Linux >= 6.16)")
        .with_hint(kInstallHint);
  return v;
}

std::string first_error(const std::string& log) {
  std::stringstream ss(log);
  std::string line;
  while (std::getline(ss, line)) {
    if (line.find("Error (") == std::string::npos) continue;
    if (line.find("RLIMIT_NOFILE") != std::string::npos) continue;  // harmless: logged where CRIU may not raise its own limit
    auto p = line.find("): ");
    return p == std::string::npos ? line : line.substr(p + 3);
  }
  return "";
}

std::string hint_for_log(const std::string& log) {
  // Only CRIU's errors: its ordinary lines name sockets, mounts and files too.
  std::stringstream ss(log);
  std::string line, errors;
  while (std::getline(ss, line))
    if (line.find("Error (") != std::string::npos) errors += line + "\n";
  struct Rule {
    const char* needle;
    const char* hint;
  };
  static const Rule rules[] = {
      {"No space left on device", "the store's disk is full: free space there, or choose another store with --store"},
      {"Read-only file system", "the store is on a read-only file system: choose a writable one with --store"},
      {"opt: Operation not supported", "this CRIU cannot dump sockets on this kernel: install CRIU >= 4.2 (scripts/install-criu.sh)"},
      {"has bad size", "a file the job has open changed size since the checkpoint; restore it with cryo, which puts such files back"},
      {"Can't fork for", "a PID the job needs is taken; cryo restores into a new PID namespace, so this job was not started by 'cryo run'"},
      {"Connected TCP socket", "the job has established TCP connections: checkpoint it with --tcp-established"},
      {"unix socket", "the job is connected to a UNIX socket outside itself, which CRIU cannot checkpoint"},
      {"doesn't live in IPC ns", "the job uses SysV shared memory in the host's IPC namespace, which CRIU cannot "
                                 "checkpoint: run it without --ipc host, in an IPC namespace of its own"},
      {"Can't lookup mount", "the job has a file open from outside its mount namespace (one that the program "
                             "that started cryo passed down?): start the job with only its own files open"},
      {"Can't dump ghost file", "the job holds a deleted file larger than CRIU dumps (4 GiB): keep it under that, "
                                "or do not delete it while it is open"},
      {"uild-ID", "an executable or library the job mapped was replaced since the checkpoint: put back the "
                  "build it ran, or restore on a node that has it ('cryo restore --dry-run' lists them)"},
      {"Can't open file", "a file the job had open is not where it was: put it back, or restore on a node that "
                          "has it ('cryo restore --dry-run' lists them)"},
  };
  for (const auto& r : rules)
    if (errors.find(r.needle) != std::string::npos) return r.hint;
  return "";
}

}  // namespace cryo::criu
