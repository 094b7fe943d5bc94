#include "job/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "base/duration.h"
#include "base/fault.h"
#include "base/log.h"
#include "base/identity.h"
#include "base/sys.h"
#include "criu/client.h"
#include "job/apptainer.h"
#include "job/container.h"
#include "job/launch.h"
#include "job/control.h"
#include "job/events.h"
#include "job/files.h"
#include "job/mounts.h"
#include "store/flush.h"

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

void notify(int fd, char c) {
  if (fd >= 0) (void)!::write(fd, &c, 1);
}

void signal_tree(pid_t root, int sig) {
  for (pid_t p : process_tree(root)) ::kill(p, sig);
}

// Stops the job doing any work while its checkpoint becomes durable
// (--stop), lets it go on, or ends it.
void hold_job(const DumpSpec& s) {
  if (!s.config->traits().engine_checkpoints) signal_tree(s.job_pid, SIGSTOP);  // a container is paused by dump_container
}
void release_job(const DumpSpec& s) {
  if (s.config->traits().engine_checkpoints)
    resume_container(*s.config, *s.dir);
  else if (!s.tcp_established)  // CRIU killed it under its network lock
    signal_tree(s.job_pid, SIGCONT);
}
void end_job(const DumpSpec& s) {
  if (s.config->traits().engine_checkpoints)
    stop_container(*s.config);
  else
    ::kill(s.job_pid, SIGKILL);
}

bool out_of_room(const Error& e) { return kind_of(e) == ErrorKind::no_space; }

struct Dumped {
  double frozen = 0, resumed = 0;
  RestoreRecord record;
  store::Digests digests;  // of the page images, hashed while CRIU wrote them
};

// A container engine's checkpoint of the job into p.dir.
Result<Dumped> dump_container_into(DumpSpec& s, const store::Pending& p) {
  Dumped d;
  d.frozen = sys::now();  // the engine does not say when it froze the container: this is an upper bound
  auto c = dump_container(*s.config, *s.dir, p.dir, s.tcp_established, s.stop);
  d.resumed = sys::now();
  if (!c) return c.error();
  d.record.container = ContainerCut{s.config->traits().name, c->log_cut, c->ip};
  d.record.outputs["stdout"].size = c->out;
  d.record.outputs["stderr"].size = c->err;
  return d;
}

// A process's command name, for the errors below ("?" once it is gone).
std::string process_name(pid_t pid) {
  auto comm = sys::read_file("/proc/" + std::to_string(pid) + "/comm");
  return comm ? comm->substr(0, comm->find('\n')) : "?";
}

// A job runs as its owner, and its checkpoint must hold no more than she
// does: CRIU restores a process's ids and capabilities from its image, so
// a process that gained privilege (a setuid program mid-run) would come
// back with it.  Root's jobs may hold anything.
Status check_privilege(pid_t job_pid, const Identity& owner, const std::string& job) {
  if (owner.uid == 0) return {};
  for (pid_t pid : process_tree(job_pid)) {
    std::string proc = "/proc/" + std::to_string(pid);
    auto status = sys::read_file(proc + "/status");
    if (!status) continue;  // it ended meanwhile
    auto creds = parse_process_status(*status);
    if (!creds) return creds.error();
    if (std::string more = privilege_beyond(*creds, owner); !more.empty()) {
      return make_error(ErrorKind::denied, fmt::format("job '{}' is not checkpointed: its process {} ({}) runs with more "
                                                       "privilege than its owner {}: {}",
                                                       job, pid, process_name(pid), sys::user_name(owner.uid), more))
          .with_hint("a setuid program or one given capabilities is running in the job; checkpoint it once that "
                     "program has ended (earlier checkpoints are unchanged)");
    }
  }
  return {};
}

// A restore binds a Unix socket again, and connects its peers to it, by
// its path and as root (CRIU removes a socket found there first): for a
// user's job, a path she could point elsewhere after the checkpoint.  So
// her job is checkpointed only if its sockets are abstract, unbound, or on
// its own mounts (job/reopened.h refuses such images at a restore too).
Status check_sockets(pid_t job_pid, const Identity& owner, const std::set<dev_t>& own, const std::string& job) {
  if (owner.uid == 0) return {};
  auto bound = bound_sockets(job_pid, own);
  if (bound.empty()) return {};
  return make_error(ErrorKind::denied,
                    fmt::format("job '{}' is not checkpointed: its process {} ({}) has a Unix socket bound at '{}', "
                                "which a restore would bind again by that path as root; cryo does not do that for "
                                "a user's job",
                                job, bound[0].pid, process_name(bound[0].pid), bound[0].path))
      .with_hint("a socket with an abstract name (one that starts with a NUL byte) has no path and is checkpointed; "
                 "earlier checkpoints are unchanged (docs/security.md)");
}

