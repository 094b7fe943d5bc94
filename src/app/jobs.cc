#include "app/jobs.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "container/engine.h"
#include "coord/agent.h"
#include "coord/coordinator.h"
#include "coord/runtime.h"
#include "criu/client.h"
#include "job/apptainer.h"
#include "job/config.h"
#include "job/container.h"
#include "job/control.h"
#include "job/events.h"
#include "job/launch.h"
#include "job/local.h"
#include "job/mpi.h"
#include "job/restore.h"
#include "job/supervisor.h"
#include "store/signing.h"

namespace cryo::app {

namespace {

// start_job's request, with what it learns before the job starts.
struct Run : StartRequest {
  std::string criu_version;
};

// What continuing a job from checkpoint `id` needs; the caller holds the
// job's lock.
struct Continue {
  job::JobConfig config;
  job::JobState state;
  UniqueFd lock;
  std::string id;
  bool tee = false;
  bool quiet = false;
  bool prefer_fast = true;
  std::vector<std::string> nodes;  // a multi-node job's agents, part k on the k-th ("" = as before)
  std::optional<slurm::Env> slurm;
  store::ProgressFn progress;
};

Result<int> restore_and_supervise(const Context& g, store::JobDir& dir, Continue c);

// Why a job does not answer: it ended, was stopped, or lost its supervisor.
Error not_running(const store::JobDir& dir) {
  auto st = job::load_state(dir);
  if (!st) return st.error();
  switch (st->state) {
    case job::State::finished:
      return make_error(fmt::format("job '{}' has finished (exit status {}); there is nothing to checkpoint",
                                    dir.name(), st->exit_code));
    case job::State::stopped:
      return make_error(fmt::format("job '{}' is not running: it was {}", dir.name(), st->message))
          .with_hint("continue it with 'cryo restore " + dir.name() + "'");
    case job::State::failed:
      return make_error(fmt::format("job '{}' is not running: {}", dir.name(), st->message))
          .with_hint("continue it from its latest checkpoint with 'cryo restore " + dir.name() + "'");
    case job::State::running:
      break;
  }
  return make_error(fmt::format("job '{}' is not running: its supervisor (pid {} on {}) is gone", dir.name(),
                                st->supervisor_pid, st->host))
      .with_hint("continue it from its latest checkpoint with 'cryo restore " + dir.name() + "'");
}


// Under Slurm a job keeps its newest two checkpoints unless told otherwise.
constexpr int kSlurmKeep = 2;

std::string pick_name(const std::string& root, const std::string& cmd) {
  std::string base = cmd.substr(cmd.rfind('/') + 1);
  std::string clean;
  for (char c : base) clean += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
  if (clean.empty() || clean[0] == '.') clean = "job";
  for (int i = 1;; i++) {
    std::string n = fmt::format("{}-{}", clean.substr(0, 50), i);
    if (!store::JobDir(root, n).exists()) return n;
  }
}

job::Supervised supervised(store::JobDir& dir, const job::JobConfig& c, job::JobState state, UniqueFd lock,
                           bool quiet, const std::optional<slurm::Env>& sl) {
  job::Supervised s;
  s.dir = &dir;
  s.config = c;
  s.state = std::move(state);
  s.lock = std::move(lock);
  s.quiet = quiet;
  s.slurm = sl;
  return s;
}

// The state of a job that continues from checkpoint c.id.
job::JobState restored_state(const Continue& c) {
  job::JobState st = c.state;
  st.exit_code = -1;
  st.message.clear();
  st.restores++;
  st.restored_from = c.id;
  return st;
}

coord::CoordinatedJob coordinated(store::JobDir& dir, const job::JobConfig& c, coord::Coordinator& co, pid_t srun,
                                  bool quiet, const std::optional<slurm::Env>& sl, const std::string& restored_from) {
  coord::CoordinatedJob j;
  j.dir = &dir;
  j.config = c;
  j.coordinator = &co;
  j.srun = srun;
  j.tee = sl.has_value();
  j.restored_from = restored_from;
  j.quiet = quiet;
  return j;
}

// Starts the job's command afresh and supervises it.  A launch failure
// removes the job directory if this run created it.
Result<int> launch_and_supervise(const Context& g, store::JobDir& dir, const job::JobConfig& c, job::JobState state,
                         UniqueFd lock, const Run& o, const std::optional<slurm::Env>& sl, bool created) {
  job::LaunchSpec spec;
  spec.command = c.command;
  spec.job_name = c.name;
  spec.private_net = c.private_net;
  spec.private_ipc = c.private_ipc;
  spec.init_dir = dir.path();
  spec.environment = g.job_env;
  if (acting_for_other()) spec.user = c.owner().text();
  if (!c.traits().engine_checkpoints) spec.init_path = job::make_job_init(dir);
  if (c.traits().mounts_at_dump) {
    auto root = job::apptainer_root(c, dir, spec.init_path);
    if (!root) return (root.error());
    spec.rootfs = root->rootfs;
    spec.binds = job::init_binds(*root);
    spec.workdir = root->workdir;
  }
  if (c.mpi != job::Mpi::none) {
    if (auto st = job::prepare_mpi_dirs(c.mpi, dir.file(store::JobFile::mpi)); !st) return st.error();
    spec.env = job::mpi_environment(c.mpi, dir.file(store::JobFile::mpi), acting_for().uid == 0);
  }
  auto launched = c.traits().engine_checkpoints ? job::launch_container(c, dir) : job::launch(spec);
  if (!launched) {
    if (created) (void)dir.remove();
    Error e = launched.error();
    return e.code == ENOENT || e.code == EACCES ? e.of_kind(ErrorKind::exec) : e;
  }
  job::LocalJob j;
  j.dir = &dir;
  j.config = c;
  j.job_pid = launched->pid;
  j.criu_path = g.criu_path();
  j.criu_version = o.criu_version;
  j.init_path = spec.init_path;
  j.quiet = o.quiet;
  auto tier = g.tier();
  if (!tier) {
    ::kill(launched->pid, SIGKILL);
    return (tier.error());
  }
  j.tier = *tier;
  bool tee = o.tee || sl;
  for (auto [name, fd, tee_fd] : {std::tuple{"stdout", &launched->out, 1}, std::tuple{"stderr", &launched->err, 2}}) {
    auto out = job::open_output(dir, name, std::move(*fd), tee ? tee_fd : -1);
    if (!out) {
      ::kill(launched->pid, SIGKILL);
      return (out.error());
    }
    j.outputs.push_back(std::move(*out));
  }
  std::string where = sl ? fmt::format(" in Slurm job {}", sl->job_id) : "";
  job::event(dir, fmt::format("job '{}' started{} (pid {}); output in {}/stdout.log and stderr.log", c.name, where,
                              launched->pid, dir.path()), o.quiet);
  job::LocalRuntime rt(std::move(j));
  state.job_pid = launched->pid;
  return job::supervise(supervised(dir, c, std::move(state), std::move(lock), o.quiet, sl), rt);
}

// A multi-node job: its parts start on the agents, and this process
// coordinates them (src/coord/).
Result<int> run_coordinated(const Context& g, store::JobDir& dir, job::JobConfig c, UniqueFd lock, const Run& o,
                    const std::optional<slurm::Env>& sl) {
  pid_t srun = -1;
  if (c.nodes_from_slurm) {
    auto agents = start_job_agents(g, dir, c);
    if (!agents) {
      (void)dir.remove();
      return (agents.error());
    }
    srun = *agents;
  }
  coord::Coordinator co(dir, c, g.settings.agent_timeout);
  Status st = co.connect(c.nodes);
  if (st) st = co.start();
  if (!st) {
    coord::stop_slurm_agents(srun);
    (void)dir.remove();
    return (st.error());
  }
  // The job's output is part 0's, where its command runs.
  (void)dir.link_outputs(0);
  std::string where;
  for (size_t k = 0; k < c.nodes.size(); k++) where += (k ? ", " : "") + fmt::format("part {} on {}", k, c.nodes[k]);
  job::event(dir, fmt::format("job '{}' started{} on {} nodes ({}); output in {}/stdout.log", c.name,
                              sl ? " in Slurm job " + sl->job_id : "", c.nodes.size(), where, dir.path()), o.quiet);
  coord::CoordinatedRuntime rt(coordinated(dir, c, co, srun, o.quiet, sl, ""));
  return job::supervise(supervised(dir, c, job::JobState{}, std::move(lock), o.quiet, sl), rt);
}

// A requeued Slurm job runs its batch script again: continue the job from
// its latest checkpoint instead of starting over.
Result<int> continue_slurm_job(const Context& g, store::JobDir& dir, const Run& o, const slurm::Env& sl) {
  auto config = job::load_config(dir, true);
  if (!config) return (config.error());
  if (config->slurm_job_id != sl.job_id)
    return (make_error(fmt::format("job '{}' already exists and belongs to {}", dir.name(),
                                       config->slurm_job_id.empty() ? std::string("no Slurm job")
                                                                    : "Slurm job " + config->slurm_job_id))
                    .with_hint("to continue it in this Slurm job use 'exec cryo restore " + dir.name() +
                               "'; to start anew, pick another --name or 'cryo rm " + dir.name() + "'"));
  // A first allocation never finds its job in the store: this one is left
  // over from an earlier job that had the same id (a reinstalled cluster,
  // another cluster sharing the store).
  if (sl.restart_count == 0)
    return (make_error(fmt::format("job '{}' is already in the store, left by an earlier Slurm job {}",
                                       dir.name(), sl.job_id))
                    .with_hint("'cryo rm " + dir.name() + "' if it is no longer needed, or pick another --name"));
  auto lock = job::lock_job(dir);
  if (!lock) return (lock.error());
  auto state = job::load_state(dir);
  if (!state) return (state.error());
  if (state->state == job::State::finished) {
    job::event(dir, fmt::format("job '{}' already finished in an earlier allocation (exit status {})", dir.name(),
                                state->exit_code), o.quiet);
    return state->exit_code;
  }
  auto tier = g.tier();
  if (!tier) return (tier.error());
  commit_pending(dir, *tier, config->keep, o.quiet, o.progress);
  auto latest = dir.latest_id();
  if (!latest) return (latest.error());
  if (!latest->empty()) {
    Continue c;
    c.config = *config;
    c.state = *state;
    c.lock = std::move(*lock);
    c.id = *latest;
    c.tee = true;
    c.quiet = o.quiet;
    c.slurm = sl;
    c.progress = o.progress;
    return restore_and_supervise(g, dir, std::move(c));
  }
  // Nothing was committed before the last allocation ended: start over,
  // with logs that hold only this run's output.
  if (config->nodes_from_slurm) return run_coordinated(g, dir, *config, std::move(*lock), o, sl);
  job::event(dir, fmt::format("restart {} of Slurm job {}: no checkpoint was committed before, starting over",
                              sl.restart_count, sl.job_id), o.quiet);
  for (const char* stream : {"stdout", "stderr"})
    if (auto fd = sys::open(dir.output_log(stream), O_WRONLY | O_TRUNC); !fd && fd.error().code != ENOENT)
      return (fd.error());
  return launch_and_supervise(g, dir, *config, *state, std::move(*lock), o, sl, false);
}

Result<int> run(const Context& g, Run& o) {
  std::optional<slurm::Env> sl;
  if (!o.no_slurm) sl = g.settings.slurm;

  job::JobConfig c;
  c.command = o.command;
  if (!o.every.empty()) {
    auto d = parse_duration(o.every);
    if (!d) return (d.error());
    c.every = *d;
  }
  c.keep = o.keep >= 0 ? o.keep : sl ? kSlurmKeep : 0;
  if (o.checkpoint_on.empty() && sl) o.checkpoint_on = "USR1";
  if (!o.checkpoint_on.empty()) {
    int sig = sys::signal_number(o.checkpoint_on);
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD) sig = 0;
    if (!sig) return (make_error("unknown or unusable signal '" + o.checkpoint_on + "'").with_hint("use a name such as USR1, USR2 or HUP"));
    c.checkpoint_on = sigabbrev_np(sig);
    // (A user's cryo is started by the service: her own cryo, the batch
    // script's process, checked this before it asked: cli/main.cc.)
    if (sl && sl->batch && !acting_for_other())
      if (std::string hazard = slurm::shell_hazard(sig); !hazard.empty()) std::fprintf(stderr, "cryo: warning: %s\n", hazard.c_str());
  }
  if (o.net.empty()) o.net = "host";
  if (o.net != "host" && o.net != "private")
    return (make_error("--net must be 'host' or 'private', not '" + o.net + "'"));
  c.private_net = o.net == "private";
  // SysV IPC objects of the host's namespace are not the job's to dump:
  // CRIU refuses a job that maps their shared memory.
  if (o.ipc.empty()) o.ipc = "private";
  if (o.ipc != "host" && o.ipc != "private")
    return (make_error(ErrorKind::usage, "--ipc must be 'private' or 'host', not '" + o.ipc + "'"));
  c.private_ipc = o.ipc == "private";
  c.tcp_established = o.tcp_established;
  if (!o.podman.empty() + !o.docker.empty() + !o.apptainer.empty() > 1)
    return (make_error("--podman, --docker and --apptainer exclude each other"));
  if (!o.apptainer.empty()) {
    auto image = sys::realpath(o.apptainer);
    if (!image) return (make_error("no Apptainer image at '" + o.apptainer + "'").with_hint("give a .sif file or a sandbox directory"));
    c.kind = job::Kind::apptainer;
    c.image = *image;
    c.engine_options = o.engine_options;
  } else if (!o.podman.empty() || !o.docker.empty()) {
    if (acting_for_other())
      return (make_error(ErrorKind::denied, std::string("--") + (o.podman.empty() ? "docker" : "podman") +
                                                " jobs are root's alone: the engine checkpoints only containers that "
                                                "root runs (Podman's rootless containers cannot be checkpointed)")
                  .with_hint("run the image with --apptainer (cryo checkpoints it as any job of yours), or ask the "
                             "admin to run the container job as root (docs/containers.md)"));
    c.kind = o.podman.empty() ? job::Kind::docker : job::Kind::podman;
    c.image = o.podman.empty() ? o.docker : o.podman;
    c.engine_options = o.engine_options;
    o.mpi = "none";
    if (c.private_net)
      return (make_error("--net private is for jobs outside containers").with_hint("give the container its network with --engine-opt"));
    prepare_engine_environment(g);
    container::Engine engine(c.kind == job::Kind::podman ? container::Kind::podman : container::Kind::docker);
    if (auto v = engine.version(); !v) return (v.error());
  } else if (!o.engine_options.empty()) {
    return (make_error("--engine-opt needs --podman or --docker"));
  }
  if (!o.nodes.empty()) {
    if (acting_for_other())
      return (make_error(ErrorKind::unfit, "multi-node jobs (--agents) are root's alone for now: the agents do not yet "
                                           "act for the job's owner")
                  .with_hint("run the job's ranks on one node, or ask the admin to run it as root (docs/security.md)"));
    if (c.kind != job::Kind::process) return make_error("--agents does not combine with a container");
    size_t parts = o.nodes.size();
    if (o.nodes == std::vector<std::string>{"slurm"}) {
      if (!sl || g.settings.slurm_nodes <= 0)
        return (make_error("--agents slurm needs a Slurm batch job").with_hint("give the agents' IP:PORT,... instead"));
      parts = static_cast<size_t>(g.settings.slurm_nodes);
      c.nodes_from_slurm = true;
    } else {
      c.nodes = o.nodes;
    }
    auto last = coord::part_address(o.part_net, static_cast<uint32_t>(parts - 1));
    if (!last) return (last.error());
    c.part_net = o.part_net;
    c.bridge = o.bridge;
    c.tcp_established = true;
    o.mpi = "none";  // the coordinator gives part 0 what Open MPI needs across parts
  }
  job::Mpi mpi = job::Mpi::none;
  if (o.mpi == "auto") {
    mpi = job::detect_mpi(o.command);
  } else {
    auto m = job::parse_mpi(o.mpi);
    if (!m) return (m.error());
    mpi = *m;
  }
  if (mpi != job::Mpi::none) {
    if (o.ipc == "host")
      return (make_error(ErrorKind::usage, "--ipc host does not combine with an MPI job: its ranks' shared memory "
                                           "is checkpointed in the job's own IPC namespace")
                  .with_hint("leave out --ipc host, or give --mpi none"));
    // What every MPI needs to come back (job/mpi.h).
    c.mpi = mpi;
    c.private_net = true;
    c.private_ipc = true;
    c.tcp_established = true;
  }

