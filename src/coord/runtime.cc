#include "coord/runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <utility>

#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "coord/agent.h"
#include "job/control.h"
#include "job/events.h"
#include "job/record.h"

namespace cryo::coord {

CoordinatedRuntime::CoordinatedRuntime(CoordinatedJob j)
    : j_(std::move(j)), dir_(*j_.dir), c_(*j_.coordinator), done_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  // Slurm copies our output to its file as we write it: follow part 0's logs closely.
  if (j_.tee) tee_timer_ = sys::interval_timer(0.2);
}

CoordinatedRuntime::~CoordinatedRuntime() {
  if (worker_.joinable()) worker_.join();
}

void CoordinatedRuntime::start() {
  // A restored job's output goes on from where part 0's checkpoint cut it.
  if (!j_.tee || j_.restored_from.empty()) return;
  if (auto m = dir_.load_manifest(j_.restored_from))
    if (auto record = job::restore_record(*m); record && !record->parts.empty())
      if (auto pm = dir_.part(0).load_manifest(record->parts[0].checkpoint))
        if (auto part = job::restore_record(*pm)) {
          teed_[0] = part->outputs["stdout"].size;
          teed_[1] = part->outputs["stderr"].size;
        }
}

std::vector<int> CoordinatedRuntime::fds() const {
  std::vector<int> fds;
  if (tee_timer_.valid()) fds.push_back(tee_timer_.get());
  if (busy()) {
    fds.push_back(done_.get());  // the agents are the checkpoint's until it ends
  } else {
    for (int fd : c_.fds()) fds.push_back(fd);
  }
  return fds;
}

void CoordinatedRuntime::on_ready(int fd) {
  if (fd == tee_timer_.get()) {
    uint64_t ticks;
    (void)!::read(fd, &ticks, sizeof ticks);
    return tee();
  }
  if (fd == done_.get()) return checkpoint_done();
  if (!busy()) on_agent(fd);
}

void CoordinatedRuntime::on_agent(int fd) {
  auto e = c_.event(fd);
  if (!e) {
    job::event(dir_, e.error().message + "; its parts run on unsupervised there, and the job can no longer be "
                                         "checkpointed: 'cryo restore " + dir_.name() +
                         "' continues it from its latest checkpoint", j_.quiet);
    return;
  }
  if (*e >= 0 && !ended_) {
    ended_ = true;
    listener_->job_ended(*e);
  }
}

Status CoordinatedRuntime::begin_checkpoint(const job::CheckpointRequest& r) {
  if (busy()) return make_error(ErrorKind::busy, "a checkpoint of job '" + dir_.name() + "' is already in progress");
  if (r.client_fd >= 0) {
    client_.reset(::fcntl(r.client_fd, F_DUPFD_CLOEXEC, 0));
    if (!client_.valid()) return sys_error("cannot start a checkpoint");
  }
  stop_ = r.stop;
  started_ = sys::now();
  result_.reset();
  timings_ = Timings{};
  worker_ = std::thread([this] {
    result_.emplace(c_.checkpoint(stop_, &timings_));
    uint64_t one = 1;
    (void)!::write(done_.get(), &one, sizeof one);
  });
  return {};
}

