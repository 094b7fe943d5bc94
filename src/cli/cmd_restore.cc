// cryo restore: continue a job from a checkpoint, and supervise it.
#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "cli/common.h"
#include "coord/agent.h"
#include "coord/coordinator.h"
#include "coord/supervise.h"
#include "job/config.h"
#include "job/restore.h"
#include "job/supervisor.h"

namespace cryo::cli {

namespace {

struct Options {
  std::string name;
  std::string from;
  bool force = false;
  bool durable = false;
  std::vector<std::string> nodes;
  bool tee = false;
  bool quiet = false;
  bool no_slurm = false;
};

int restore(const Globals& g, const Options& o) {
  auto dir = open_job(g, o.name);
  if (!dir) return fail(dir.error());
  if (auto st = need_root("restore"); !st) return fail(st.error());
  auto config = job::load_config(*dir, true);
  if (!config) return fail(config.error());
  auto lock = job::lock_job(*dir);
  if (!lock) return fail(lock.error());
  auto state = job::load_state(*dir);
  if (!state) return fail(state.error());
  auto tier = g.tier();
  if (!tier) return fail(tier.error());
  // A dump whose flush was killed is the newest checkpoint: commit it first.
  commit_pending(*dir, *tier, config->keep, o.quiet);
  if (state->state == job::State::finished && !o.force)
    return fail(make_error(fmt::format("job '{}' has finished (exit status {}); restoring would run its end again",
                                       o.name, state->exit_code))
                    .with_hint("add --force to restore it anyway"));
  std::string id = o.from;
  if (id.empty()) {
    auto latest = dir->latest_id();
    if (!latest) return fail(latest.error());
    if (latest->empty())
      return fail(make_error("job '" + o.name + "' has no checkpoint to restore")
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
  return restore_and_supervise(g, *dir, std::move(c));
}

}  // namespace

namespace {

// A multi-node job: every part restored on its agent, then coordinated.
int restore_coordinated(const Globals& g, store::JobDir& dir, Continue c) {
  pid_t srun = -1;
  if (c.config.nodes_from_slurm && c.slurm && c.nodes.empty()) {
    auto agents = start_job_agents(g, dir, c.config);
    if (!agents) return fail(agents.error());
    srun = *agents;
  } else if (!c.nodes.empty()) {
    if (c.nodes.size() != c.config.nodes.size())
      return fail(make_error(fmt::format("job '{}' has {} parts: give {} agents with --agents", dir.name(),
                                         c.config.nodes.size(), c.config.nodes.size())));
    c.config.nodes = c.nodes;
    if (auto st = job::save_config(dir, c.config); !st) return fail(st.error());
  }
  coord::Coordinator co(dir, c.config, g.settings.agent_timeout);
  double t0 = sys::now();
  Status st = co.connect(c.config.nodes);
  std::vector<std::string> warnings;
  if (st) st = co.restore(c.id, &warnings);
  if (!st) {
    coord::stop_slurm_agents(srun);
    return fail(st.error());
  }
  for (const auto& w : warnings) job::event(dir, "warning: " + w, c.quiet);
  std::string where;
  for (size_t k = 0; k < c.config.nodes.size(); k++)
    where += (k ? ", " : "") + fmt::format("part {} on {}", k, c.config.nodes[k]);
  job::event(dir, fmt::format("job '{}' restored from checkpoint {} in {} ({})", dir.name(), c.id,
                              format_duration(sys::now() - t0), where), c.quiet);
  coord::Coordinated s;
  s.dir = &dir;
  s.config = c.config;
  s.state = c.state;
  s.state.restores++;
  s.state.restored_from = c.id;
  s.state.exit_code = -1;
  s.state.message.clear();
  s.lock = std::move(c.lock);
  s.quiet = c.quiet;
  s.slurm = c.slurm;
  s.srun = srun;
  return coord::supervise_coordinated(std::move(s), co);
}

}  // namespace

int restore_and_supervise(const Globals& g, store::JobDir& dir, Continue c) {
  if (c.config.coordinated() || c.config.nodes_from_slurm) return restore_coordinated(g, dir, std::move(c));
  // Restarted by hand in another Slurm job: that job is the one to requeue.
  if (c.slurm && c.config.slurm_job_id != c.slurm->job_id) {
    c.config.slurm_job_id = c.slurm->job_id;
    if (auto st = job::save_config(dir, c.config); !st) return fail(st.error());
  }
  if (c.config.in_engine()) prepare_engine_environment(g);
  job::RestoreRun run;
  run.dir = &dir;
  run.config = &c.config;
  run.id = c.id;
  run.criu_path = g.criu_path();
  auto tier = g.tier();
  if (!tier) return fail(tier.error());
  run.tier = *tier;
  run.prefer_fast = c.prefer_fast;
  run.tee = c.tee || c.slurm;
  Progress progress;
  run.progress = [&](const std::string& phase, uint64_t done, uint64_t total) { progress.update(phase, done, total); };
  double t0 = sys::now();
  auto restored = job::restore_job(run);
  progress.finish();
  if (!restored) return fail(restored.error());
  if (!restored->warning.empty())
    job::event(dir, "warning: the fast copy of checkpoint " + c.id + " was not used: " + restored->warning +
                        "; restored from the store", c.quiet);

  job::Supervised s;
  s.dir = &dir;
  s.config = c.config;
  s.state = c.state;
  s.state.state = job::State::running;
  s.state.job_pid = restored->pid;
  s.state.exit_code = -1;
  s.state.message.clear();
  s.state.restores++;
  s.state.restored_from = c.id;
  s.outputs = std::move(restored->outputs);
  s.criu_path = run.criu_path;
  s.criu_version = restored->criu_version;
  s.init_path = restored->init_path;
  s.tier = run.tier;
  s.lock = std::move(c.lock);
  s.quiet = c.quiet;
  s.slurm = c.slurm;
  std::string where = c.slurm ? fmt::format(" in Slurm job {} (restart {})", c.slurm->job_id, c.slurm->restart_count) : "";
  job::event(dir, fmt::format("job '{}' restored from checkpoint {}{} ({}) in {} (pid {})", dir.name(), c.id, where,
                              restored->source, format_duration(sys::now() - t0), restored->pid), c.quiet);
  return job::supervise(std::move(s));
}

void add_restore_verb(CLI::App& app, Globals& g) {
  auto o = std::make_shared<Options>();
  auto* cmd = add_verb(app, "restore", "Continue a job from its latest checkpoint",
      "Continue job NAME from its latest checkpoint (or --from ID), on this node or\n"
      "any other that sees the store.  A checkpoint whose flush was interrupted is\n"
      "committed first.  On the node that took it, the checkpoint's fast copy is read\n"
      "if it is still there and sound; otherwise the store's copy, streamed to CRIU\n"
      "as it is read (through FUSE; laid out in the fast tier first where FUSE is\n"
      "missing).  The checkpoint's signature is checked with this node's key\n"
      "($CRYO_KEY or /etc/cryo/key, the same on every node of the site), and every\n"
      "byte is verified before the job runs (memory pages while CRIU restores them,\n"
      "the job still stopped): a damaged or forged checkpoint is refused and nothing\n"
      "is changed, and a damaged fast copy gives way to the store's.  The job's\n"
      "output logs and the files it had open for writing are put back as they were\n"
      "at the checkpoint, so no output line appears twice.  cryo then supervises the\n"
      "job as 'cryo run' does and exits with its exit status.  Inside a Slurm batch\n"
      "job it handles the end of the allocation as 'cryo run' does there (see\n"
      "'cryo run --help'); a batch script 'exec cryo restore NAME' restarts a job by hand.");
  cmd->add_option("name", o->name, "Job name")->required()->type_name("NAME");
  cmd->add_option("--from", o->from, "Checkpoint ID to restore (default: the latest)")->type_name("ID");
  cmd->add_flag("--force", o->force, "Restore even a job that has finished");
  cmd->add_option("--agents", o->nodes, "A multi-node job: restore part k on the k-th of these agents (IP:PORT,...)")
      ->delimiter(',')
      ->allow_extra_args(false)->type_name("IP:PORT,...|slurm");
  cmd->add_flag("--durable", o->durable, "Read the checkpoint from the store even if this node has a fast copy");
  cmd->add_flag("--tee", o->tee, "Also copy the job's output to cryo's stdout and stderr");
  cmd->add_flag("--quiet,-q", o->quiet, "Print no event lines");
  cmd->add_flag("--no-slurm", o->no_slurm, "Inside a Slurm job, behave as outside (no requeue at the time limit)");
  cmd->callback([&g, o] { g_exit_code = restore(g, *o); });
}

}  // namespace cryo::cli