  // A job that cannot be checkpointed is worth refusing before it starts.
  if (auto st = need_root("run"); !st) return (st.error());
  if (acting_for_other() && lends_real_ids() && (c.private_net || c.tcp_established))
    return (make_error(ErrorKind::unfit, std::string("this node's root lacks CAP_SYS_RESOURCE, so CRIU works for users "
                                                     "with their real uid, and then cannot save a job's own network or "
                                                     "TCP connections (its netfilter tools refuse to run so)") +
                                             (mpi != job::Mpi::none ? ": MPI jobs need both" : ""))
                .with_hint("run it on a node whose root has CAP_SYS_RESOURCE (not in a container that drops it), or ask "
                           "the admin to run it as root (docs/security.md)"));
  auto version = criu::probe(g.criu_path());
  if (!version) return (version.error());
  o.criu_version = version->text();
  if (auto t = g.tier(); !t) return (t.error());

  std::string root = g.store_root();
  c.name = !o.name.empty() ? o.name : sl ? "slurm-" + sl->job_id : pick_name(root, o.command[0]);
  store::JobDir dir(root, c.name);
  if (sl && dir.exists()) return continue_slurm_job(g, dir, o, *sl);
  if (auto st = dir.create(); !st) return (st.error());
  auto cwd = sys::realpath(".");
  c.cwd = cwd ? *cwd : "/";
  c.created = sys::now();
  const Identity& owner = acting_for();
  c.uid = owner.uid;
  c.gid = owner.gid;
  c.groups = owner.groups;
  c.host = sys::hostname();
  if (!c.traits().engine_checkpoints) c.cpu_flags = job::cpu_flags_here();
  if (sl) c.slurm_job_id = sl->job_id;
  bool had_key = sys::exists(store::key_path());
  if (auto st = job::save_config(dir, c); !st) {
    (void)dir.remove();
    return (st.error());
  }
  if (!had_key)
    job::event(dir, "made the key that signs this node's checkpoints, " + store::key_path() +
                        ": nodes that restore each other's checkpoints need the same one (copy it, mode 0600)",
               o.quiet);
  if (c.kind == job::Kind::apptainer)
    if (auto st = job::prepare_apptainer_image(c, dir); !st) {
      (void)dir.remove();
      return (st.error());
    }
  if (mpi != job::Mpi::none)
    job::event(dir, fmt::format("{} job: private network and IPC namespaces, its own /dev/shm, TCP connections "
                                "checkpointed, MPI session files in {}", mpi == job::Mpi::openmpi ? "Open MPI" : "MPICH",
                                dir.file(store::JobFile::mpi)), o.quiet);
  auto lock = job::lock_job(dir);
  if (!lock) return (lock.error());
  if (c.coordinated() || c.nodes_from_slurm) return run_coordinated(g, dir, c, std::move(*lock), o, sl);
  return launch_and_supervise(g, dir, c, job::JobState{}, std::move(*lock), o, sl, true);
}

// A multi-node job: every part restored on its agent, then coordinated.
Result<int> restore_coordinated(const Context& g, store::JobDir& dir, Continue c) {
  pid_t srun = -1;
  if (c.config.nodes_from_slurm && c.slurm && c.nodes.empty()) {
    auto agents = start_job_agents(g, dir, c.config);
    if (!agents) return (agents.error());
    srun = *agents;
  } else if (!c.nodes.empty()) {
    if (c.nodes.size() != c.config.nodes.size())
      return (make_error(fmt::format("job '{}' has {} parts: give {} agents with --agents", dir.name(),
                                         c.config.nodes.size(), c.config.nodes.size())));
    c.config.nodes = c.nodes;
    if (auto st = job::save_config(dir, c.config); !st) return (st.error());
  }
  coord::Coordinator co(dir, c.config, g.settings.agent_timeout);
  double t0 = sys::now();
  Status st = co.connect(c.config.nodes);
  std::vector<std::string> warnings;
  if (st) st = co.restore(c.id, &warnings);
  if (!st) {
    coord::stop_slurm_agents(srun);
    return (st.error());
  }
  for (const auto& w : warnings) job::event(dir, "warning: " + w, c.quiet);
  std::string where;
  for (size_t k = 0; k < c.config.nodes.size(); k++)
    where += (k ? ", " : "") + fmt::format("part {} on {}", k, c.config.nodes[k]);
  job::event(dir, fmt::format("job '{}' restored from checkpoint {} in {} ({})", dir.name(), c.id,
                              format_duration(sys::now() - t0), where), c.quiet);
  coord::CoordinatedRuntime rt(coordinated(dir, c.config, co, srun, c.quiet, c.slurm, c.id));
  return job::supervise(supervised(dir, c.config, restored_state(c), std::move(c.lock), c.quiet, c.slurm), rt);
}

Result<int> restore_and_supervise(const Context& g, store::JobDir& dir, Continue c) {
  if (c.config.coordinated() || c.config.nodes_from_slurm) return restore_coordinated(g, dir, std::move(c));
  // Restarted by hand in another Slurm job: that job is the one to requeue.
  if (c.slurm && c.config.slurm_job_id != c.slurm->job_id) {
    c.config.slurm_job_id = c.slurm->job_id;
    if (auto st = job::save_config(dir, c.config); !st) return (st.error());
  }
  if (c.config.traits().engine_checkpoints) prepare_engine_environment(g);
  job::RestoreRun run;
  run.dir = &dir;
  run.config = &c.config;
  run.id = c.id;
  run.criu_path = g.criu_path();
  auto tier = g.tier();
  if (!tier) return (tier.error());
  run.tier = *tier;
  run.prefer_fast = c.prefer_fast;
  run.tee = c.tee || c.slurm;
  run.progress = c.progress;
  double t0 = sys::now();
  auto restored = job::restore_job(run);
  if (!restored) return (restored.error());
  if (!restored->warning.empty())
    job::event(dir, "warning: the fast copy of checkpoint " + c.id + " was not used: " + restored->warning +
                        "; restored from the store", c.quiet);

  job::LocalJob j;
  j.dir = &dir;
  j.config = c.config;
  j.job_pid = restored->pid;
  j.outputs = std::move(restored->outputs);
  j.criu_path = run.criu_path;
  j.criu_version = restored->criu_version;
  j.init_path = restored->init_path;
  j.tier = run.tier;
  j.quiet = c.quiet;
  job::JobState state = restored_state(c);
  state.job_pid = restored->pid;
  std::string where = c.slurm ? fmt::format(" in Slurm job {} (restart {})", c.slurm->job_id, c.slurm->restart_count) : "";
  job::event(dir, fmt::format("job '{}' restored from checkpoint {}{} ({}) in {} (pid {})", dir.name(), c.id, where,
                              restored->source, format_duration(sys::now() - t0), restored->pid), c.quiet);
  job::LocalRuntime rt(std::move(j));
  return job::supervise(supervised(dir, c.config, std::move(state), std::move(c.lock), c.quiet, c.slurm), rt);
}


}  // namespace

