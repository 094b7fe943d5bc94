#include "job/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <optional>
#include <utility>
#include <fmt/format.h>

#include "base/duration.h"
#include "base/log.h"
#include "base/sys.h"
#include "job/allocation.h"
#include "job/checkpoint.h"
#include "job/container.h"
#include "job/control.h"
#include "job/files.h"
#include "job/mpi.h"

namespace cryo::job {

Result<UniqueFd> lock_job(const store::JobDir& dir) {
  auto fd = sys::open(dir.file(store::JobFile::lock), O_RDWR | O_CREAT, 0600);
  if (!fd) return fd.error();
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) < 0) {
    auto st = load_state(dir);
    std::string who = st ? fmt::format(" (supervisor pid {} on {})", st->supervisor_pid, st->host) : "";
    return make_error(ErrorKind::busy, "job '" + dir.name() + "' is running" + who)
        .with_hint("'cryo checkpoint " + dir.name() + " --stop' stops it at a checkpoint");
  }
  return fd;
}

namespace {

class Supervisor {
 public:
  explicit Supervisor(Supervised s) : s_(std::move(s)), dir_(*s_.dir) {}
  int run();

 private:
  void on_signal();
  void on_slurm_end(int sig);
  void on_control();
  void start_checkpoint(int client_fd, bool stop, bool tcp, bool wait);
  void on_worker_note();
  void dump_done();
  void worker_ended(pid_t pid, int status);
  bool stopping() const;
  void job_ended(int status);
  void prepare_criu();
  void arm_criu();
  void drop_spare_criu();
  void discard_armed_dir();
  void reply_status(int fd);
  int finish();

  Supervised s_;
  store::JobDir& dir_;
  Watched w_;

  // Checkpoint workers: at most one dumps at a time; those that have
  // dumped go on flushing (one after the other, under the flush lock).
  struct Worker {
    bool stop = false;
    bool dumped = false;
    double started = 0;
    // The directory of the armed CRIU it took, if any.  Its dump renames it;
    // if the worker failed before (or was killed), it is removed when the
    // worker ends.
    std::string armed_dir;
  };
  std::map<pid_t, Worker> workers_;
  pid_t dumping_ = -1;
  // A `criu swrk` started ahead of time for the next checkpoint's worker,
  // so that CRIU's own start (exec, loading, set-up) is not
  // part of the checkpoint.  It waits on its socket; the supervisor reaps it.
  std::optional<criu::Session> spare_criu_;
  // Armed (criu::Session::arm_dump) where it can be: it has probed the
  // kernel and waits at its pre-dump notification, with armed_dir_ as its
  // directory, for this job's next checkpoint.  CRIU opens that directory
  // through our /proc/PID/fd: its fds stay open here until the worker that
  // took the CRIU ends.
  std::string armed_dir_;
  std::vector<UniqueFd> armed_fds_;
  std::map<pid_t, std::vector<UniqueFd>> worker_fds_;
  UniqueFd dump_notes_;  // from the dumping worker: "r" output may flow, "d" dumped
  // Output is not read from the job's freeze until the worker lets it flow;
  // after a --stop checkpoint it never does: what the job wrote after the
  // dump belongs to its future, which the restore replays.
  bool gated_ = false;

  bool job_done_ = false;
  int job_status_ = 0;
  bool stopped_ = false;

