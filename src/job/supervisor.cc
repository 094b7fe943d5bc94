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
#include <utility>

#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "job/control.h"
#include "job/events.h"

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

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::running: return "running";
    case Phase::checkpointing: return "checkpointing";
    case Phase::stopping: return "stopping";
    case Phase::ended: return "ending";
  }
  return "?";
}

void Runtime::spawn(const control::SpawnRequest&, UniqueFd client, const control::Reply&) {
  send_failure(client.get(), make_error(ErrorKind::usage, "'cryo rsh' reaches the parts of a multi-node job only"));
}

Supervisor::Supervisor(Supervised s, Runtime& rt, Seam seam)
    : s_(std::move(s)), dir_(*s_.dir), rt_(rt), seam_(std::move(seam)) {
  if (s_.slurm) {
    if (s_.config.checkpoint_on.empty()) s_.config.checkpoint_on = "USR1";
    alloc_.emplace(*s_.slurm, dir_, s_.config.checkpoint_on, s_.quiet, seam_.slurm);
  }
}

double Supervisor::now() const { return seam_.now ? seam_.now() : sys::now(); }

void Supervisor::start() {
  JobState& st = s_.state;
  st.state = State::running;
  st.supervisor_pid = ::getpid();
  st.host = sys::hostname();
  st.since = now();
  if (alloc_) alloc_->begin(st);
  if (auto r = save_state(dir_, st); !r) event(dir_, "warning: " + r.error().message + ", ignoring", s_.quiet);
  rt_.start();
}

void Supervisor::on_signal(int sig) {
  int checkpoint_signal = sys::signal_number(s_.config.checkpoint_on);
  if (sig == SIGCHLD) return rt_.on_child();
  if (sig == SIGPIPE) return;  // a reader of ours went away: its write fails instead
  if (alloc_ && sig == SIGTERM && alloc_->cancelled()) {
    if (phase_ != Phase::ended) rt_.forward_signal(sig);
    return;
  }
  if (alloc_ && (sig == checkpoint_signal || sig == SIGTERM)) return on_allocation_end(sig);
  if (sig == checkpoint_signal) {
    if (phase_ != Phase::running) {
      event(dir_, fmt::format("received {}: a checkpoint is already running, ignoring", s_.config.checkpoint_on),
            s_.quiet);
      return;
    }
    event(dir_, fmt::format("received {}: checkpointing", s_.config.checkpoint_on), s_.quiet);
    (void)begin(CheckpointRequest{false, s_.config.tcp_established, false, -1});
    return;
  }
  if (phase_ != Phase::ended) rt_.forward_signal(sig);
}

// The allocation is ending: the time-limit warning, a preemption (SIGTERM
// with a grace time) or 'scancel -b -s USR1'.  Checkpoint and stop the
// job; finish() requeues it.
void Supervisor::on_allocation_end(int sig) {
  if (stopped_ || phase_ == Phase::ended || !alloc_->begin_end()) return;
  event(dir_, alloc_->end_line(sig, "checkpointing, stopping and requeueing Slurm job " + alloc_->env().job_id),
        s_.quiet);
  CheckpointRequest r{true, s_.config.tcp_established, true, -1};
  if (phase_ == Phase::checkpointing) queued_ = r;  // one dump at a time: this one follows
  else if (phase_ == Phase::running) (void)begin(r);
  // Already stopping: that checkpoint is the end's.
}

void Supervisor::on_timer() {
  // A periodic checkpoint waits for the previous one to be durable.
  if (phase_ == Phase::running && !rt_.busy()) (void)begin(CheckpointRequest{false, s_.config.tcp_established, false, -1});
}

Status Supervisor::request_checkpoint(const CheckpointRequest& r) {
  if (phase_ == Phase::ended)
    return make_error("job '" + dir_.name() + "' has just ended; nothing to checkpoint");
  if (phase_ == Phase::checkpointing)
    return make_error(ErrorKind::busy, fmt::format("a checkpoint of job '{}' is already in progress (for {})",
                                                   dir_.name(), format_duration(now() - dump_started_)))
        .with_hint("wait for it to finish, then try again");
  if (phase_ == Phase::stopping)
    return make_error(ErrorKind::busy, "job '" + dir_.name() + "' is stopping at a checkpoint")
        .with_hint("continue it afterwards with 'cryo restore " + dir_.name() + "'");
  return begin(r);
}