Result<int> start_job(const Context& ctx, StartRequest r) {
  Run run;
  static_cast<StartRequest&>(run) = std::move(r);
  return ::cryo::app::run(ctx, run);
}

Result<int> continue_job(const Context& g, const ContinueRequest& o) {
  auto dir = open_job(g, o.name);
  if (!dir) return (dir.error());
  if (auto st = need_root("restore"); !st) return (st.error());
  auto config = job::load_config(*dir, true);
  if (!config) return (config.error());
  auto lock = job::lock_job(*dir);
  if (!lock) return (lock.error());
  auto state = job::load_state(*dir);
  if (!state) return (state.error());
  auto tier = g.tier();
  if (!tier) return (tier.error());
  // A dump whose flush was killed is the newest checkpoint: commit it first.
  commit_pending(*dir, *tier, config->keep, o.quiet, o.progress);
  if (state->state == job::State::finished && !o.force)
    return (make_error(fmt::format("job '{}' has finished (exit status {}); restoring would run its end again",
                                       o.name, state->exit_code))
                    .with_hint("add --force to restore it anyway"));
  std::string id = o.from;
  if (id.empty()) {
    auto latest = dir->latest_id();
    if (!latest) return (latest.error());
    if (latest->empty())
      return (make_error("job '" + o.name + "' has no checkpoint to restore")
                      .with_hint("checkpoints are taken by 'cryo checkpoint', --every or --checkpoint-on"));
    id = *latest;
  }

  Continue c;
  c.config = *config;
  c.state = *state;
  c.lock = std::move(*lock);
  c.id = id;
  c.tee = o.tee;
  c.quiet = o.quiet;
  c.prefer_fast = !o.durable;
  c.nodes = o.nodes;
  if (!o.no_slurm) c.slurm = g.settings.slurm;
  c.progress = o.progress;
  return restore_and_supervise(g, *dir, std::move(c));
}

