// cryo run: start a job under supervision.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "cli/common.h"
#include "cli/job_options.h"
#include "criu/client.h"
#include "container/engine.h"
#include "coord/agent.h"
#include "coord/coordinator.h"
#include "coord/supervise.h"
#include "job/config.h"
#include "job/apptainer.h"
#include "job/container.h"
#include "job/launch.h"
#include "job/mpi.h"
#include "job/supervisor.h"
#include "store/signing.h"

namespace cryo::cli {

namespace {

struct RunOptions : JobOptions {
  std::string checkpoint_on;
  bool tee = false;
  bool quiet = false;
  bool no_slurm = false;
  std::vector<std::string> command;
  std::string criu_version;  // probed before the job starts
};

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

// Starts the job's command afresh and supervises it.  A launch failure
// removes the job directory if this run created it.
int launch_and_supervise(const Globals& g, store::JobDir& dir, const job::JobConfig& c, job::JobState state,
                         UniqueFd lock, const RunOptions& o, const std::optional<slurm::Env>& sl, bool created) {
  job::LaunchSpec spec;
  spec.command = c.command;
  spec.job_name = c.name;
  spec.private_net = c.private_net;
  spec.private_ipc = c.private_ipc;
  spec.init_dir = dir.path();
  if (!c.in_engine()) spec.init_path = job::make_job_init(dir);
  if (c.engine == "apptainer") {
    auto root = job::apptainer_root(c, dir, spec.init_path);
    if (!root) return fail(root.error());
    spec.rootfs = root->rootfs;
    spec.binds = job::init_binds(*root);
    spec.workdir = root->workdir;
  }
  if (!c.mpi.empty()) {
    auto m = job::parse_mpi(c.mpi);
    if (!m) return fail(m.error());
    if (auto st = job::prepare_mpi_dirs(*m, c.name, dir.file(store::JobFile::mpi)); !st) return fail(st.error());
    spec.env = job::mpi_environment(*m, c.name, dir.file(store::JobFile::mpi), ::geteuid() == 0);
  }
  auto launched = c.in_engine() ? job::launch_container(c, dir) : job::launch(spec);
  if (!launched) {
    if (created) (void)dir.remove();
    int code = fail(launched.error());
    return launched.error().code == ENOENT || launched.error().code == EACCES ? 127 : code;
  }
  job::Supervised s;
  s.dir = &dir;
  s.config = c;
  s.state = std::move(state);
  s.state.state = job::State::running;
  s.state.job_pid = launched->pid;
  s.criu_path = g.criu_path();
  s.criu_version = o.criu_version;
  s.init_path = spec.init_path;
  auto tier = g.tier();
  if (!tier) {
    ::kill(launched->pid, SIGKILL);
    return fail(tier.error());
  }
  s.tier = *tier;
  s.lock = std::move(lock);
  s.quiet = o.quiet;
  s.slurm = sl;
  bool tee = o.tee || sl;
  for (auto [name, fd, tee_fd] : {std::tuple{"stdout", &launched->out, 1}, std::tuple{"stderr", &launched->err, 2}}) {
    auto out = job::open_output(dir.path(), name, std::move(*fd), tee ? tee_fd : -1);
    if (!out) {
      ::kill(launched->pid, SIGKILL);
      return fail(out.error());
    }
    s.outputs.push_back(std::move(*out));
  }
  std::string where = sl ? fmt::format(" in Slurm job {}", sl->job_id) : "";
  job::event(dir, fmt::format("job '{}' started{} (pid {}); output in {}/stdout.log and stderr.log", c.name, where,
                              launched->pid, dir.path()), o.quiet);
  return job::supervise(std::move(s));
}

// A multi-node job: its parts start on the agents, and this process
// coordinates them (src/coord/).
int run_coordinated(const Globals& g, store::JobDir& dir, job::JobConfig c, UniqueFd lock, const RunOptions& o,
                    const std::optional<slurm::Env>& sl) {
  pid_t srun = -1;
  if (c.nodes_from_slurm) {
    auto agents = start_job_agents(g, dir, c);
    if (!agents) {
      (void)dir.remove();
      return fail(agents.error());
    }
    srun = *agents;
  }
  coord::Coordinator co(dir, c, g.settings.agent_timeout);
  Status st = co.connect(c.nodes);
  if (st) st = co.start();
  if (!st) {
    coord::stop_slurm_agents(srun);
    (void)dir.remove();
    return fail(st.error());
  }
  // The job's output is part 0's, where its command runs.
  (void)dir.link_outputs(0);
  std::string where;
  for (size_t k = 0; k < c.nodes.size(); k++) where += (k ? ", " : "") + fmt::format("part {} on {}", k, c.nodes[k]);
  job::event(dir, fmt::format("job '{}' started{} on {} nodes ({}); output in {}/stdout.log", c.name,
                              sl ? " in Slurm job " + sl->job_id : "", c.nodes.size(), where, dir.path()), o.quiet);
  coord::Coordinated s;
  s.dir = &dir;
  s.config = c;
  s.lock = std::move(lock);
  s.quiet = o.quiet;
  s.slurm = sl;
  s.srun = srun;
  return coord::supervise_coordinated(std::move(s), co);
}

// A requeued Slurm job runs its batch script again: continue the job from
// its latest checkpoint instead of starting over.
int continue_slurm_job(const Globals& g, store::JobDir& dir, const RunOptions& o, const slurm::Env& sl) {
  auto config = job::load_config(dir, true);
  if (!config) return fail(config.error());
  if (config->slurm_job_id != sl.job_id)
    return fail(make_error(fmt::format("job '{}' already exists and belongs to {}", dir.name(),
                                       config->slurm_job_id.empty() ? std::string("no Slurm job")
                                                                    : "Slurm job " + config->slurm_job_id))
                    .with_hint("to continue it in this Slurm job use 'exec cryo restore " + dir.name() +
                               "'; to start anew, pick another --name or 'cryo rm " + dir.name() + "'"));
  // A first allocation never finds its job in the store: this one is left
  // over from an earlier job that had the same id (a reinstalled cluster,
  // another cluster sharing the store).
  if (sl.restart_count == 0)
    return fail(make_error(fmt::format("job '{}' is already in the store, left by an earlier Slurm job {}",
                                       dir.name(), sl.job_id))
                    .with_hint("'cryo rm " + dir.name() + "' if it is no longer needed, or pick another --name"));
  auto lock = job::lock_job(dir);
  if (!lock) return fail(lock.error());
  auto state = job::load_state(dir);
  if (!state) return fail(state.error());
  if (state->state == job::State::finished) {
    job::event(dir, fmt::format("job '{}' already finished in an earlier allocation (exit status {})", dir.name(),
                                state->exit_code), o.quiet);
    return state->exit_code;
  }
  auto tier = g.tier();
  if (!tier) return fail(tier.error());
  commit_pending(dir, *tier, config->keep, o.quiet);
  auto latest = dir.latest_id();
  if (!latest) return fail(latest.error());
  if (!latest->empty()) {
    Continue c;
    c.config = *config;
    c.state = *state;
    c.lock = std::move(*lock);
    c.id = *latest;
    c.tee = true;
    c.quiet = o.quiet;
    c.slurm = sl;
    return restore_and_supervise(g, dir, std::move(c));
  }
  // Nothing was committed before the last allocation ended: start over,
  // with logs that hold only this run's output.
  if (config->nodes_from_slurm) return run_coordinated(g, dir, *config, std::move(*lock), o, sl);
  job::event(dir, fmt::format("restart {} of Slurm job {}: no checkpoint was committed before, starting over",
                              sl.restart_count, sl.job_id), o.quiet);
  for (const char* stream : {"stdout", "stderr"})
    if (auto fd = sys::open(dir.output_log(stream), O_WRONLY | O_TRUNC); !fd && fd.error().code != ENOENT)
      return fail(fd.error());
  return launch_and_supervise(g, dir, *config, *state, std::move(*lock), o, sl, false);
}

int run(const Globals& g, RunOptions& o) {
  std::optional<slurm::Env> sl;
  if (!o.no_slurm) sl = g.settings.slurm;

  job::JobConfig c;
  c.command = o.command;
  if (!o.every.empty()) {
    auto d = parse_duration(o.every);
    if (!d) return fail(d.error());
    c.every = *d;
  }
  c.keep = o.keep >= 0 ? o.keep : sl ? kSlurmKeep : 0;
  if (o.checkpoint_on.empty() && sl) o.checkpoint_on = "USR1";
  if (!o.checkpoint_on.empty()) {
    int sig = sys::signal_number(o.checkpoint_on);
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD) sig = 0;
    if (!sig) return fail(make_error("unknown or unusable signal '" + o.checkpoint_on + "'").with_hint("use a name such as USR1, USR2 or HUP"));
    c.checkpoint_on = sigabbrev_np(sig);
    if (sl && sl->batch)
      if (std::string hazard = slurm::shell_hazard(sig); !hazard.empty()) std::fprintf(stderr, "cryo: warning: %s\n", hazard.c_str());
  }
  if (o.net.empty()) o.net = "host";
  if (o.net != "host" && o.net != "private")
    return fail(make_error("--net must be 'host' or 'private', not '" + o.net + "'"));
  c.private_net = o.net == "private";
  c.tcp_established = o.tcp_established;
  if (!o.podman.empty() + !o.docker.empty() + !o.apptainer.empty() > 1)
    return fail(make_error("--podman, --docker and --apptainer exclude each other"));
  if (!o.apptainer.empty()) {
    auto image = sys::realpath(o.apptainer);
    if (!image) return fail(make_error("no Apptainer image at '" + o.apptainer + "'").with_hint("give a .sif file or a sandbox directory"));
    c.engine = "apptainer";
    c.image = *image;
    c.engine_options = o.engine_options;
  } else if (!o.podman.empty() || !o.docker.empty()) {
    c.engine = o.podman.empty() ? "docker" : "podman";
    c.image = o.podman.empty() ? o.docker : o.podman;
    c.engine_options = o.engine_options;
    o.mpi = "none";
    if (c.private_net)
      return fail(make_error("--net private is for jobs outside containers").with_hint("give the container its network with --engine-opt"));
    prepare_engine_environment(g);
    container::Engine engine(c.engine == "podman" ? container::Kind::podman : container::Kind::docker);
    if (auto v = engine.version(); !v) return fail(v.error());
  } else if (!o.engine_options.empty()) {
    return fail(make_error("--engine-opt needs --podman or --docker"));
  }
  if (!o.nodes.empty()) {
    if (!c.engine.empty()) return fail(make_error("--agents does not combine with a container engine"));
    size_t parts = o.nodes.size();
    if (o.nodes == std::vector<std::string>{"slurm"}) {
      if (!sl || g.settings.slurm_nodes <= 0)
        return fail(make_error("--agents slurm needs a Slurm batch job").with_hint("give the agents' IP:PORT,... instead"));
      parts = static_cast<size_t>(g.settings.slurm_nodes);
      c.nodes_from_slurm = true;
    } else {
      c.nodes = o.nodes;
    }
    auto last = coord::part_address(o.part_net, static_cast<uint32_t>(parts - 1));
    if (!last) return fail(last.error());
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
    if (!m) return fail(m.error());
    mpi = *m;
  }
  if (mpi != job::Mpi::none) {
    // What every MPI needs to come back (job/mpi.h).
    c.mpi = job::mpi_name(mpi);
    c.private_net = true;
    c.private_ipc = true;
    c.tcp_established = true;
  }

