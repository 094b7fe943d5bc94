#include "job/restore.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <future>
#include <optional>

#include "base/log.h"
#include "base/identity.h"
#include "base/sys.h"
#include "job/images.h"
#include "criu/client.h"
#include "job/apptainer.h"
#include "job/container.h"
#include "job/launch.h"
#include "job/files.h"
#include "job/mounts.h"
#include "job/reopened.h"
#include "job/mpi.h"
#include "job/preflight.h"
#include "store/reader.h"
#include "store/signing.h"

namespace cryo::job {

Status RestoredOutputs::cut_logs() {
  for (auto& [fd, size] : logs)
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0) return sys_error("cannot truncate the job's output log");
  return {};
}

Result<RestoredOutputs> restored_outputs(const store::JobDir& dir, const std::string& id,
                                         const std::map<std::string, OutputCut>& outputs, bool pipes, bool tee) {
  RestoredOutputs r;
  for (const char* name : {"stdout", "stderr"}) {
    auto cut = outputs.find(name);
    if (cut == outputs.end()) continue;
    uint64_t size = cut->second.size;
    std::string log = dir.output_log(name);
    auto fd = sys::open(log, O_WRONLY | O_CREAT, 0600);
    if (!fd) return fd.error();
    auto st = sys::fstat(fd->get(), "'" + log + "'");
    if (!st) return st.error();
    if (static_cast<uint64_t>(st->st_size) < size)
      return make_error("the job's output '" + log + "' is shorter than at checkpoint " + id + " (" +
                        std::to_string(st->st_size) + " < " + std::to_string(size) + " bytes)")
          .with_hint("it was truncated or replaced since; put it back, or move it aside to start the log anew");
    r.logs.emplace_back(std::move(*fd), size);
    if (!pipes) continue;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) return sys_error("cannot create a pipe");
    UniqueFd rd(p[0]), wr(p[1]);
    if (cut->second.pipe.empty())
      return make_error(ErrorKind::corrupt, "checkpoint " + id + " names no pipe for the job's " + name);
    r.inherit.emplace_back(cut->second.pipe, wr.get());
    auto o = open_output(dir, name, std::move(rd), tee ? (std::string(name) == "stdout" ? 1 : 2) : -1);
    if (!o) return o.error();
    r.outputs.push_back(std::move(*o));
    r.write_ends.push_back(std::move(wr));
  }
  return r;
}

namespace {

// CRIU's working directory for a restore: the job's logs directory, or,
// in a cryo acting for a user (base/identity.h), a new directory of root's
// in /var/lib/cryo/work, whose log goes into her logs directory at the end.
class RootWorkDir {
 public:
  RootWorkDir(std::string logs_dir, std::string log) : logs_(std::move(logs_dir)), log_(std::move(log)) {}
  ~RootWorkDir() {
    if (own_.empty()) return;
    auto text = [&] {
      AsRoot root;
      return sys::read_file(own_ + "/" + log_);
    }();
    if (text) (void)sys::write_file_atomic(logs_ + "/" + log_, *text, 0600, false);
    AsRoot root;
    (void)sys::remove_tree(own_);
  }
  Status make() {
    if (!acting_for_other()) return {};
    AsRoot root;
    CRYO_TRY(sys::mkdir_p(kWorkRoot, 0700));
    std::string tmpl = std::string(kWorkRoot) + "/restore-XXXXXX";
    if (!::mkdtemp(tmpl.data())) return sys_error("cannot create a directory in " + std::string(kWorkRoot));
    own_ = tmpl;
    return {};
  }
  const std::string& path() const { return own_.empty() ? logs_ : own_; }
  // An error that names the log where it will be.
  Error repoint(Error e) const {
    if (auto at = e.hint.find(path()); !own_.empty() && at != std::string::npos) e.hint.replace(at, own_.size(), logs_);
    return e;
  }

 private:
  static constexpr const char* kWorkRoot = "/var/lib/cryo/work";
  std::string logs_, log_, own_;
};

}  // namespace

