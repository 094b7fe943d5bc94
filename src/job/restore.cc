#include "job/restore.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <future>

#include "base/log.h"
#include "base/sys.h"
#include "criu/client.h"
#include "job/apptainer.h"
#include "job/container.h"
#include "job/launch.h"
#include "job/files.h"
#include "job/mpi.h"
#include "store/reader.h"

namespace cryo::job {

namespace {

// One attempt at restoring checkpoint run.id from the laid-out files.
// Sets *pages_damaged when the deferred check of the fast copy's page
// images failed (CRIU then kills what it restored).
Result<Restored> restore_from(RestoreRun& run, const store::Manifest& m, store::Materialized& files,
                              const std::string& criu_version, bool* pages_damaged) {
  store::JobDir& dir = *run.dir;
  std::string ckpt = files.dir;

  // Output logs go back to their size at the checkpoint (what the job wrote
  // after it is written again by the restored job), once nothing can fail
  // any more: a refused restore leaves them as they are.
  Restored r;
  r.source = files.source;
  r.warning = files.warning;
  r.criu_version = criu_version;
  std::vector<std::pair<std::string, int>> inherit;
  std::vector<UniqueFd> write_ends;
  std::vector<std::pair<UniqueFd, uint64_t>> cuts;
  const auto& outputs = m.job_state.at("outputs");
  bool in_engine = run.config->in_engine();
  for (const char* name : {"stdout", "stderr"}) {
    if (!outputs.contains(name)) continue;
    uint64_t size = outputs[name].at("size");
    std::string log = dir.file(std::string(name) + ".log");
    auto fd = sys::open(log, O_WRONLY | O_CREAT, 0600);
    if (!fd) return fd.error();
    auto st = sys::fstat(fd->get(), "'" + log + "'");
    if (!st) return st.error();
    if (static_cast<uint64_t>(st->st_size) < size)
      return make_error("the job's output '" + log + "' is shorter than at checkpoint " + run.id +
                        " (" + std::to_string(st->st_size) + " < " + std::to_string(size) + " bytes)")
          .with_hint("it was truncated or replaced since; put it back, or move it aside to start the log anew");
    cuts.emplace_back(std::move(*fd), size);
    if (in_engine) continue;  // the container's watcher makes the pipes
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("cannot create a pipe");
    UniqueFd rd(p[0]), wr(p[1]);
    inherit.emplace_back(outputs[name].at("pipe").get<std::string>(), wr.get());
    auto o = open_output(dir.path(), name, std::move(rd), run.tee ? (std::string(name) == "stdout" ? 1 : 2) : -1);
    if (!o) return o.error();
    r.outputs.push_back(std::move(*o));
    write_ends.push_back(std::move(wr));
  }
  auto cut_logs = [&]() -> Status {
    for (auto& [fd, size] : cuts)
      if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0) return sys_error("cannot truncate the job's output log");
    return {};
  };
  if (in_engine) {
    CRYO_TRY(cut_logs());
    const auto& c = m.job_state.at("container");
    auto launched = restore_container(*run.config, dir, ckpt, m.job_state.value("tcp_established", false),
                                      c.at("log_cut").get<uint64_t>(), c.value("blocked_ip", ""));
    if (!launched) return launched.error();
    r.pid = launched->pid;
    for (auto [name, fd] : {std::pair{"stdout", &launched->out}, std::pair{"stderr", &launched->err}}) {
      auto o = open_output(dir.path(), name, std::move(*fd), run.tee ? (std::string(name) == "stdout" ? 1 : 2) : -1);
      if (!o) return o.error();
      r.outputs.push_back(std::move(*o));
    }
    return r;
  }
  // MPI jobs: their shared-memory files go back into these.
  // Open MPI jobs restore one at a time: concurrent restores collide on
  // those files (shared/docs/platform.md).
  UniqueFd mpi_lock;
  if (!run.config->mpi.empty()) {
    auto mpi = parse_mpi(run.config->mpi);
    if (!mpi) return mpi.error();
    CRYO_TRY(prepare_mpi_dirs(*mpi, run.config->name, dir.file("mpi")));
    if (*mpi == Mpi::openmpi) {
      CRYO_TRY(sys::mkdir_p("/run/cryo", 0755));
      auto l = sys::open("/run/cryo/mpi-restore.lock", O_RDWR | O_CREAT, 0600);
      if (!l) return l.error();
      while (::flock(l->get(), LOCK_EX) < 0 && errno == EINTR) {
      }
      mpi_lock = std::move(*l);
    }
  }