  // Inside a Slurm batch job: its allocation.
  std::optional<SlurmAllocation> alloc_;
  bool stop_after_worker_ = false;  // a checkpoint was running when the allocation's end began
  double last_checkpoint_seconds_ = 0;
};

int Supervisor::run() {
  if (s_.slurm && s_.config.checkpoint_on.empty()) s_.config.checkpoint_on = "USR1";
  w_ = start_watching(dir_, s_.config, {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT}, s_.state,
                      s_.quiet);
  if (s_.slurm) {
    alloc_.emplace(*s_.slurm, dir_, s_.config.checkpoint_on, s_.quiet);
    alloc_->begin(s_.state);
  }
  if (auto st = save_state(dir_, s_.state); !st)
    event(dir_, "warning: " + st.error().message + ", ignoring", s_.quiet);

  // A job that ended before SIGCHLD was blocked sent its signal to nobody.
  int early;
  if (::waitpid(s_.state.job_pid, &early, WNOHANG) == s_.state.job_pid) job_ended(early);
  prepare_criu();
  for (;;) {
    std::vector<pollfd> pfds;
    pfds.push_back({w_.signals.get(), POLLIN, 0});
    pfds.push_back({w_.control.valid() ? w_.control.get() : -1, POLLIN, 0});
    pfds.push_back({w_.timer.valid() ? w_.timer.get() : -1, POLLIN, 0});
    pfds.push_back({dump_notes_.valid() ? dump_notes_.get() : -1, POLLIN, 0});
    size_t first_output = pfds.size();
    for (auto& o : s_.outputs) {
      bool readable = !o.eof && !gated_;
      pfds.push_back({readable ? o.pipe.get() : -1, POLLIN, 0});
    }
    if (job_done_ && workers_.empty()) {
      // Whatever is left in the pipes belongs to the job's last moments.
      for (auto& o : s_.outputs)
        if (!o.eof && !gated_) (void)drain(o);
      return finish();
    }
    int n = ::poll(pfds.data(), pfds.size(), -1);
    if (n < 0 && errno != EINTR) {
      event(dir_, std::string("poll failed: ") + std::strerror(errno), s_.quiet);
      return 1;
    }
    // A worker's "dumped" first: its client may already be asking again.
    if (pfds[3].revents) on_worker_note();
    if (pfds[0].revents) on_signal();
    if (pfds[1].revents) on_control();
    if (pfds[2].revents) {
      uint64_t ticks;
      (void)!::read(w_.timer.get(), &ticks, sizeof ticks);
      w_.next_checkpoint = sys::now() + s_.config.every;
      // A periodic checkpoint waits for the previous one to be durable.
      if (workers_.empty() && !job_done_) start_checkpoint(-1, false, s_.config.tcp_established, false);
    }
    for (size_t i = 0; i < s_.outputs.size(); i++)
      if (pfds[first_output + i].revents) {
        if (auto st = drain(s_.outputs[i]); !st) {
          event(dir_, st.error().message + ", ignoring", s_.quiet);
          s_.outputs[i].eof = true;
        }
      }
  }
}

void Supervisor::on_signal() {
  signalfd_siginfo si;
  while (::read(w_.signals.get(), &si, sizeof si) == sizeof si) {
    int sig = static_cast<int>(si.ssi_signo);
    if (sig == SIGCHLD) {
      int status;
      pid_t p;
      while ((p = ::waitpid(-1, &status, WNOHANG)) > 0) {
        if (p == s_.state.job_pid) job_ended(status);
        else if (workers_.count(p)) {
          worker_ended(p, status);
          prepare_criu();
        } else if (spare_criu_ && p == spare_criu_->pid()) {
          drop_spare_criu();  // it died waiting
        }
      }
    } else if (alloc_ && sig == SIGTERM && alloc_->cancelled()) {
      if (!job_done_) ::kill(s_.state.job_pid, sig);
    } else if (alloc_ && (sig == w_.checkpoint_signal || sig == SIGTERM)) {
      on_slurm_end(sig);
    } else if (sig == w_.checkpoint_signal) {
      event(dir_, fmt::format("received {}: checkpointing", s_.config.checkpoint_on), s_.quiet);
      if (dumping_ < 0 && !stopping() && !job_done_) start_checkpoint(-1, false, s_.config.tcp_established, false);
    } else if (!job_done_) {
      ::kill(s_.state.job_pid, sig);
    }
  }
}

// The allocation is ending: the time-limit warning, a preemption (SIGTERM
// with a grace time) or 'scancel -b -s USR1'.  Checkpoint and stop the
// job; finish() requeues it.
void Supervisor::on_slurm_end(int sig) {
  if (stopped_ || !alloc_->begin_end()) return;
  if (job_done_) return;
  event(dir_, alloc_->end_line(sig, "checkpointing, stopping and requeueing Slurm job " + alloc_->env().job_id),
        s_.quiet);
  if (dumping_ >= 0) {
    stop_after_worker_ = true;  // one dump at a time; this one follows
    return;
  }
  start_checkpoint(-1, true, s_.config.tcp_established, true);
}

void Supervisor::on_control() {
  UniqueFd c(::accept4(w_.control.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!c.valid()) return;
  struct timeval tv {2, 0};
  ::setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  control::Request req;
  if (!recv_message(c.get(), req).ok()) return;
  if (req.version() != kControlVersion) {
    send_failure(c.get(), make_error(fmt::format("this job's supervisor speaks control protocol {}, the client {}",
                                                 kControlVersion, req.version()))
                              .with_hint("use the same cryo version for the job and the command"));
    return;
  }
  if (req.has_status()) return reply_status(c.get());
  if (req.has_checkpoint()) {
    if (job_done_) {
      send_failure(c.get(), make_error("job '" + dir_.name() + "' has just ended; nothing to checkpoint"));
      return;
    }
    if (dumping_ >= 0) {
      send_failure(c.get(), make_error(ErrorKind::busy, fmt::format("a checkpoint of job '{}' is already in progress (for {})",
                                                   dir_.name(), format_duration(sys::now() - workers_[dumping_].started)))
                                .with_hint("wait for it to finish, then try again"));
      return;
    }
    if (stopping()) {
      send_failure(c.get(), make_error("job '" + dir_.name() + "' is stopping at a checkpoint")
                                .with_hint("continue it afterwards with 'cryo restore " + dir_.name() + "'"));
      return;
    }
    start_checkpoint(c.get(), req.checkpoint().stop(), req.checkpoint().tcp_established() || s_.config.tcp_established,
                     req.checkpoint().wait());
  }
}

void Supervisor::reply_status(int fd) {
  control::Reply r;
  auto* st = r.mutable_status();
  st->set_state(dumping_ >= 0 ? "checkpointing" : "running");
  int flushing = 0;
  for (const auto& [pid, w] : workers_) flushing += w.dumped;
  st->set_flushing(flushing);
  st->set_supervisor_pid(::getpid());
  st->set_job_pid(s_.state.job_pid);
  st->set_started(s_.state.since);
  if (w_.next_checkpoint > 0) st->set_next_checkpoint(w_.next_checkpoint);
  st->set_rss_bytes(tree_rss(s_.config.traits().engine_checkpoints ? container_pid(dir_) : s_.state.job_pid));
  (void)send_message(fd, r);
}

void Supervisor::start_checkpoint(int client_fd, bool stop, bool tcp, bool wait) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) {
    if (client_fd >= 0) send_failure(client_fd, sys_error("cannot start a checkpoint"));
    return;
  }
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t pid = ::fork();
  if (pid < 0) {
    if (client_fd >= 0) send_failure(client_fd, sys_error("cannot start a checkpoint"));
    return;
  }
  if (pid == 0) {
    rd.reset();
    CheckpointRun run;
    DumpSpec& d = run.dump;
    d.dir = &dir_;
    d.config = &s_.config;
    d.tier = s_.tier;
    d.job_pid = s_.state.job_pid;
    for (auto& o : s_.outputs) d.outputs.push_back(&o);
    d.criu_path = s_.criu_path;
    d.criu_version = s_.criu_version;
    d.criu = std::move(spare_criu_);
    d.armed_dir = armed_dir_;
    d.init_path = s_.init_path;
    d.stop = stop;
    d.tcp_established = tcp;
    d.quiet = s_.quiet;
    run.wait = wait;
    run.client_fd = client_fd >= 0 ? ::dup(client_fd) : -1;
    run.notify_fd = wr.get();
    int code = take_checkpoint(run);
    d.criu.reset();  // a spare CRIU the worker did not use
    ::_exit(code);
  }
  // The worker holds the spare CRIU's socket now; it ends with the worker,
  // and so do the directory fds an armed one may still need.
  worker_fds_[pid] = std::move(armed_fds_);
  armed_fds_.clear();
  workers_[pid] = Worker{stop, false, sys::now(), std::exchange(armed_dir_, {})};
  drop_spare_criu();
  dumping_ = pid;
  dump_notes_ = std::move(rd);
  gated_ = true;
}