Result<pid_t> criu_restore(const std::string& criu_path, const std::string& id, criu::RestoreRequest req,
                           const store::Materialized& files, const std::string& logs_dir, const Identity& owner,
                           const std::function<Status()>& at_post_restore, bool* pages_damaged,
                           const std::function<Status()>& before_request) {
  CRYO_TRY(sys::mkdir_p(logs_dir, 0700));
  UniqueFd images;
  if (!files.stream) {
    AsRoot root;
    auto d = sys::open_dir(files.dir + "/" + store::kImagesDir);
    if (!d) return d.error();
    images = std::move(*d);
  }
  // CRIU, as root, writes its log into its working directory: for a job of
  // another user, a directory of root's, whence the log is copied into her
  // store once CRIU is done (RootWorkDir).
  RootWorkDir own_work(logs_dir, store::restore_log_name(id));
  CRYO_TRY(own_work.make());
  auto work = [&] {
    AsRoot root;
    return sys::open_dir(own_work.path());
  }();
  if (!work) return work.error();
  if (Status st = [&] {
        AsRoot root;
        return check_image_creds(files.stream ? files.stream->images_dir() : images.get(), owner, id);
      }();
      !st) {
    // A damaged chunk failed the read: the stream names it, and a damaged
    // fast copy gives way to the store's (with_checkpoint_files).
    if (files.stream)
      if (auto e = files.stream->failure()) {
        if (files.source == "fast copy") *pages_damaged = true;
        return *e;
      }
    return st.error();
  }
  std::vector<int> keep_fds;
  for (const auto& [key, fd] : req.inherit) keep_fds.push_back(fd);
  auto session = criu::Session::start(criu_path, keep_fds);
  if (!session) return session.error();
  if (before_request) CRYO_TRY(before_request());
  req.images_dir_fd = files.stream ? files.stream->images_dir() : images.get();
  // The files CRIU opens again by path, opened first as the job's owner
  // (job/reopened.h), once the saved ones are back.
  HeldFiles held;
  if (owner.uid != 0) {
    auto listed = [&] {
      AsRoot root;
      return image_files(req.images_dir_fd, id);
    }();
    if (!listed) return listed.error();
    auto h = HeldFiles::open_as_owner(*listed, req, id);
    if (!h) return h.error();
    held = std::move(*h);
  }
  req.work_dir_fd = work->get();
  req.log_file = store::restore_log_name(id);
  // The page images are checked while CRIU reads them (a fast copy's by
  // check_pages, a stream's as it serves them); the restored tree resumes
  // only after CRIU's post-restore notification is answered.
  std::future<Status> pages;
  if (files.check_pages) pages = std::async(std::launch::async, files.check_pages);
  bool restored = false;
  pid_t restored_root = 0;
  std::optional<Error> not_hers;
  req.notify = [&](const std::string& script, pid_t root) -> Status {
    // The last moment before the tree runs, once CRIU has closed its own
    // descriptors in it.  CRIU does not stop for an error here, and waits
    // on the tasks it traces: each is sent SIGKILL, which it takes before
    // it runs again, and CRIU is ended, which lets them go.
    if (script == "pre-resume" && owner.uid != 0 && restored_root > 0) {
      Status st = held.check_tree(restored_root, own_work.path() + "/" + req.log_file, id);
      if (!st) {
        for (pid_t p : process_tree(restored_root)) ::kill(p, SIGKILL);
        ::kill(session->pid(), SIGKILL);
        not_hers = st.error();
      }
      return st;
    }
    if (script != "post-restore") return {};
    restored_root = root;
    if (pages.valid())
      if (Status st = pages.get(); !st) {
        *pages_damaged = true;
        return st;
      }
    if (files.stream) CRYO_TRY(files.stream->finish());
    CRYO_TRY(at_post_restore());
    restored = true;
    return {};
  };
  auto pid = session->restore(req, own_work.path() + "/" + req.log_file);
  if (pages.valid()) pages.wait();  // never leave the check reading files about to be released
  if (not_hers) {
    if (pid) ::kill(*pid, SIGKILL);
    return *not_hers;
  }
  if (!pid) {
    // A damaged chunk failed CRIU's read of it: name the chunk.  A damaged
    // fast copy gives way to the store's (with_checkpoint_files).
    if (files.stream)
      if (auto e = files.stream->failure()) {
        if (files.source == "fast copy") *pages_damaged = true;
        return own_work.repoint(*e);
      }
    return own_work.repoint(pid.error());
  }
  if (!restored) {
    ::kill(*pid, SIGKILL);
    return make_error("CRIU restored the job without its post-restore notification; it was killed")
        .with_hint("use a CRIU that sends notifications to RPC clients (>= 4.2)");
  }
  return *pid;
}