// One CRIU dump of the job into p.dir.
Result<Dumped> dump_into(DumpSpec& s, const store::Pending& p, uint64_t expected) {
  if (s.config->traits().engine_checkpoints) return dump_container_into(s, p);
  // The dump's directory is root's (store/staging.h), and so is everything
  // done in it, CRIU's dump included; the job's logs and files are reached
  // through descriptors and /proc's links to what the job has open.
  std::optional<AsRoot> root(std::in_place);
  auto images = sys::open_dir(p.dir + "/" + store::kImagesDir);
  if (!images) return images.error();
  auto work = sys::open_dir(p.dir);
  if (!work) return work.error();
  Dumped d;
  // Progress: the image grows towards the job's resident memory.
  std::mutex mu;
  std::condition_variable cv;
  bool dumping = true;
  std::thread ticker([&] {
    AsRoot root;
    std::unique_lock<std::mutex> lock(mu);
    while (!cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return !dumping; }))
      send_progress(s.progress_fd, "dumping", sys::tree_size(p.dir + "/" + store::kImagesDir), expected);
  });
  std::optional<store::DumpFollower> follower;
  if (store::hash_during_dump()) follower.emplace(p.dir + "/" + store::kImagesDir);
  criu::DumpRequest req;
  req.pid = s.job_pid;
  req.images_dir_fd = images->get();
  req.work_dir_fd = work->get();
  req.tcp_established = s.tcp_established;
  // With established TCP connections and --stop, let CRIU kill the job
  // while its network is still locked, so no peer sees it move on.
  req.leave_running = !(s.stop && s.tcp_established);
  JobMounts mounts;
  if (s.config->traits().mounts_at_dump) {
    auto root = apptainer_root(*s.config, *s.dir, s.init_path);
    if (!root) return root.error();
    req.external = dump_externals(*root);
  } else {
    auto m = job_mounts(s.job_pid);
    if (!m) return m.error();
    mounts = std::move(*m);
    req.external = mount_externals(mounts.host);
    if (mounts.own_namespace) d.record.mounts = mounts.host;
  }
  req.external.insert(req.external.end(), s.external.begin(), s.external.end());
  req.notify = [&](const std::string& script, pid_t) -> Status {
    // Before CRIU reads the tree, and again once it is frozen (what it
    // holds then is what the images hold).
    if (script == "pre-dump" || script == "post-dump") {
      CRYO_TRY(check_privilege(s.job_pid, s.config->owner(), s.dir->name()));
      CRYO_TRY(check_sockets(s.job_pid, s.config->owner(), mounts.own, s.dir->name()));
    }
    if (script == "pre-dump") d.frozen = sys::now();
    if (script != "post-dump") return {};
    for (Output* o : s.outputs) {
      CRYO_TRY(drain(*o));
      auto st = sys::fstat(o->log.get(), o->name + ".log");
      if (!st) return st.error();
      auto key = pipe_key(*o);
      if (!key) return key.error();
      d.record.outputs[o->name] = {static_cast<uint64_t>(st->st_size), *key};
    }
    auto files = save_written_files(s.job_pid, p.dir, mounts.own);
    if (!files) return files.error();
    d.record.files = std::move(*files);
    // A container's paths are not the node's; the job's cryo-init a restore puts back itself.
    if (!s.config->traits().mounts_at_dump) d.record.needed = needed_files(s.job_pid, mounts.own, d.record.files);
    std::erase_if(d.record.needed, [](const NeededFile& f) { return is_job_init(f.path); });
    if (s.at_post_dump) CRYO_TRY(s.at_post_dump(d.record));
    fault_point(s.post_dump_fault);
    // A job stopping at this checkpoint does no more work while it becomes
    // durable: the signal waits until CRIU lets the tasks go.
    if (s.stop && req.leave_running) hold_job(s);
    return {};
  };
  Status dumped;
  {
    // The supervisor's spare CRIU, unless it died waiting.  An armed one
    // serves only the dump it was armed for, in the directory it was given.
    std::optional<criu::Session> spare = std::exchange(s.criu, std::nullopt);
    if (spare && spare->armed() && !(p.armed && spare->armed_for(req))) {
      spare->disarm();
      spare.reset();
    }
    bool served = false;
    if (spare && spare->waiting()) {
      bool not_started = false;
      dumped = spare->dump(req, p.dir + "/" + store::kDumpLog, &not_started);
      served = !not_started;
      if (not_started) {
        CRYO_LOG("criu", warn) << "the CRIU armed for this checkpoint failed before it began ("
                               << dumped.error().message << "); starting another";
      }
    }
    spare.reset();
    if (!served) {
      // What an armed CRIU wrote into this directory is not this dump's log.
      if (p.armed) ::unlinkat(work->get(), req.log_file.c_str(), 0);
      auto session = criu::Session::start(s.criu_path);
      dumped = session ? session->dump(req, p.dir + "/" + store::kDumpLog) : Status(session.error());
    }
  }
  d.resumed = sys::now();
  if (follower) d.digests = follower->finish();
  root.reset();
  // The files the job needs, read as its owner: she may have put anything at their paths since.
  add_build_ids(d.record.needed);
  d.record.cpu_flags = s.config->cpu_flags;
  {
    std::lock_guard<std::mutex> lock(mu);
    dumping = false;
  }
  cv.notify_one();
  ticker.join();
  if (!dumped) return dumped.error();
  return d;
}

