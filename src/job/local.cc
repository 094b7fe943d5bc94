#include "job/local.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <utility>

#include <fmt/format.h>

#include "base/log.h"
#include "base/sys.h"
#include "job/checkpoint.h"
#include "job/container.h"
#include "job/control.h"
#include "job/events.h"
#include "job/files.h"
#include "job/mounts.h"
#include "job/mpi.h"

namespace cryo::job {

void LocalRuntime::start() {
  // A job that ended before SIGCHLD was blocked sent its signal to nobody.
  on_child();
  prepare_criu();
}

std::vector<int> LocalRuntime::fds() const {
  std::vector<int> fds;
  if (dump_notes_.valid()) fds.push_back(dump_notes_.get());
  if (!gated_)
    for (const auto& o : j_.outputs)
      if (!o.eof) fds.push_back(o.pipe.get());
  return fds;
}

void LocalRuntime::on_ready(int fd) {
  if (dump_notes_.valid() && fd == dump_notes_.get()) return on_worker_note();
  for (auto& o : j_.outputs)
    if (!o.eof && !gated_ && o.pipe.get() == fd)
      if (auto st = drain(o); !st) {
        event(dir_, st.error().message + ", ignoring", j_.quiet);
        o.eof = true;
      }
}

void LocalRuntime::on_child() {
  int status;
  pid_t p;
  while ((p = ::waitpid(-1, &status, WNOHANG)) > 0) {
    if (p == j_.job_pid) {
      job_done_ = true;
      spare_criu_.reset();  // disarmed first if armed
      discard_armed_dir();
      listener_->job_ended(status);
    } else if (workers_.count(p)) {
      worker_ended(p, status);
      prepare_criu();
    } else if (spare_criu_ && p == spare_criu_->pid()) {
      drop_spare_criu();  // it died waiting
    }
  }
}

Status LocalRuntime::begin_checkpoint(const CheckpointRequest& r) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("cannot start a checkpoint");
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t pid = ::fork();
  if (pid < 0) return sys_error("cannot start a checkpoint");
  if (pid == 0) {
    rd.reset();
    CheckpointRun run;
    DumpSpec& d = run.dump;
    d.dir = &dir_;
    d.config = &j_.config;
    d.tier = j_.tier;
    d.job_pid = j_.job_pid;
    for (auto& o : j_.outputs) d.outputs.push_back(&o);
    d.criu_path = j_.criu_path;
    d.criu_version = j_.criu_version;
    d.criu = std::move(spare_criu_);
    d.armed_dir = armed_dir_;
    d.init_path = j_.init_path;
    d.stop = r.stop;
    d.tcp_established = r.tcp_established;
    d.quiet = j_.quiet;
    run.wait = r.wait;
    run.client_fd = r.client_fd >= 0 ? ::dup(r.client_fd) : -1;
    run.notify_fd = wr.get();
    int code = take_checkpoint(run);
    d.criu.reset();  // a spare CRIU the worker did not use
    ::_exit(code);
  }
  // The worker holds the spare CRIU's socket now; it ends with the worker,
  // and so do the directory fds an armed one may still need.
  workers_[pid] = Worker{r.stop, false, sys::now(), std::exchange(armed_dir_, {}), std::move(armed_fds_)};
  armed_fds_.clear();
  drop_spare_criu();
  dumping_ = pid;
  dump_notes_ = std::move(rd);
  gated_ = true;
  return {};
}

bool LocalRuntime::stopping() const {
  for (const auto& [pid, w] : workers_)
    if (w.stop) return true;
  return false;
}

void LocalRuntime::on_worker_note() {
  char notes[8];
  ssize_t n = ::read(dump_notes_.get(), notes, sizeof notes);
  if (n <= 0) {  // the worker ended; worker_ended decides
    dump_notes_.reset();
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    if (notes[i] == 'r') gated_ = false;
    if (notes[i] == 'd' && dumping_ >= 0) {
      // The dump is complete; its worker goes on flushing.
      workers_[dumping_].dumped = true;
      dumping_ = -1;
      dump_notes_.reset();
      listener_->dumped();
      return;
    }
  }
}