bool Supervisor::stopping() const {
  for (const auto& [pid, w] : workers_)
    if (w.stop) return true;
  return false;
}

void Supervisor::on_worker_note() {
  char notes[8];
  ssize_t n = ::read(dump_notes_.get(), notes, sizeof notes);
  if (n <= 0) {  // the worker ended; worker_ended decides
    dump_notes_.reset();
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    if (notes[i] == 'r') gated_ = false;
    if (notes[i] == 'd') dump_done();
  }
}

// The dump is complete; its worker goes on flushing, and the next
// checkpoint may start.
void Supervisor::dump_done() {
  if (dumping_ < 0) return;
  workers_[dumping_].dumped = true;
  dumping_ = -1;
  dump_notes_.reset();
  if (stop_after_worker_ && !stopping() && !job_done_) {
    stop_after_worker_ = false;
    start_checkpoint(-1, true, s_.config.tcp_established, true);
  }
}

void Supervisor::worker_ended(pid_t pid, int status) {
  Worker w = workers_[pid];
  workers_.erase(pid);
  worker_fds_.erase(pid);
  if (!w.armed_dir.empty()) (void)sys::remove_tree(w.armed_dir);
  if (pid == dumping_) {
    dumping_ = -1;
    dump_notes_.reset();
    gated_ = false;
  }
  last_checkpoint_seconds_ = sys::now() - w.started;
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (alloc_ && code == kWorkerDone) alloc_->checkpoint_taken(last_checkpoint_seconds_, s_.state);
  if (w.stop) {
    if (code == kWorkerStopped) {
      stopped_ = true;
      // The job was killed at its checkpoint; what is left in the pipes it
      // wrote after the dump, and will write again after the restore.  (A
      // container's output is cut at its log instead: read it to the end.)
      if (!s_.config.traits().engine_checkpoints)
        for (auto& o : s_.outputs) o.eof = true;
    } else {
      gated_ = false;
    }
  }
  if (WIFSIGNALED(status)) {
    event(dir_, fmt::format("checkpoint failed: its worker was killed by signal {}; the job keeps running and "
                            "earlier checkpoints are unchanged{}", WTERMSIG(status),
                            w.dumped ? " (its dump is complete: the next checkpoint, or 'cryo restore', commits it)" : ""),
          s_.quiet);
    if (w.stop && !job_done_)
      for (pid_t p : process_tree(s_.state.job_pid)) ::kill(p, SIGCONT);
    // Its half-written directories are removed by the next checkpoint; do it now.
    store::remove_leftovers(dir_.checkpoints_dir());
  }
  if (stop_after_worker_ && dumping_ < 0 && !stopping() && !stopped_ && !job_done_) {
    stop_after_worker_ = false;
    start_checkpoint(-1, true, s_.config.tcp_established, true);
    return;
  }
  if (alloc_ && alloc_->ending() && w.stop && !stopped_ && !job_done_) {
    // The checkpoint at the end of the allocation failed.  The job would be
    // killed at the limit anyway: stop it now and let the next allocation
    // continue from the latest checkpoint, if there is one.
    auto latest = dir_.latest_id();
    if (latest && !latest->empty()) {
      event(dir_, fmt::format("the checkpoint failed; checkpoint {} stays the latest: stopping the job so that "
                              "its next allocation continues from it", *latest), s_.quiet);
      ::kill(s_.state.job_pid, SIGKILL);
    } else {
      event(dir_, "the checkpoint failed and the job has no earlier checkpoint: it keeps running and is lost "
                  "if it does not finish before the time limit", s_.quiet);
      alloc_->end_abandoned();
    }
  }
}