Status with_checkpoint_files(const store::JobDir& dir, const store::FastTier& tier, const std::string& id,
                             const store::Manifest& m, bool prefer_fast, bool may_defer,
                             const store::ProgressFn& progress,
                             const std::function<Status(store::Materialized&, bool* pages_damaged)>& attempt,
                             std::string* warning) {
  bool defer = may_defer;
  double t0 = sys::now();
  auto files = store::materialize(dir, tier, id, m, prefer_fast, progress, defer);
  if (!files) return files.error();
  if (files->stream)
    CRYO_LOG("job", info) << "checkpoint " << id << " streams from the " << files->source;
  else
    CRYO_LOG("job", info) << "checkpoint " << id << " laid out from the " << files->source << " in " << sys::now() - t0
                          << " s";
  *warning = files->warning;
  bool pages_damaged = false;
  Status st = attempt(*files, &pages_damaged);
  store::release(*files);
  if (st || !pages_damaged) return st;
  // The fast copy is damaged: CRIU has killed what it restored.  The
  // store's copy is independent of it.
  *warning = st.error().message;
  CRYO_LOG("job", info) << "the fast copy of checkpoint " << id << " is damaged; restoring from the store";
  auto again = store::materialize(dir, tier, id, m, false, progress, defer);
  if (!again) return again.error();
  st = attempt(*again, &pages_damaged);
  store::release(*again);
  return st;
}

void add_host_mounts(const RestoreRecord& record, criu::RestoreRequest& req) {
  if (!record.mounts) return;
  req.external = mount_externals(*record.mounts);
  req.root = "/";
}