  // A job that cannot be checkpointed is worth refusing before it starts.
  if (auto st = need_root("run"); !st) return fail(st.error());
  auto version = criu::probe(g.criu_path());
  if (!version) return fail(version.error());
  o.criu_version = version->text();
  if (auto t = g.tier(); !t) return fail(t.error());

  std::string root = g.store_root();
  c.name = !o.name.empty() ? o.name : sl ? "slurm-" + sl->job_id : pick_name(root, o.command[0]);
  store::JobDir dir(root, c.name);
  if (sl && dir.exists()) return continue_slurm_job(g, dir, o, *sl);
  if (auto st = dir.create(); !st) return fail(st.error());
  auto cwd = sys::realpath(".");
  c.cwd = cwd ? *cwd : "/";
  c.created = sys::now();
  c.uid = ::getuid();
  c.host = sys::hostname();
  if (sl) c.slurm_job_id = sl->job_id;
  bool had_key = sys::exists(store::key_path());
  if (auto st = job::save_config(dir, c); !st) {
    (void)dir.remove();
    return fail(st.error());
  }
  if (!had_key)
    job::event(dir, "made the key that signs this node's checkpoints, " + store::key_path() +
                        ": nodes that restore each other's checkpoints need the same one (copy it, mode 0600)",
               o.quiet);
  if (c.engine == "apptainer")
    if (auto st = job::prepare_apptainer_image(c, dir); !st) {
      (void)dir.remove();
      return fail(st.error());
    }
  if (mpi != job::Mpi::none)
    job::event(dir, fmt::format("{} job: private network and IPC namespaces, TCP connections checkpointed, MPI "
                                "files in {} and {}", mpi == job::Mpi::openmpi ? "Open MPI" : "MPICH",
                                dir.file(store::JobFile::mpi), job::mpi_shm_dir(c.name)), o.quiet);
  auto lock = job::lock_job(dir);
  if (!lock) return fail(lock.error());
  if (c.coordinated() || c.nodes_from_slurm) return run_coordinated(g, dir, c, std::move(*lock), o, sl);
  return launch_and_supervise(g, dir, c, job::JobState{}, std::move(*lock), o, sl, true);
}

}  // namespace