void CoordinatedRuntime::checkpoint_done() {
  uint64_t n;
  (void)!::read(done_.get(), &n, sizeof n);
  worker_.join();
  auto& id = *result_;
  job::CheckpointOutcome o;
  o.stop = stop_;
  o.seconds = sys::now() - started_;
  if (!id) {
    job::event(dir_, job::failed_line(id.error(), &dir_), j_.quiet);
    if (client_.valid()) job::send_failure(client_.get(), id.error());
  } else {
    const Timings& t = timings_;
    job::event(dir_, fmt::format("checkpoint {} committed: {} parts, {}, in {} (prepare {}, dump {}, commit {}), "
                                 "parts frozen up to {}{}", *id, c_.fds().size(), format_bytes(static_cast<double>(t.bytes)),
                                 format_duration(t.total), format_duration(t.prepare), format_duration(t.dump),
                                 format_duration(t.commit), format_duration(t.frozen),
                                 stop_ ? "; job stopped, continue it with 'cryo restore " + dir_.name() + "'" : ""),
               j_.quiet);
    std::vector<std::string> removed;
    if (auto r = retain_parts(dir_, j_.config.keep); !r)
      job::event(dir_, "warning: retention failed: " + r.error().message + "; every checkpoint is kept", j_.quiet);
    else
      job::retention_event(dir_, j_.config.keep, removed = *r, j_.quiet);
    if (client_.valid()) {
      control::Reply reply;
      auto m = dir_.load_manifest(*id);
      auto* d = reply.mutable_checkpoint();
      d->set_id(*id);
      d->set_bytes(m ? m->total_bytes : 0);
      d->set_seconds(o.seconds);
      d->set_frozen_seconds(m ? m->frozen_seconds : 0);
      d->set_stopped(stop_);
      for (const auto& r : removed) d->add_removed(r);
      d->set_durable(true);
      d->set_tier("parts");
      d->set_stored_bytes(m ? m->total_bytes : 0);
      d->set_durable_seconds(m ? m->durable_seconds : 0);
      (void)job::send_message(client_.get(), reply);
    }
    o.dumped = true;
    o.seconds = t.total;
    o.result = stop_ ? job::CheckpointOutcome::Result::stopped : job::CheckpointOutcome::Result::durable;
  }
  client_.reset();
  // What waited for the agents.
  for (auto& s : std::exchange(spawns_, {})) spawn(s.request, std::move(s.client), s.ok);
  for (auto e = c_.event(-1); e && *e >= 0 && !ended_; e = c_.event(-1)) {
    ended_ = true;
    listener_->job_ended(*e);
  }
  if (int sig = std::exchange(signal_, 0)) end_parts(sig);
  if (o.dumped) listener_->dumped();
  listener_->checkpoint_ended(o);
  if (o.result == job::CheckpointOutcome::Result::stopped && !ended_) {
    ended_ = true;
    listener_->job_ended(0);
  }
}

void CoordinatedRuntime::forward_signal(int sig) {
  if (sig != SIGTERM && sig != SIGINT && sig != SIGHUP) return;
  job::event(dir_, fmt::format("received SIG{}: ending every part of the job", sigabbrev_np(sig)), j_.quiet);
  end_parts(sig);
}

void CoordinatedRuntime::kill_job() { end_parts(SIGKILL); }

// Ends every part; the job ends as if killed by sig.  While a checkpoint
// has the agents, at its end.
void CoordinatedRuntime::end_parts(int sig) {
  if (busy()) {
    signal_ = sig;
    return;
  }
  c_.stop_all();
  if (ended_) return;
  ended_ = true;
  listener_->job_ended(W_EXITCODE(0, sig));
}

void CoordinatedRuntime::fill_status(control::JobStatus& st) const { st.set_job_pid(0); }

void CoordinatedRuntime::spawn(const control::SpawnRequest& r, UniqueFd client, const control::Reply& ok) {
  if (busy()) {
    spawns_.push_back(Spawn{r, std::move(client), ok});
    return;
  }
  std::vector<std::string> argv(r.argv().begin(), r.argv().end());
  if (auto st = c_.spawn(r.host(), argv); !st) return job::send_failure(client.get(), st.error());
  (void)job::send_message(client.get(), ok);
}

void CoordinatedRuntime::finish(job::State final, bool) {
  tee();
  if (final != job::State::stopped) c_.stop_all();  // part 0's command ended: the others' daemons with it
  stop_slurm_agents(j_.srun);
}

void CoordinatedRuntime::tee() {
  if (!j_.tee) return;
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

}  // namespace cryo::coord