bool RestoreCheck::ok() const {
  for (const auto& c : checks)
    if (c.verdict == job::Verdict::fail) return false;
  return true;
}

Result<RestoreCheck> check_restore(const Context& g, const ContinueRequest& o) {
  auto dir = open_job(g, o.name);
  if (!dir) return (dir.error());
  RestoreCheck out;
  out.job = o.name;
  auto failed = [](const std::string& name, const Error& e) {
    return job::Check{name, job::Verdict::fail, e.message, e.hint, kind_of(e)};
  };
  {
    job::Check c{"job", job::Verdict::pass, "job '" + o.name + "' is not running", "", ErrorKind::busy};
    auto state = job::load_state(*dir);
    if (auto lock = job::lock_job(*dir); !lock) c = failed("job", lock.error());
    else if (!state) c = failed("job", state.error());
    else if (state->state == job::State::finished && !o.force)
      c = {"job", job::Verdict::fail, fmt::format("job '{}' has finished (exit status {})", o.name, state->exit_code),
           "add --force to restore it anyway", ErrorKind::usage};
    out.checks.push_back(c);
  }
  out.id = o.from;
  if (out.id.empty()) {
    auto latest = dir->latest_id();
    if (!latest) return (latest.error());
    if (latest->empty()) return (make_error(ErrorKind::not_found, "job '" + o.name + "' has no checkpoint to restore"));
    out.id = *latest;
  }
  auto m = store::load_signed_manifest(*dir, out.id);
  if (!m) {
    out.checks.push_back(failed("key", m.error()));
    return out;
  }
  out.checks.push_back({"key", job::Verdict::pass, "checkpoint " + out.id + " is signed with this node's key (" +
                        store::key_path() + ")", "", ErrorKind::corrupt});
  auto record = job::restore_record(*m);
  if (!record) {
    out.checks.push_back(failed("key", record.error()));
    return out;
  }
  if (!record->coordinated) {
    job::Node here = job::this_node();
    here.criu = criu::probe(g.criu_path());
    for (auto& c : job::check_restore(*m, *record, here)) out.checks.push_back(std::move(c));
    return out;
  }
  // A multi-node job: each part is checked by the agent it would restore on.
  auto config = job::load_config(*dir, true);
  if (!config) return (config.error());
  std::vector<std::string> agents = o.nodes.empty() ? config->nodes : o.nodes;
  if (agents.empty() || agents == std::vector<std::string>{"slurm"}) {
    out.checks.push_back({"parts", job::Verdict::warn,
                          fmt::format("the {} parts are checked on their nodes when their agents restore them",
                                      record->parts.size()),
                          "give the agents with --agents to check them now", ErrorKind::unfit});
    return out;
  }
  coord::Coordinator co(*dir, *config, g.settings.agent_timeout);
  Status st = co.connect(agents);
  auto parts = st ? co.check_restore(out.id) : Result<std::vector<std::vector<job::Check>>>(st.error());
  if (!parts) {
    out.checks.push_back(failed("parts", parts.error()));
    return out;
  }
  for (size_t k = 0; k < parts->size(); k++)
    for (auto& c : (*parts)[k]) {
      c.name = fmt::format("p{} {}", k, c.name);
      c.detail = fmt::format("on {}: {}", agents[k], c.detail);
      out.checks.push_back(std::move(c));
    }
  return out;
}