void Supervisor::job_ended(int status) {
  job_done_ = true;
  job_status_ = status;
  spare_criu_.reset();  // disarmed first if armed
  discard_armed_dir();
}

void Supervisor::prepare_criu() {
  if (spare_criu_ || job_done_ || stopping() || s_.config.traits().engine_checkpoints) return;
  // Without it, the next worker starts its own CRIU, and reports why not.
  if (auto s = criu::Session::start(s_.criu_path)) {
    spare_criu_.emplace(std::move(*s));
    arm_criu();
  }
}

// Arms the spare CRIU for the next checkpoint into the fast tier, as a
// worker would ask for it unless told --stop with --tcp-established.  A
// checkpoint that goes elsewhere, or asks otherwise, disarms it and starts
// another CRIU.  Jobs in Apptainer name their mounts at each dump, so theirs
// stays a plain spare; so does any that cannot be armed.
void Supervisor::arm_criu() {
  if (s_.config.kind != Kind::process || !s_.tier.enabled()) return;
  auto dir = store::make_armed_dir(dir_, s_.tier);
  if (!dir) return;
  auto images = sys::open_dir(*dir + "/" + store::kImagesDir);
  auto work = sys::open_dir(*dir);
  criu::DumpRequest req;
  req.pid = s_.state.job_pid;
  req.leave_running = true;
  req.tcp_established = s_.config.tcp_established;
  req.notify = [](const std::string&, pid_t) { return Status{}; };
  Status armed = images && work ? Status{} : Status(make_error("cannot open " + *dir));
  if (armed) {
    req.images_dir_fd = images->get();
    req.work_dir_fd = work->get();
    armed = spare_criu_->arm_dump(req);
  }
  if (!armed) {
    CRYO_LOG("criu", info) << "cannot arm the spare CRIU: " << armed.error().message;
    (void)sys::remove_tree(*dir);
    return;
  }
  armed_dir_ = *dir;
  armed_fds_.clear();
  armed_fds_.push_back(std::move(*images));
  armed_fds_.push_back(std::move(*work));
}

