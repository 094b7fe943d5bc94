#include "coord/supervise.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "job/control.h"
#include "job/allocation.h"
#include "job/events.h"
#include "job/record.h"
#include "coord/agent.h"
#include "job/supervisor.h"

namespace cryo::coord {

namespace {

class Loop {
 public:
  Loop(Coordinated s, Coordinator& c) : s_(std::move(s)), dir_(*s_.dir), c_(c) {}
  int run();

 private:
  void on_control();
  Result<std::string> checkpoint(bool stop);
  void ended(int wait_status);
  void on_slurm_end(int sig);
  void tee();
  int finish();

  Coordinated s_;
  store::JobDir& dir_;
  Coordinator& c_;
  job::Watched w_;
  std::optional<job::SlurmAllocation> alloc_;  // inside a Slurm batch job
  bool done_ = false, stopped_ = false;
  int status_ = 0;
  double last_checkpoint_seconds_ = 0;
  // Under Slurm, part 0's output goes on to ours (the Slurm output file) as
  // it grows: from where the logs stand when this supervisor starts.
  uint64_t teed_[2] = {0, 0};
};

void Loop::tee() {
  if (!s_.slurm) return;
  const char* streams[2] = {"stdout", "stderr"};
  for (int i = 0; i < 2; i++) {
    std::string log = dir_.part(0).output_log(streams[i]);
    auto fd = sys::open(log, O_RDONLY);
    if (!fd) continue;
    auto st = sys::fstat(fd->get(), log);
    if (!st || static_cast<uint64_t>(st->st_size) <= teed_[i]) continue;
    std::string buf(static_cast<size_t>(st->st_size) - teed_[i], '\0');
    if (!sys::pread_exact(fd->get(), buf.data(), buf.size(), teed_[i], log)) continue;
    (void)sys::write_all(i + 1, buf, "the Slurm output");
    teed_[i] += buf.size();
  }
}

Result<std::string> Loop::checkpoint(bool stop) {
  Timings t;
  auto id = c_.checkpoint(stop, &t);
  if (!id) {
    job::event(dir_, job::failed_line(id.error(), &dir_), s_.quiet);
    return id;
  }
  job::event(dir_, fmt::format("checkpoint {} committed: {} parts, {}, in {} (prepare {}, dump {}, commit {}), "
                               "parts frozen up to {}{}", *id, c_.fds().size(), format_bytes(static_cast<double>(t.bytes)),
                               format_duration(t.total), format_duration(t.prepare), format_duration(t.dump),
                               format_duration(t.commit), format_duration(t.frozen),
                               stop ? "; job stopped, continue it with 'cryo restore " + dir_.name() + "'" : ""),
             s_.quiet);
  last_checkpoint_seconds_ = t.total;
  if (alloc_) alloc_->checkpoint_taken(t.total, s_.state);
  if (auto removed = retain_parts(dir_, s_.config.keep); !removed)
    job::event(dir_, "warning: retention failed: " + removed.error().message + "; every checkpoint is kept", s_.quiet);
  else
    job::retention_event(dir_, s_.config.keep, *removed, s_.quiet);
  if (stop) {
    stopped_ = true;
    done_ = true;
  }
  return id;
}

void Loop::on_control() {
  UniqueFd conn(::accept4(w_.control.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid()) return;
  struct timeval tv {2, 0};
  ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  control::Request req;
  if (!job::recv_message(conn.get(), req)) return;
  if (req.version() != job::kControlVersion) {
    job::send_failure(conn.get(), make_error("this job's supervisor speaks another control protocol")
                                      .with_hint("use the same cryo version for the job and the command"));
    return;
  }
  control::Reply r;
  if (req.has_status() || req.has_spawn()) {
    if (req.has_spawn()) {
      std::vector<std::string> argv(req.spawn().argv().begin(), req.spawn().argv().end());
      if (auto st = c_.spawn(req.spawn().host(), argv); !st) return job::send_failure(conn.get(), st.error());
    }
    auto* st = r.mutable_status();
    st->set_state(done_ ? "ending" : "running");
    st->set_supervisor_pid(::getpid());
    st->set_job_pid(0);
    st->set_started(s_.state.since);
    if (w_.next_checkpoint > 0) st->set_next_checkpoint(w_.next_checkpoint);
    (void)job::send_message(conn.get(), r);
    return;
  }
  if (req.has_checkpoint()) {
    if (done_) return job::send_failure(conn.get(), make_error("job '" + dir_.name() + "' has just ended"));
    double t0 = sys::now();
    auto id = checkpoint(req.checkpoint().stop());
    if (!id) return job::send_failure(conn.get(), id.error());
    auto m = dir_.load_manifest(*id);
    auto* d = r.mutable_checkpoint();
    d->set_id(*id);
    d->set_bytes(m ? m->total_bytes : 0);
    d->set_seconds(sys::now() - t0);
    d->set_frozen_seconds(m ? m->frozen_seconds : 0);
    d->set_stopped(req.checkpoint().stop());
    d->set_durable(true);
    d->set_tier("parts");
    d->set_stored_bytes(m ? m->total_bytes : 0);
    d->set_durable_seconds(m ? m->durable_seconds : 0);
    (void)job::send_message(conn.get(), r);
  }
}

// The allocation ends (the warning, or a preemption's SIGTERM): every part
// stops at a checkpoint, and the next allocation continues from it.  A
// cancel's SIGTERM ends the job.
void Loop::on_slurm_end(int sig) {
  if (sig == SIGTERM && alloc_->cancelled()) {
    c_.stop_all();
    ended(W_EXITCODE(0, SIGTERM));
    return;
  }
  if (!alloc_->begin_end()) return;
  job::event(dir_, alloc_->end_line(sig, "checkpointing every part, stopping and requeueing Slurm job " +
                                             alloc_->env().job_id), s_.quiet);
  if (checkpoint(true)) return;
  // The job would die at the limit anyway: end it; finish() requeues it to
  // continue from the latest checkpoint, if there is one.
  c_.stop_all();
  ended(W_EXITCODE(0, SIGKILL));
}

void Loop::ended(int wait_status) {
  done_ = true;
  status_ = wait_status;
}

int Loop::run() {
  w_ = job::start_watching(dir_, s_.config, {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE}, s_.state,
                           s_.quiet);
  s_.state.state = job::State::running;
  if (s_.slurm) {
    if (s_.config.checkpoint_on.empty()) s_.config.checkpoint_on = "USR1";
    alloc_.emplace(*s_.slurm, dir_, s_.config.checkpoint_on, s_.quiet);
    alloc_->begin(s_.state);
  }
  (void)job::save_state(dir_, s_.state);
  // A restored job's output goes on from where part 0's checkpoint cut it.
  if (s_.state.restores > 0)
    if (auto m = dir_.load_manifest(s_.state.restored_from))
      if (auto record = job::restore_record(*m); record && !record->parts.empty())
        if (auto pm = dir_.part(0).load_manifest(record->parts[0].checkpoint))
          if (auto part = job::restore_record(*pm)) {
            teed_[0] = part->outputs["stdout"].size;
            teed_[1] = part->outputs["stderr"].size;
          }
  while (!done_) {
    std::vector<pollfd> fds{{w_.signals.get(), POLLIN, 0}, {w_.control.valid() ? w_.control.get() : -1, POLLIN, 0},
                            {w_.timer.valid() ? w_.timer.get() : -1, POLLIN, 0}};
    for (int fd : c_.fds()) fds.push_back({fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), s_.slurm ? 200 : -1) < 0 && errno != EINTR) break;
    tee();
    if (fds[0].revents) {
      signalfd_siginfo si;
      while (::read(w_.signals.get(), &si, sizeof si) == sizeof si) {
        int sig = static_cast<int>(si.ssi_signo);
        if (alloc_ && (sig == w_.checkpoint_signal || sig == SIGTERM)) {
          on_slurm_end(sig);
        } else if (sig == w_.checkpoint_signal) {
          job::event(dir_, fmt::format("received {}: checkpointing", s_.config.checkpoint_on), s_.quiet);
          (void)checkpoint(false);
        } else if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
          job::event(dir_, fmt::format("received SIG{}: ending every part of the job", sigabbrev_np(sig)), s_.quiet);
          c_.stop_all();
          ended(W_EXITCODE(0, sig));
        }
      }
    }
    if (fds[1].revents) on_control();
    if (fds[2].revents) {
      uint64_t ticks;
      (void)!::read(w_.timer.get(), &ticks, sizeof ticks);
      w_.next_checkpoint = sys::now() + s_.config.every;
      if (!done_) (void)checkpoint(false);
    }
    for (size_t i = 3; i < fds.size() && !done_; i++) {
      if (!fds[i].revents) continue;
      auto e = c_.event(fds[i].fd);
      if (!e) {
        job::event(dir_, e.error().message + "; its parts run on unsupervised there, and the job can no longer be "
                                             "checkpointed: 'cryo restore " + dir_.name() +
                             "' continues it from its latest checkpoint", s_.quiet);
        continue;
      }
      if (*e >= 0) ended(*e);
    }
    // Events that arrived while a checkpoint waited for replies.
    for (auto e = c_.event(-1); e && *e >= 0; e = c_.event(-1)) ended(*e);
  }
  return finish();
}

int Loop::finish() {
  tee();
  job::JobState& st = s_.state;
  st.since = sys::now();
  int code;
  if (stopped_) {
    st.state = job::State::stopped;
    auto latest = dir_.latest_id();
    st.message = "stopped at checkpoint " + (latest ? *latest : std::string("?"));
    code = job::kExitStopped;
  } else {
    c_.stop_all();  // part 0's command ended: the others' daemons with it
    if (WIFEXITED(status_)) {
      st.state = job::State::finished;
      st.exit_code = code = WEXITSTATUS(status_);
      job::event(dir_, fmt::format("job '{}' finished with exit status {}", dir_.name(), code), s_.quiet);
    } else {
      int sig = WTERMSIG(status_);
      st.state = job::State::failed;
      st.exit_code = code = 128 + sig;
      st.message = fmt::format("the job was ended by signal {}", sig);
      job::event(dir_, fmt::format("job '{}' ended by signal {}; 'cryo restore {}' continues it from its latest "
                                   "checkpoint", dir_.name(), sig, dir_.name()), s_.quiet);
    }
  }
  if (w_.control.valid()) ::unlink(dir_.file(store::JobFile::control).c_str());
  coord::stop_slurm_agents(s_.srun);
  if (alloc_) return alloc_->finish(st, code, stopped_, last_checkpoint_seconds_);
  (void)job::save_state(dir_, st);
  return code;
}

}  // namespace

int supervise_coordinated(Coordinated s, Coordinator& c) { return Loop(std::move(s), c).run(); }

}  // namespace cryo::coord