void add_run_verb(CLI::App& app, Globals& g) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = add_verb(app, "run", "Start a job under cryo's supervision",
      "Start COMMAND as a checkpointable job and supervise it until it ends.\n\n"
      "The job runs in its own PID namespace under a small init, in its own session,\n"
      "so that a restore never collides with PIDs in use.  Its stdout and stderr go\n"
      "to STORE/NAME/stdout.log and stderr.log.  cryo stays in the foreground and\n"
      "exits with the job's exit status (75 if the job was stopped at a checkpoint).\n"
      "Signals sent to cryo (TERM, INT, HUP, USR1, ...) are forwarded to the job,\n"
      "except the --checkpoint-on signal.\n\n"
      "An MPI job (COMMAND is Open MPI's mpirun or MPICH's mpiexec, or --mpi) gets\n"
      "private network and IPC namespaces, --tcp-established, and its own MPI\n"
      "session and shared-memory directories, so that all its ranks checkpoint\n"
      "and restore as one and two MPI jobs never collide.  See docs/mpi.md.\n\n"
      "Inside a Slurm batch job (SLURM_JOB_ID is set) cryo also:\n"
      "  - names the job slurm-JOBID (unless --name) and keeps --keep 2 by default;\n"
      "  - copies the job's output to its own (the Slurm output file), as --tee;\n"
      "  - on the --checkpoint-on signal (default USR1: submit with\n"
      "    --signal=B:USR1@SECONDS) or SIGTERM (preemption), checkpoints the job,\n"
      "    stops it, requeues the Slurm job and exits 0;\n"
      "  - when the requeued job runs this command again, restores the latest\n"
      "    checkpoint instead of starting over;\n"
      "  - warns when a checkpoint took too long for the signal's margin.\n"
      "Start it with 'exec cryo run ...' so that the batch shell does not die of\n"
      "the signal first; 'cryo sbatch' writes such a script.  See docs/slurm.md.");
  add_job_options(cmd, *o, "default 0: keep all; under Slurm 2");
  cmd->add_option("--checkpoint-on", o->checkpoint_on, "Checkpoint when cryo receives this signal, e.g. USR1 (under Slurm: default USR1, and requeue)")->type_name("SIGNAL");
  cmd->add_flag("--tee", o->tee, "Also copy the job's output to cryo's stdout and stderr");
  cmd->add_flag("--quiet,-q", o->quiet, "Print no event lines (they still go to STORE/NAME/cryo.log)");
  cmd->add_flag("--no-slurm", o->no_slurm, "Inside a Slurm job, behave as outside it");
  cmd->add_option("command", o->command,
                  "The command to run, best after --; everything from its first word on is the command's, "
                  "options too")
      ->required()
      ->expected(-1)->type_name("COMMAND");
  // 'cryo run ./solver -n 5' runs './solver -n 5': cryo's options end where
  // the command starts, as sudo's and srun's do.
  cmd->positionals_at_end();
  cmd->footer("\nExamples:\n  cryo run --name sim --every 30m --keep 3 -- ./solver input.dat\n"
              "  exec cryo run -- ./solver input.dat      # as a Slurm batch script's last line");
  cmd->callback([&g, o] { g_exit_code = run(g, *o); });
}

}  // namespace cryo::cli
