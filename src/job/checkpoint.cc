#include "job/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/fault.h"
#include "base/sys.h"
#include "criu/client.h"
#include "job/control.h"
#include "job/files.h"

namespace cryo::job {

namespace {

void send_progress(int fd, const std::string& phase, uint64_t done, uint64_t total) {
  if (fd < 0) return;
  control::Reply r;
  auto* p = r.mutable_progress();
  p->set_phase(phase);
  p->set_done(done);
  p->set_total(total);
  (void)send_message(fd, r);
}

void resume_output(int& fd) {
  if (fd < 0) return;
  (void)!::write(fd, "r", 1);
  ::close(fd);
  fd = -1;
}

}  // namespace

Result<control::CheckpointDone> take_checkpoint(CheckpointRun& run) {
  store::JobDir& dir = *run.dir;
  double t_start = sys::now();
  auto version = criu::probe(run.criu_path);
  if (!version) return version.error();

  auto pending = dir.begin();
  if (!pending) return pending.error();
  struct Cleanup {
    store::JobDir& dir;
    const store::Pending& p;
    bool armed = true;
    ~Cleanup() {
      if (armed) dir.abort(p);
    }
  } cleanup{dir, *pending};
  fault_point("checkpoint.before_dump");

  auto images = sys::open_dir(pending->dir + "/images");
  if (!images) return images.error();
  auto work = sys::open_dir(pending->dir);
  if (!work) return work.error();

  nlohmann::json job_state = nlohmann::json::object();
  Status post_dump_status;
  double t_frozen = 0, t_resumed = 0;

  // Dump progress: the image grows towards the job's resident memory.
  uint64_t expected = tree_rss(run.job_pid);
  std::atomic<bool> dumping{true};
  std::thread ticker([&] {
    while (dumping.load()) {
      send_progress(run.client_fd, "dumping", sys::tree_size(pending->dir + "/images"), expected);
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  });

  criu::DumpRequest req;
  req.pid = run.job_pid;
  req.images_dir_fd = images->get();
  req.work_dir_fd = work->get();
  req.tcp_established = run.tcp_established;
  // With established TCP connections and --stop, let CRIU kill the job
  // while its network is still locked, so no peer sees it move on.
  req.leave_running = !(run.stop && run.tcp_established);
  req.notify = [&](const std::string& script, pid_t) -> Status {
    if (script == "pre-dump") t_frozen = sys::now();
    if (script != "post-dump") return {};
    nlohmann::json outputs = nlohmann::json::object();
    for (Output* o : run.outputs) {
      CRYO_TRY(drain(*o));
      auto st = sys::fstat(o->log.get(), o->name + ".log");
      if (!st) return st.error();
      auto key = pipe_key(*o);
      if (!key) return key.error();
      outputs[o->name] = {{"size", st->st_size}, {"pipe", *key}};
    }
    job_state["outputs"] = outputs;
    auto files = save_written_files(run.job_pid, pending->dir);
    if (!files) return files.error();
    job_state["files"] = to_json(*files);
    fault_point("checkpoint.post_dump");
    return {};
  };

  Status dumped;
  {
    auto session = criu::Session::start(run.criu_path);
    if (!session) {
      dumped = session.error();
    } else {
      dumped = session->dump(req, pending->dir + "/criu-dump.log");
    }
  }
  t_resumed = sys::now();
  dumping = false;
  ticker.join();
  // A job that stops at this checkpoint keeps its later output unread: the
  // supervisor drops it when this worker ends (or lets it flow on failure).
  if (!run.stop) resume_output(run.resume_fd);
  if (!dumped) return dumped.error();
  fault_point("checkpoint.after_dump");

  store::Manifest m;
  m.job = dir.name();
  m.created = t_start;
  m.host = sys::hostname();
  m.kernel = sys::kernel_release();
  m.criu_version = version->text();
  m.cryo_version = CRYO_VERSION;
  m.command = run.config->command;
  m.cwd = run.config->cwd;
  m.frozen_seconds = t_frozen > 0 ? t_resumed - t_frozen : t_resumed - t_start;
  m.dump_seconds = t_resumed - t_start;
  m.job_state = job_state;
  m.job_state["tcp_established"] = run.tcp_established;
  CRYO_TRY(dir.commit(*pending, m, [&](const std::string& phase, uint64_t done, uint64_t total) {
    send_progress(run.client_fd, phase, done, total);
  }));
  cleanup.armed = false;

  control::CheckpointDone done;
  done.set_id(pending->id);
  done.set_bytes(m.total_bytes);
  done.set_frozen_seconds(m.frozen_seconds);
  if (run.stop) {
    ::kill(run.job_pid, SIGKILL);
    done.set_stopped(true);
  }
  fault_point("checkpoint.before_retention");
  auto removed = dir.apply_retention(run.config->keep);
  if (removed)
    for (const auto& id : *removed) done.add_removed(id);
  done.set_seconds(sys::now() - t_start);
  return done;
}

}  // namespace cryo::job
