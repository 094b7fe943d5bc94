#include "job/restore.h"

#include <fcntl.h>
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

Result<Restored> restore_job(RestoreRun& run) {
  store::JobDir& dir = *run.dir;
  auto m = dir.load_manifest(run.id);
  if (!m) return m.error();
  // Is CRIU there and new enough?  Asked while the checkpoint is checked.
  auto probing = std::async(std::launch::async, [&] { return criu::probe(run.criu_path); });
  // Every byte checked before anything changes.
  double t0 = sys::now();
  auto files = store::materialize(dir, run.tier, run.id, run.prefer_fast, run.progress);
  auto version = probing.get();
  if (!version) {
    if (files) store::release(*files);
    return version.error();
  }
  if (!files) return files.error();
  CRYO_LOG("job", info) << "checkpoint " << run.id << " laid out from the " << files->source << " in "
                        << sys::now() - t0 << " s";
  struct Release {
    store::Materialized& m;
    ~Release() { store::release(m); }
  } release{*files};
  std::string ckpt = files->dir;

  // Output logs back to their size at the checkpoint: what the job wrote
  // after it is written again by the restored job.
  Restored r;
  r.source = files->source;
  r.warning = files->warning;
  r.criu_version = version->text();
  std::vector<std::pair<std::string, int>> inherit;
  std::vector<UniqueFd> write_ends;
  const auto& outputs = m->job_state.at("outputs");
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
    if (::ftruncate(fd->get(), static_cast<off_t>(size)) < 0) return sys_error("cannot truncate '" + log + "'");
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
  if (in_engine) {
    const auto& c = m->job_state.at("container");
    auto launched = restore_container(*run.config, dir, ckpt, m->job_state.value("tcp_established", false),
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

  CRYO_TRY(put_back_files(saved_files_from_json(m->job_state.value("files", nlohmann::json::array())), ckpt));

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
  req.tcp_established = m->job_state.value("tcp_established", false);
  req.inherit = inherit;
  if (run.config->engine == "apptainer") {
    auto root = apptainer_root(*run.config, dir, default_init_path());
    if (!root) return root.error();
    req.external = restore_externals(*root);
    req.root = root->rootfs;
  }
  if (run.progress) run.progress("restoring", 0, m->total_bytes);
  double t1 = sys::now();
  auto pid = session->restore(req, dir.file("logs/" + log_name));
  if (!pid) return pid.error();
  CRYO_LOG("job", info) << "CRIU restored the job in " << sys::now() - t1 << " s";
  r.pid = *pid;
  return r;
}

}  // namespace cryo::job