Status Supervisor::begin(const CheckpointRequest& r) {
  phase_ = r.stop ? Phase::stopping : Phase::checkpointing;
  dump_started_ = now();
  Status st = rt_.begin_checkpoint(r);
  if (!st) {
    event(dir_, failed_line(st.error(), &dir_), s_.quiet);
    checkpoint_ended(CheckpointOutcome{CheckpointOutcome::Result::failed, r.stop, false, 0});
  }
  return st;
}

control::JobStatus Supervisor::status(double next_checkpoint) const {
  control::JobStatus st;
  st.set_state(phase_name(phase_));
  st.set_supervisor_pid(::getpid());
  st.set_job_pid(0);
  st.set_started(s_.state.since);
  if (next_checkpoint > 0) st.set_next_checkpoint(next_checkpoint);
  rt_.fill_status(st);
  return st;
}

void Supervisor::dumped() {
  if (phase_ == Phase::checkpointing) phase_ = Phase::running;
  run_queued();
}

void Supervisor::checkpoint_ended(const CheckpointOutcome& o) {
  using R = CheckpointOutcome::Result;
  last_checkpoint_seconds_ = o.seconds;
  if (alloc_ && o.result == R::durable) alloc_->checkpoint_taken(o.seconds, s_.state);
  if (o.result == R::stopped) stopped_ = true;
  // It failed before its dump was complete, or a stop that did not stop.
  if (phase_ == Phase::checkpointing && !o.dumped) phase_ = Phase::running;
  if (phase_ == Phase::stopping && o.stop && o.result != R::stopped) phase_ = Phase::running;
  if (queued_ && phase_ == Phase::running) return run_queued();
  if (alloc_ && alloc_->ending() && o.stop && o.result == R::failed && phase_ == Phase::running) {
    // The checkpoint at the end of the allocation failed.  The job would be
    // killed at the limit anyway: stop it now and let the next allocation
    // continue from the latest checkpoint, if there is one.
    auto latest = dir_.latest_id();
    if (latest && !latest->empty()) {
      event(dir_, fmt::format("the checkpoint failed; checkpoint {} stays the latest: stopping the job so that "
                              "its next allocation continues from it", *latest), s_.quiet);
      rt_.kill_job();
    } else {
      event(dir_, "the checkpoint failed and the job has no earlier checkpoint: it keeps running and is lost "
                  "if it does not finish before the time limit", s_.quiet);
      alloc_->end_abandoned();
    }
  }
}

void Supervisor::run_queued() {
  if (!queued_ || phase_ != Phase::running || stopped_) return;
  CheckpointRequest r = *queued_;
  queued_.reset();
  (void)begin(r);
}

void Supervisor::job_ended(int wait_status) {
  job_status_ = wait_status;
  phase_ = Phase::ended;
  queued_.reset();
}

