#include "job/container.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cctype>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "base/log.h"
#include "base/sys.h"

namespace cryo::job {

namespace {

container::Engine engine_of(const JobConfig& c) {
  return container::Engine(c.kind == Kind::docker ? container::Kind::docker : container::Kind::podman);
}

// Where the hook finds the container's log (written at every start).
Status save_container_info(const store::JobDir& dir, const container::Info& i) {
  nlohmann::json j = {{"id", i.id}, {"pid", i.pid}, {"log_path", i.log_path}, {"ip", i.ip}};
  return sys::write_file_atomic(dir.file(store::JobFile::container), j.dump(1) + "\n", 0600);
}

// The address whose traffic a stop checkpoint blocked, until the restore.
Status save_blocked(const store::JobDir& dir, const std::string& ip) {
  return sys::write_file_atomic(dir.file(store::JobFile::blocked_ip), ip, 0600);
}

// The hook script and CRIU configuration runc reads for a Podman job.
Status write_hook(const store::JobDir& dir) {
  std::string cryo = sys::self_dir() + "/cryo";
  std::string script = fmt::format("#!/bin/sh\n# CRIU's action script for this job's container (written by cryo)\nexec '{}' criu-hook '{}'\n",
                                   cryo, dir.path());
  CRYO_TRY(sys::write_file_atomic(dir.file(store::JobFile::criu_hook), script, 0700));
  return sys::write_file_atomic(dir.file(store::JobFile::criu_conf), "action-script \"" + dir.file(store::JobFile::criu_hook) + "\"\n", 0600);
}

// Host firewall rules that drop a container's traffic, named after its job.
Status block_traffic(const std::string& job, const std::string& ip, bool on) {
  const char* op = on ? "-I" : "-D";
  for (auto [chain, dir] : {std::pair{"INPUT", "-s"}, std::pair{"OUTPUT", "-d"}, std::pair{"FORWARD", "-s"},
                            std::pair{"FORWARD", "-d"}}) {
    auto r = sys::run_command({"iptables", "-w", op, chain, dir, ip, "-m", "comment", "--comment",
                               "cryo: " + job + " is checkpointed", "-j", "DROP"});
    if (!r && on) return r.error().context("cannot block the container's traffic during its checkpoint");
  }
  return {};
}

// Waits until the container's output pipes are empty and its log has
// stopped growing; returns the log's size.  The container is frozen.
Result<uint64_t> measure_cut(pid_t init, const std::string& log_path) {
  std::vector<UniqueFd> pipes;
  for (int fd : {1, 2}) {
    std::string link = fmt::format("/proc/{}/fd/{}", init, fd);
    auto st = sys::stat(link);
    if (!st || !S_ISFIFO(st->st_mode)) continue;
    if (auto p = sys::open(link, O_RDONLY | O_NONBLOCK)) pipes.push_back(std::move(*p));
  }
  auto deadline = sys::now() + 10;
  uint64_t last = UINT64_MAX;
  while (sys::now() < deadline) {
    bool empty = true;
    for (const auto& p : pipes) {
      int n = 0;
      if (::ioctl(p.get(), FIONREAD, &n) == 0 && n > 0) empty = false;
    }
    auto st = sys::stat(log_path);
    uint64_t size = st ? static_cast<uint64_t>(st->st_size) : 0;
    if (empty && size == last) return size;
    last = empty ? size : UINT64_MAX;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return make_error("the container's output did not settle into its log '" + log_path + "' within 10 s");
}

// The watcher (see container.h).  Runs in a child of cryo; never returns.
[[noreturn]] void watch(const JobConfig& c, const store::JobDir& dir, const std::string& log_path, uint64_t offset,
                        int out, int err) {
  container::Engine engine = engine_of(c);
  std::string name = container_name(c.name);
  sigset_t all;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::atomic<bool> ended{false};
  std::atomic<int> code{0};
  std::thread waiter([&] {
    auto r = engine.wait(name);
    code = r ? *r : 137;  // removed under it: killed
    ended = true;
  });
  waiter.detach();
  std::thread forwarder([&] {
    for (;;) {
      int sig = 0;
      if (::sigwait(&all, &sig) != 0) continue;
      if (sig == SIGCHLD || sig == SIGPIPE) continue;
      (void)engine.kill(name, sig);
    }
  });
  forwarder.detach();
  container::LogReader reader(log_path, engine.log_format(), offset);
  // While the job stops at a checkpoint, nothing beyond the log's cut is
  // its output: the restored job writes it again.  The cut is recorded
  // before the container may write past it, so reading first and checking
  // for the cut after never lets such a line through.
  auto cut = [&]() -> uint64_t {
    if (!sys::exists(dir.file(store::JobFile::container_stopping))) return UINT64_MAX;
    auto t = sys::read_file(dir.file(store::JobFile::container_cut));
    return t && !t->empty() && std::isdigit(static_cast<unsigned char>((*t)[0])) ? std::strtoull(t->c_str(), nullptr, 10)
                                                                                 : UINT64_MAX;
  };
  auto pump = [&] {
    auto entries = reader.read();
    if (!entries) return;
    uint64_t limit = cut();
    for (const auto& e : *entries) {
      if (e.end > limit) {
        reader.rewind(limit);
        break;
      }
      (void)sys::write_all(e.stderr ? err : out, e.text, "the job's output");
    }
  };
  while (!ended) {
    pump();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // The engine may still be writing the container's last words.
  for (int i = 0; i < 4; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    pump();
  }
  ::close(out);
  ::close(err);
  int status = code;
  // A container killed by a signal ends as its watcher does.
  if (status > 128 && status < 128 + 32 && status - 128 != SIGSTOP) {
    sigset_t none;
    sigemptyset(&none);
    ::signal(status - 128, SIG_DFL);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
    ::kill(::getpid(), status - 128);
  }
  ::_exit(status & 0xff);
}

Result<Launched> start_watcher(const JobConfig& c, const store::JobDir& dir, const std::string& log_path,
                               uint64_t offset) {
  for (auto f : {store::JobFile::container_stopping, store::JobFile::container_cut}) ::unlink(dir.file(f).c_str());
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0) return sys_error("cannot create the job's pipes");
  UniqueFd out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
  pid_t pid = ::fork();
  if (pid < 0) return sys_error("cannot start the container's watcher");
  if (pid == 0) {
    out_r.reset();
    err_r.reset();
    ::setsid();  // the terminal's ^C goes to cryo, which forwards it
    watch(c, dir, log_path, offset, out_w.get(), err_w.get());
  }
  return Launched{pid, std::move(out_r), std::move(err_r)};
}

}  // namespace

std::string container_name(const std::string& job) { return "cryo-" + job; }

pid_t container_pid(const store::JobDir& dir) {
  auto text = sys::read_file(dir.file(store::JobFile::container));
  if (!text) return 0;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object()) return 0;
  try {
    return json_int(j, "pid", pid_t{0});
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
}

container::RunSpec container_spec(const JobConfig& c, const store::JobDir& dir) {
  container::RunSpec s;
  s.name = container_name(c.name);
  s.image = c.image;
  s.command = c.command;
  s.options = c.engine_options;
  s.env = {"CRYO_JOB=" + c.name};
  if (c.kind == Kind::podman) s.criu_config = dir.file(store::JobFile::criu_conf);
  return s;
}

Result<Launched> launch_container(const JobConfig& c, const store::JobDir& dir) {
  container::Engine engine = engine_of(c);
  CRYO_TRY(engine.check_image(c.image));
  if (c.kind == Kind::podman) CRYO_TRY(write_hook(dir));
  CRYO_TRY(engine.remove(container_name(c.name)));  // left over from an earlier job of this name
  CRYO_TRY(engine.run(container_spec(c, dir)));
  auto info = engine.inspect(container_name(c.name));
  if (!info) return info.error();
  CRYO_TRY(save_container_info(dir, *info));
  return start_watcher(c, dir, info->log_path, 0);
}

Result<ContainerDump> dump_container(const JobConfig& c, const store::JobDir& job, const std::string& dir, bool tcp,
                                     bool stop) {
  container::Engine engine = engine_of(c);
  std::string name = container_name(c.name);
  auto info = engine.inspect(name);
  if (!info) return info.error();
  if (!info->running) return make_error("the container " + name + " is not running");
  ContainerDump d;
  if (stop && tcp && !info->ip.empty()) {
    CRYO_TRY(block_traffic(c.name, info->ip, true));
    d.ip = info->ip;
    CRYO_TRY(save_blocked(job, d.ip));
  }
  auto failed = [&](const Error& e) {
    ::unlink(job.file(store::JobFile::container_stopping).c_str());
    if (!d.ip.empty()) {
      (void)block_traffic(c.name, d.ip, false);
      ::unlink(job.file(store::JobFile::blocked_ip).c_str());
    }
    return e;
  };
  if (c.kind == Kind::podman) {
    ::unlink(job.file(store::JobFile::container_cut).c_str());
    if (stop) CRYO_TRY(sys::write_file_atomic(job.file(store::JobFile::container_stopping), "", 0600, false));
    if (auto st = engine.checkpoint(name, dir, tcp); !st) return failed(st.error());
    auto cut = sys::read_file(job.file(store::JobFile::container_cut));
    if (!cut)
      return failed(make_error("the container's log could not be cut at the checkpoint: cryo's CRIU hook did not run")
                        .with_hint("runc must honour the org.criu.config annotation (runc >= 1.0)"));
    if (cut->rfind("error: ", 0) == 0) return failed(make_error(cut->substr(7)));
    d.log_cut = std::strtoull(cut->c_str(), nullptr, 10);
    if (stop)
      if (auto st = engine.pause(name); !st) return failed(st.error());
  } else {
    if (auto st = engine.pause(name); !st) return failed(st.error());
    auto cut = measure_cut(info->pid, info->log_path);
    Status st = cut ? engine.checkpoint(name, dir, tcp) : Status(cut.error());
    if (!st || !stop) (void)engine.unpause(name);
    if (!st) return failed(st.error());
    d.log_cut = *cut;
  }
  auto sizes = container::stream_sizes(info->log_path, engine.log_format(), d.log_cut);
  if (!sizes) return failed(sizes.error());
  d.out = sizes->out;
  d.err = sizes->err;
  return d;
}

void resume_container(const JobConfig& c, const store::JobDir& job) {
  ::unlink(job.file(store::JobFile::container_stopping).c_str());
  (void)engine_of(c).unpause(container_name(c.name));
  if (auto ip = sys::read_file(job.file(store::JobFile::blocked_ip)); ip && !ip->empty()) {
    (void)block_traffic(c.name, *ip, false);
    ::unlink(job.file(store::JobFile::blocked_ip).c_str());
  }
}

void stop_container(const JobConfig& c) { (void)engine_of(c).remove(container_name(c.name)); }

void forget_container(const JobConfig& c, const store::JobDir& job) {
  stop_container(c);
  if (auto ip = sys::read_file(job.file(store::JobFile::blocked_ip)); ip && !ip->empty())
    for (int i = 0; i < 2; i++) (void)block_traffic(c.name, *ip, false);
}

Result<Launched> restore_container(const JobConfig& c, const store::JobDir& job, const std::string& dir, bool tcp,
                                   uint64_t log_cut, const std::string& blocked_ip) {
  container::Engine engine = engine_of(c);
  CRYO_TRY(engine.check_image(c.image));
  if (c.kind == Kind::podman) CRYO_TRY(write_hook(job));
  // On another node, the restored container's address needs the same block
  // until its sockets are back.
  if (!blocked_ip.empty()) CRYO_TRY(block_traffic(c.name, blocked_ip, true));
  Status restored = engine.restore(container_spec(c, job), dir, tcp, log_cut);
  if (!blocked_ip.empty()) {
    // Once here, and once more for the rule added at the checkpoint (on this node).
    (void)block_traffic(c.name, blocked_ip, false);
    (void)block_traffic(c.name, blocked_ip, false);
    ::unlink(job.file(store::JobFile::blocked_ip).c_str());
  }
  if (!restored) return restored.error();
  auto info = engine.inspect(container_name(c.name));
  if (!info) return info.error();
  CRYO_TRY(save_container_info(job, *info));
  // Podman's restored log starts with the checkpoint's (cut there); Docker's is new.
  return start_watcher(c, job, info->log_path, c.kind == Kind::podman ? log_cut : 0);
}

int criu_hook(const std::string& job_dir, const std::string& action, const std::string& pid) {
  if (action != "post-dump") return 0;
  store::JobDir dir(job_dir.substr(0, job_dir.rfind('/')), job_dir.substr(job_dir.rfind('/') + 1));
  auto text = sys::read_file(dir.file(store::JobFile::container));
  auto j = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
  std::string result;
  if (pid.empty() || !j.is_object()) {
    result = "error: the CRIU hook found no container to cut the log of";
  } else {
    auto cut = measure_cut(std::atoi(pid.c_str()), j.value("log_path", ""));
    result = cut ? std::to_string(*cut) : "error: " + cut.error().message;
  }
  // Failing here would fail the checkpoint; the worker reports the error.
  (void)sys::write_file_atomic(dir.file(store::JobFile::container_cut), result, 0600, false);
  return 0;
}

}  // namespace cryo::job