// Forgets the spare CRIU without waiting for it: SIGCHLD reaps it.
void Supervisor::drop_spare_criu() {
  if (!spare_criu_) return;
  spare_criu_->release();
  spare_criu_.reset();
  discard_armed_dir();
}

// The armed directory of a spare CRIU that no worker took.
void Supervisor::discard_armed_dir() {
  armed_fds_.clear();
  if (!armed_dir_.empty()) (void)sys::remove_tree(armed_dir_);
  armed_dir_.clear();
}

int Supervisor::finish() {
  // A flush that was killed left its dump complete: commit it before the
  // job's state says where to continue from.
  if (auto st = flush_pending(dir_, s_.tier, s_.config.keep, s_.quiet); !st)
    event(dir_, "warning: " + st.error().message + ", ignoring", s_.quiet);
  JobState& st = s_.state;
  st.since = sys::now();
  int code;
  if (stopped_) {
    st.state = State::stopped;
    auto latest = dir_.latest_id();
    st.message = "stopped at checkpoint " + (latest ? *latest : std::string("?"));
    code = kExitStopped;
  } else if (WIFEXITED(job_status_)) {
    st.state = State::finished;
    st.exit_code = WEXITSTATUS(job_status_);
    code = st.exit_code;
    event(dir_, fmt::format("job '{}' finished with exit status {}", dir_.name(), code), s_.quiet);
  } else {
    int sig = WTERMSIG(job_status_);
    st.state = State::failed;
    st.exit_code = 128 + sig;
    st.message = fmt::format("the job was killed by signal {} ({})", sig, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    code = st.exit_code;
    event(dir_, fmt::format("job '{}' was killed by signal {}; 'cryo restore {}' continues it from its latest checkpoint",
                            dir_.name(), sig, dir_.name()), s_.quiet);
  }
  if (w_.control.valid()) ::unlink(dir_.file(store::JobFile::control).c_str());
  // A finished job's fast copies only hold memory the node needs.
  if (st.state == State::finished)
    for (const auto& d : store::fast_dirs(s_.tier, dir_)) (void)sys::remove_tree(d);
  // An MPI job's live files: the checkpoints hold their contents, and a
  // restore puts them back.
  if (s_.config.mpi != Mpi::none) {
    (void)sys::remove_tree(mpi_shm_dir(s_.config.name));
    (void)sys::remove_tree(dir_.file(store::JobFile::mpi));
  }
  if (alloc_) return alloc_->finish(st, code, stopped_, last_checkpoint_seconds_);
  if (auto r = save_state(dir_, st); !r) event(dir_, "warning: " + r.error().message, s_.quiet);
  return code;
}

}  // namespace

int supervise(Supervised s) { return Supervisor(std::move(s)).run(); }

Watched start_watching(const store::JobDir& dir, const JobConfig& c, std::initializer_list<int> signals,
                       JobState& state, bool quiet) {
  Watched w;
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : signals) sigaddset(&mask, sig);
  w.checkpoint_signal = sys::signal_number(c.checkpoint_on);
  if (w.checkpoint_signal) sigaddset(&mask, w.checkpoint_signal);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  w.signals.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (auto l = control_listen(dir.path()); !l) {
    event(dir, "warning: " + l.error().message + "; 'cryo checkpoint' and 'cryo status' will not reach this job, ignoring",
          quiet);
  } else {
    w.control = std::move(*l);
  }
  if (c.every > 0) {
    w.timer = sys::interval_timer(c.every);
    w.next_checkpoint = sys::now() + c.every;
  }
  state.supervisor_pid = ::getpid();
  state.host = sys::hostname();
  state.since = sys::now();
  return w;
}

}  // namespace cryo::job