  CRYO_TRY(put_back_files(saved_files_from_json(m.job_state.value("files", nlohmann::json::array())), ckpt));

  CRYO_TRY(sys::mkdir_p(dir.file("logs"), 0700));
  auto images = sys::open_dir(ckpt + "/images");
  if (!images) return images.error();
  auto work = sys::open_dir(dir.file("logs"));
  if (!work) return work.error();
  std::string log_name = "criu-restore-" + run.id + "-" + std::to_string(static_cast<long>(sys::now())) + ".log";

  std::vector<int> keep;
  for (const auto& [key, fd] : inherit) keep.push_back(fd);
  auto session = criu::Session::start(run.criu_path, keep);
  if (!session) return session.error();
  criu::RestoreRequest req;
  req.images_dir_fd = images->get();
  req.work_dir_fd = work->get();
  req.log_file = log_name;
  req.tcp_established = m.job_state.value("tcp_established", false);
  req.inherit = inherit;
  if (run.config->engine == "apptainer") {
    auto root = apptainer_root(*run.config, dir, default_init_path());
    if (!root) return root.error();
    req.external = restore_externals(*root);
    req.root = root->rootfs;
  }
  // The page images are checked while CRIU reads them; the restored tree
  // resumes only after CRIU's post-restore notification is answered.
  std::future<Status> pages;
  if (files.check_pages) pages = std::async(std::launch::async, files.check_pages);
  bool restored = false;
  req.notify = [&](const std::string& script, pid_t) -> Status {
    if (script != "post-restore") return {};
    if (pages.valid())
      if (Status st = pages.get(); !st) {
        *pages_damaged = true;
        return st;
      }
    restored = true;
    return cut_logs();
  };
  if (run.progress) run.progress("restoring", 0, m.total_bytes);
  double t1 = sys::now();
  auto pid = session->restore(req, dir.file("logs/" + log_name));
  if (pages.valid()) pages.wait();  // never leave the check reading files about to be released
  if (!pid) return pid.error();
  if (!restored) {
    ::kill(*pid, SIGKILL);
    return make_error("CRIU restored job '" + dir.name() + "' without its post-restore notification; it was killed")
        .with_hint("use a CRIU that sends notifications to RPC clients (>= 4.2)");
  }
  CRYO_LOG("job", info) << "CRIU restored the job in " << sys::now() - t1 << " s";
  r.pid = *pid;
  return r;
}

}  // namespace

Result<Restored> restore_job(RestoreRun& run) {
  store::JobDir& dir = *run.dir;
  auto m = dir.load_manifest(run.id);
  if (!m) return m.error();
  // Is CRIU there and new enough?  Asked while the checkpoint is checked.
  auto probing = std::async(std::launch::async, [&] { return criu::probe(run.criu_path); });
  // Every byte is checked before the job runs.  The page images of a fast
  // copy are checked while CRIU restores, unless files are to be put back
  // first or a container engine restores (it gives no such notification).
  bool defer = !run.config->in_engine() && m->job_state.value("files", nlohmann::json::array()).empty();
  double t0 = sys::now();
  auto files = store::materialize(dir, run.tier, run.id, run.prefer_fast, run.progress, defer);
  auto version = probing.get();
  if (!version) {
    if (files) store::release(*files);
    return version.error();
  }
  if (!files) return files.error();
  CRYO_LOG("job", info) << "checkpoint " << run.id << " laid out from the " << files->source << " in "
                        << sys::now() - t0 << " s";
  bool pages_damaged = false;
  auto r = restore_from(run, *m, *files, version->text(), &pages_damaged);
  store::release(*files);
  if (r || !pages_damaged) return r;
  // The fast copy's page images are damaged: CRIU has killed what it
  // restored.  The store's copy is independent of it.
  std::string warning = r.error().message;
  CRYO_LOG("job", info) << "the fast copy of checkpoint " << run.id << " is damaged; restoring from the store";
  auto again = store::materialize(dir, run.tier, run.id, false, run.progress);
  if (!again) return again.error();
  again->warning = warning;
  r = restore_from(run, *m, *again, version->text(), &pages_damaged);
  store::release(*again);
  return r;
}

}  // namespace cryo::job