void LocalRuntime::worker_ended(pid_t pid, int status) {
  Worker w = std::move(workers_[pid]);
  workers_.erase(pid);
  if (!w.armed_dir.empty()) (void)sys::remove_tree(w.armed_dir);
  if (pid == dumping_) {
    dumping_ = -1;
    dump_notes_.reset();
    gated_ = false;
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  CheckpointOutcome o;
  o.stop = w.stop;
  o.dumped = w.dumped;
  o.seconds = sys::now() - w.started;
  o.result = code == kWorkerDone                ? CheckpointOutcome::Result::durable
             : code == kWorkerStopped && w.stop ? CheckpointOutcome::Result::stopped
                                                : CheckpointOutcome::Result::failed;
  if (o.result == CheckpointOutcome::Result::stopped) {
    job_stopped_ = true;
    // The job was killed at its checkpoint; what is left in the pipes it
    // wrote after the dump, and will write again after the restore.  (A
    // container's output is cut at its log instead: read it to the end.)
    if (!j_.config.traits().engine_checkpoints)
      for (auto& out : j_.outputs) out.eof = true;
  } else if (w.stop) {
    gated_ = false;
  }
  if (WIFSIGNALED(status)) {
    event(dir_, fmt::format("checkpoint failed: its worker was killed by signal {}; {}{}", WTERMSIG(status), kUnharmed,
                            w.dumped ? " (its dump is complete: the next checkpoint, or 'cryo restore', commits it)" : ""),
          j_.quiet);
    if (w.stop && !job_done_)
      for (pid_t p : process_tree(j_.job_pid)) ::kill(p, SIGCONT);
    // Its half-written directories are removed by the next checkpoint; do it now.
    store::remove_leftovers(dir_.checkpoints_dir());
  }
  listener_->checkpoint_ended(o);
}

void LocalRuntime::forward_signal(int sig) {
  if (!job_done_) ::kill(j_.job_pid, sig);
}

void LocalRuntime::kill_job() {
  if (!job_done_) ::kill(j_.job_pid, SIGKILL);
}

void LocalRuntime::fill_status(control::JobStatus& st) const {
  int flushing = 0;
  for (const auto& [pid, w] : workers_) flushing += w.dumped;
  st.set_flushing(flushing);
  st.set_job_pid(j_.job_pid);
  st.set_rss_bytes(tree_rss(j_.config.traits().engine_checkpoints ? container_pid(dir_) : j_.job_pid));
}

void LocalRuntime::prepare_criu() {
  if (spare_criu_ || job_done_ || job_stopped_ || stopping() || j_.config.traits().engine_checkpoints) return;
  // Without it, the next worker starts its own CRIU, and reports why not.
  if (auto s = criu::Session::start(j_.criu_path)) {
    spare_criu_.emplace(std::move(*s));
    arm_criu();
  }
}

// Arms the spare CRIU for the next checkpoint into the fast tier, as a
// worker would ask for it unless told --stop with --tcp-established.  A
// checkpoint that goes elsewhere, or asks otherwise, disarms it and starts
// another CRIU, and so does one whose host mounts changed since.  Jobs in
// Apptainer name their mounts at each dump, so theirs stays a plain spare;
// so does any that cannot be armed.
void LocalRuntime::arm_criu() {
  if (j_.config.kind != Kind::process || !j_.tier.enabled()) return;
  auto dir = store::make_armed_dir(dir_, j_.tier);
  if (!dir) return;
  auto images = sys::open_dir(*dir + "/" + store::kImagesDir);
  auto work = sys::open_dir(*dir);
  criu::DumpRequest req;
  req.pid = j_.job_pid;
  req.leave_running = true;
  req.tcp_established = j_.config.tcp_established;
  req.notify = [](const std::string&, pid_t) { return Status{}; };
  auto mounts = job_mounts(j_.job_pid);
  if (mounts) req.external = mount_externals(mounts->host);
  Status armed = !mounts ? Status(mounts.error()) : images && work ? Status{} : Status(make_error("cannot open " + *dir));
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
void LocalRuntime::drop_spare_criu() {
  if (!spare_criu_) return;
  spare_criu_->release();
  spare_criu_.reset();
  discard_armed_dir();
}

// The armed directory of a spare CRIU that no worker took.
void LocalRuntime::discard_armed_dir() {
  armed_fds_.clear();
  if (!armed_dir_.empty()) (void)sys::remove_tree(armed_dir_);
  armed_dir_.clear();
}

void LocalRuntime::finish(State final, bool leaves_node) {
  // Whatever is left in the pipes belongs to the job's last moments.
  for (auto& o : j_.outputs)
    if (!o.eof && !gated_) (void)drain(o);
  // A flush that was killed left its dump complete: commit it before the
  // job's state says where to continue from.
  if (auto st = flush_pending(dir_, j_.tier, j_.config.keep, j_.quiet); !st)
    event(dir_, "warning: " + st.error().message + ", ignoring", j_.quiet);
  // A finished job's fast copies only hold memory the node needs; so do
  // the durable ones of a job that goes on elsewhere.
  if (final == State::finished)
    for (const auto& d : store::fast_dirs(j_.tier, dir_)) (void)sys::remove_tree(d);
  else if (leaves_node)
    store::free_durable_copies(j_.tier, dir_);
  // An MPI job's session files (and those an older one kept on the node's
  // /dev/shm): the checkpoints hold their contents, and a restore puts
  // them back.
  if (j_.config.mpi != Mpi::none) {
    (void)sys::remove_tree(legacy_shm_dir(j_.config.name));
    (void)sys::remove_tree(dir_.file(store::JobFile::mpi));
  }
}

}  // namespace cryo::job