int Supervisor::finish() {
  JobState& st = s_.state;
  State final = stopped_ ? State::stopped : WIFEXITED(job_status_) ? State::finished : State::failed;
  rt_.finish(final, alloc_.has_value());
  st.state = final;
  st.since = now();
  auto latest = dir_.latest_id();
  bool has_latest = latest && !latest->empty();
  int code;
  if (final == State::stopped) {
    st.message = "stopped at checkpoint " + (has_latest ? *latest : std::string("?"));
    code = kExitStopped;
  } else if (final == State::finished) {
    st.exit_code = code = WEXITSTATUS(job_status_);
    event(dir_, fmt::format("job '{}' finished with exit status {}", dir_.name(), code), s_.quiet);
  } else {
    int sig = WTERMSIG(job_status_);
    st.exit_code = code = 128 + sig;
    st.message = fmt::format("the job was killed by signal {} ({})", sig, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    event(dir_, fmt::format("job '{}' was killed by signal {}; {}", dir_.name(), sig,
                            has_latest ? fmt::format("'cryo restore {}' continues it from checkpoint {}", dir_.name(), *latest)
                                       : std::string("it has no checkpoint to continue from")),
          s_.quiet);
  }
  ::unlink(dir_.file(store::JobFile::control).c_str());
  if (alloc_) return alloc_->finish(st, code, stopped_, last_checkpoint_seconds_);
  if (auto r = save_state(dir_, st); !r) event(dir_, "warning: " + r.error().message, s_.quiet);
  return code;
}

namespace {

// The loop around a Supervisor: its signals through a signalfd, the
// control socket, the --every timer, and the runtime's fds.
class Loop {
 public:
  Loop(Supervised s, Runtime& rt) : dir_(*s.dir), quiet_(s.quiet), rt_(rt), sup_(std::move(s), rt) {
    rt_.attach(sup_);
  }
  int run();

 private:
  void watch();
  void on_signals();
  void on_control();

  store::JobDir& dir_;
  bool quiet_;
  Runtime& rt_;
  Supervisor sup_;
  UniqueFd signals_, control_, timer_;
  double next_checkpoint_ = 0;  // when the timer fires next, 0 if never
};

void Loop::watch() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT, SIGPIPE}) sigaddset(&mask, sig);
  if (int sig = sys::signal_number(sup_.config().checkpoint_on)) sigaddset(&mask, sig);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  signals_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (auto l = control_listen(dir_.path()); !l) {
    event(dir_, "warning: " + l.error().message + "; 'cryo checkpoint' and 'cryo status' will not reach this job, ignoring",
          quiet_);
  } else {
    control_ = std::move(*l);
  }
  if (double every = sup_.config().every; every > 0) {
    timer_ = sys::interval_timer(every);
    next_checkpoint_ = sys::now() + every;
  }
}

int Loop::run() {
  watch();
  sup_.start();
  for (;;) {
    if (sup_.done()) return sup_.finish();
    std::vector<pollfd> pfds{{signals_.get(), POLLIN, 0},
                             {control_.valid() ? control_.get() : -1, POLLIN, 0},
                             {timer_.valid() ? timer_.get() : -1, POLLIN, 0}};
    for (int fd : rt_.fds()) pfds.push_back({fd, POLLIN, 0});
    if (::poll(pfds.data(), pfds.size(), -1) < 0 && errno != EINTR) {
      event(dir_, std::string("poll failed: ") + std::strerror(errno), quiet_);
      return 1;
    }
    // The runtime's news first: a checkpoint's client may already be asking again.
    for (size_t i = 3; i < pfds.size(); i++)
      if (pfds[i].revents) rt_.on_ready(pfds[i].fd);
    if (pfds[0].revents) on_signals();
    if (pfds[1].revents) on_control();
    if (pfds[2].revents) {
      uint64_t ticks;
      (void)!::read(timer_.get(), &ticks, sizeof ticks);
      next_checkpoint_ = sys::now() + sup_.config().every;
      sup_.on_timer();
    }
  }
}

void Loop::on_signals() {
  signalfd_siginfo si;
  while (::read(signals_.get(), &si, sizeof si) == sizeof si) sup_.on_signal(static_cast<int>(si.ssi_signo));
}

void Loop::on_control() {
  UniqueFd c(::accept4(control_.get(), nullptr, nullptr, SOCK_CLOEXEC));
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
  if (req.has_status() || req.has_spawn()) {
    control::Reply status;
    *status.mutable_status() = sup_.status(next_checkpoint_);
    if (req.has_spawn()) return rt_.spawn(req.spawn(), std::move(c), status);
    (void)send_message(c.get(), status);
  } else if (req.has_checkpoint()) {
    const auto& q = req.checkpoint();
    CheckpointRequest r{q.stop(), q.tcp_established() || sup_.config().tcp_established, q.wait(), c.get()};
    if (auto st = sup_.request_checkpoint(r); !st) send_failure(c.get(), st.error());
  }
}

}  // namespace

int supervise(Supervised s, Runtime& rt) { return Loop(std::move(s), rt).run(); }

}  // namespace cryo::job