Result<control::CheckpointDone> request_checkpoint(const Context& ctx, const CheckpointRequest& o) {
  auto dir = open_job(ctx, o.name);
  if (!dir) return dir.error();
  auto c = job::control_connect(dir->path());
  if (!c) return not_running(*dir);
  control::Request req;
  req.set_version(job::kControlVersion);
  req.mutable_checkpoint()->set_stop(o.stop);
  req.mutable_checkpoint()->set_tcp_established(o.tcp);
  req.mutable_checkpoint()->set_wait(o.wait || o.stop);
  CRYO_TRY(job::send_message(c->get(), req));
  for (;;) {
    control::Reply r;
    if (auto st = job::recv_message(c->get(), r); !st)
      return make_error("the checkpoint of job '" + o.name + "' ended without an answer (its worker or CRIU was killed)")
          .with_hint("the job keeps running and earlier checkpoints are unchanged; see " +
                     dir->file(store::JobFile::events));
    if (r.has_progress()) {
      if (o.progress) o.progress(r.progress().phase(), r.progress().done(), r.progress().total());
      continue;
    }
    if (r.has_failure()) return job::failure_error(r.failure());
    if (!r.has_checkpoint()) return make_error("unexpected answer from the job's supervisor");
    // A stopped job's supervisor exits right after: wait for it, so that a
    // 'cryo restore' straight after this finds the job free.
    if (r.checkpoint().stopped())
      for (int i = 0; i < 200; i++) {
        if (job::lock_job(*dir)) break;
        ::usleep(50000);
      }
    return r.checkpoint();
  }
}

}  // namespace cryo::app