namespace {

// One attempt at restoring checkpoint run.id from the laid-out files.
Result<Restored> restore_from(RestoreRun& run, const store::Manifest& m, const RestoreRecord& record,
                              store::Materialized& files, bool* pages_damaged,
                              const std::function<Status()>& criu_ready) {
  store::JobDir& dir = *run.dir;
  bool in_engine = run.config->traits().engine_checkpoints;
  Restored r;
  r.source = files.source;
  // The container's watcher makes the pipes.
  auto outputs = restored_outputs(dir, run.id, record.outputs, !in_engine, run.tee);
  if (!outputs) return outputs.error();
  if (in_engine) {
    CRYO_TRY(criu_ready());
    CRYO_TRY(outputs->cut_logs());
    if (!record.container)
      return make_error(ErrorKind::corrupt, "checkpoint " + run.id + " is not a container's: it records no log cut");
    auto launched = restore_container(*run.config, dir, files.dir, record.tcp_established, record.container->log_cut,
                                      record.container->blocked_ip);
    if (!launched) return launched.error();
    r.pid = launched->pid;
    for (auto [name, fd] : {std::pair{"stdout", &launched->out}, std::pair{"stderr", &launched->err}}) {
      auto o = open_output(dir, name, std::move(*fd), run.tee ? (std::string(name) == "stdout" ? 1 : 2) : -1);
      if (!o) return o.error();
      r.outputs.push_back(std::move(*o));
    }
    return r;
  }
  // Whether CRIU is fit to restore is known before anything on the node
  // changes: before the MPI or Apptainer set-up, else before the job's
  // files go back (while CRIU starts).
  if (run.config->mpi != Mpi::none || run.config->traits().mounts_at_dump) CRYO_TRY(criu_ready());
  // MPI jobs: their session files go back into this (and the shared-memory
  // files of a job that had the node's /dev/shm, into that).
  // Open MPI jobs restore one at a time: concurrent restores collide on
  // those files (shared/docs/platform.md).
  UniqueFd mpi_lock;
  if (run.config->mpi != Mpi::none) {
    CRYO_TRY(prepare_mpi_dirs(run.config->mpi, dir.file(store::JobFile::mpi)));
    if (!record.mounts) CRYO_TRY(sys::mkdir_p(legacy_shm_dir(run.config->name), 0700));
    if (run.config->mpi == Mpi::openmpi) {
      CRYO_TRY(sys::mkdir_p("/run/cryo", 0755));
      auto l = sys::open("/run/cryo/mpi-restore.lock", O_RDWR | O_CREAT, 0600);
      if (!l) return l.error();
      while (::flock(l->get(), LOCK_EX) < 0 && errno == EINTR) {
      }
      mpi_lock = std::move(*l);
    }
  }

  // CRIU reopens the job's cryo-init at the path it ran from.
  auto init = job_init(dir);
  if (!init) return init.error();

  criu::RestoreRequest req;
  req.tcp_established = record.tcp_established;
  req.inherit = outputs->inherit;
  if (run.config->traits().mounts_at_dump) {
    auto root = apptainer_root(*run.config, dir, *init);
    if (!root) return root.error();
    req.external = restore_externals(*root);
    req.root = root->rootfs;
    req.compat_mounts = true;
  } else {
    add_host_mounts(record, req);
  }
  if (run.progress) run.progress("restoring", 0, m.total_bytes);
  double t1 = sys::now();
  const auto& saved = record.files;
  auto pid = criu_restore(run.criu_path, run.id, req, files, dir.file(store::JobFile::criu_logs), run.config->owner(), [&] { return outputs->cut_logs(); },
                          pages_damaged, [&]() -> Status {
                            CRYO_TRY(criu_ready());
                            return put_back_files(saved, files.dir);
                          });
  if (!pid) return pid.error();
  CRYO_LOG("job", info) << "CRIU restored the job in " << sys::now() - t1 << " s";
  r.pid = *pid;
  r.init_path = *init;
  r.outputs = std::move(outputs->outputs);
  return r;
}

}  // namespace

Result<Restored> restore_job(RestoreRun& run) {
  store::JobDir& dir = *run.dir;
  auto m = store::load_signed_manifest(dir, run.id);
  if (!m) return m.error();
  auto record = restore_record(*m);
  if (!record) return record.error();
  // Is CRIU there and new enough?  Asked while the checkpoint is checked
  // and the restore is prepared; the answer is awaited only once CRIU has
  // started for the restore, before it is asked to restore.
  auto probing = std::async(std::launch::async, [&] { return criu::probe(run.criu_path); });
  std::optional<Result<criu::Version>> version;
  auto criu_ready = [&]() -> Status {
    if (!version) version = probing.get();
    return first_failure({criu_check(*m, *version)});
  };
  // Whatever else this node lacks, before anything on it changes: the
  // checks of 'cryo restore --dry-run'.
  if (auto st = first_failure(check_restore(*m, *record, this_node())); !st) {
    (void)probing.wait();
    return st.error();
  }
  // Every byte is checked before the job runs.  The page images of a fast
  // copy may be checked while CRIU restores, unless a container engine
  // restores (it gives no such notification).
  std::optional<Restored> out;
  std::string warning;
  Status st = with_checkpoint_files(
      dir, run.tier, run.id, *m, run.prefer_fast, !run.config->traits().engine_checkpoints && record->files.empty(), run.progress,
      [&](store::Materialized& files, bool* pages_damaged) -> Status {
        auto r = restore_from(run, *m, *record, files, pages_damaged, criu_ready);
        if (!r) return r.error();
        CRYO_TRY(criu_ready());
        r->criu_version = (*version)->text();
        out = std::move(*r);
        return {};
      },
      &warning);
  if (!st) return st.error();
  out->warning = warning;
  return std::move(*out);
}

}  // namespace cryo::job