std::string committed_line(const store::Manifest& m) {
  return fmt::format("checkpoint {} committed: {} ({} stored), durable {} after it was taken, job frozen {}", m.id,
                     format_bytes(static_cast<double>(m.total_bytes)), format_bytes(static_cast<double>(m.stored_bytes)),
                     format_duration(m.durable_seconds), format_duration(m.frozen_seconds));
}

}  // namespace

Status flush_pending(const store::JobDir& dir, const store::FastTier& tier, int keep, bool quiet,
                     const store::ProgressFn& progress) {
  store::FlushOptions opts;
  opts.keep = keep;
  opts.progress = progress;
  opts.committed = [&](const store::Manifest& m) { event(dir, committed_line(m), quiet); };
  opts.failed = [&](const std::string&, const Error& e) {
    event(dir, failed_line(e), quiet);
  };
  auto r = store::flush(dir, tier, opts, true);
  if (!r) return r.error();
  retention_event(dir, keep, r->removed, quiet);
  return {};
}

Result<Dump> dump_job(DumpSpec& s) {
  store::JobDir& dir = *s.dir;
  double t_start = sys::now();
  auto resumed = [&] {
    if (s.resumed) s.resumed();
  };
  uint64_t expected = tree_rss(s.config->traits().engine_checkpoints ? container_pid(dir) : s.job_pid);
  auto pending = store::begin_dump(dir, s.tier, expected, s.criu && s.criu->armed() ? s.armed_dir : "");
  if (!pending) {
    resumed();
    return pending.error();
  }
  fault_point("checkpoint.before_dump");
  auto d = dump_into(s, *pending, expected);
  if (!d && pending->fast && out_of_room(d.error())) {
    event(dir, fmt::format("the fast tier ran out of room during checkpoint {}; dumping it into the store instead",
                           pending->id), s.quiet);
    store::abort_dump(*pending);
    auto again = store::begin_dump_in_store(dir, pending->id);
    if (!again) {
      resumed();
      return again.error();
    }
    *pending = *again;
    d = dump_into(s, *pending, expected);
  }
  resumed();
  if (!d) {
    // CRIU's log is the evidence: it outlives the failed dump's directory,
    // and the error names where.
    Error e = d.error();
    std::string log = pending->dir + "/" + store::kDumpLog;
    if (std::string kept = store::keep_failed_dump_log(dir, *pending); !kept.empty()) {
      if (auto at = e.hint.find(log); at != std::string::npos) e.hint.replace(at, log.size(), kept);
      else if (e.kind == ErrorKind::criu) e.hint += (e.hint.empty() ? "" : "; ") + std::string("CRIU's log: ") + kept;
    }
    store::abort_dump(*pending);
    return e;
  }
  fault_point("checkpoint.after_dump");

  Dump out;
  store::Manifest& m = out.manifest;
  m = store::new_manifest(s.manifest_job.empty() ? dir.name() : s.manifest_job, pending->id, t_start);
  m.criu_version = s.criu_version;
  m.command = s.config->command;
  m.cwd = s.config->cwd;
  m.frozen_seconds = d->frozen > 0 ? d->resumed - d->frozen : d->resumed - t_start;
  m.dump_seconds = d->resumed - t_start;
  m.dumped_to = pending->fast ? "fast" : "store";
  d->record.tcp_established = s.tcp_established;
  m.job_state = to_json(d->record);
  auto staged = store::end_dump(*pending, m);
  if (!staged) {
    store::abort_dump(*pending);
    if (s.stop) release_job(s);
    return staged.error();
  }
  out.staged = *staged;
  out.digests = std::move(d->digests);
  out.bytes = [&] {
    AsRoot root;
    return sys::tree_size(staged->dir);
  }();
  return out;
}

int take_checkpoint(CheckpointRun& run) {
  DumpSpec& s = run.dump;
  store::JobDir& dir = *s.dir;
  auto answer = [&](const control::Reply& r) {
    if (run.client_fd < 0) return;
    (void)send_message(run.client_fd, r);
    ::close(run.client_fd);
    run.client_fd = -1;
  };
  auto fail = [&](const Error& e) {
    event(dir, failed_line(e), s.quiet);
    answer(failure_reply(e.context_after(kUnharmed)));
    return kWorkerFailed;
  };

  // A container's output is cut by its log, not by the pipes: let it flow.
  if (s.config->traits().engine_checkpoints) notify(run.notify_fd, 'r');
  // Output flows again once CRIU lets the job go; a job stopping here keeps
  // its later output unread: the supervisor drops it when the job is
  // killed, since the restored job writes it again.
  s.resumed = [&] {
    if (!s.stop && !s.config->traits().engine_checkpoints) notify(run.notify_fd, 'r');
  };
  s.progress_fd = run.client_fd;
  auto dumped = dump_job(s);
  if (!dumped) return fail(dumped.error());
  const store::Manifest& m = dumped->manifest;
  notify(run.notify_fd, 'd');
  event(dir, fmt::format("checkpoint {} taken: {} in {}, job frozen {}; {}", m.id,
                         format_bytes(static_cast<double>(dumped->bytes)), format_duration(m.dump_seconds),
                         format_duration(m.frozen_seconds),
                         dumped->staged.fast ? "in the fast tier, now flushing to the store" : "flushing to the store"),
        s.quiet);
  control::CheckpointDone done;
  done.set_id(m.id);
  done.set_bytes(dumped->bytes);
  done.set_frozen_seconds(m.frozen_seconds);
  done.set_seconds(m.dump_seconds);
  done.set_durable(false);
  done.set_tier(m.dumped_to);
  if (!run.wait && !s.stop) {
    control::Reply r;
    *r.mutable_checkpoint() = done;
    answer(r);
  }

  // Make it durable (with any dump an interrupted flush left behind).
  bool ours = false;
  Error flush_error;
  store::FlushOptions opts;
  opts.keep = s.config->keep;
  opts.progress = [&](const std::string& phase, uint64_t d, uint64_t t) { send_progress(run.client_fd, phase, d, t); };
  opts.digests = &dumped->digests;
  opts.committed = [&](const store::Manifest& c) {
    if (c.id == m.id) {
      ours = true;
      done.set_stored_bytes(c.stored_bytes);
      done.set_durable_seconds(c.durable_seconds);
    }
    event(dir, committed_line(c), s.quiet);
  };
  opts.failed = [&](const std::string& id, const Error& e) {
    if (id == m.id) flush_error = e;
  };
  auto flushed = store::flush(dir, s.tier, opts, true);
  if (!flushed && flush_error.message.empty()) flush_error = flushed.error();
  if (flushed)
    for (const auto& id : flushed->removed) done.add_removed(id);
  if (!ours) {
    if (s.stop) release_job(s);
    if (flush_error.message.empty()) flush_error = make_error("checkpoint " + m.id + " was not committed");
    event(dir, failed_line(flush_error, &dir), s.quiet);
    answer(failure_reply(flush_error.context_after(kUnharmed)));
    return kWorkerFlushFailed;
  }
  retention_event(dir, s.config->keep, {done.removed().begin(), done.removed().end()}, s.quiet);
  if (s.stop) {
    end_job(s);
    done.set_stopped(true);
    event(dir, "job stopped at checkpoint " + m.id + "; continue it with 'cryo restore " + dir.name() + "'", s.quiet);
  }
  done.set_durable(true);
  done.set_seconds(sys::now() - m.created);
  control::Reply r;
  *r.mutable_checkpoint() = done;
  answer(r);
  return s.stop ? kWorkerStopped : kWorkerDone;
}

}  // namespace cryo::job
