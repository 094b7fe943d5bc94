// cryo restore: continue a job from a checkpoint, and supervise it.
#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "cli/common.h"
#include "job/config.h"
#include "job/restore.h"
#include "job/supervisor.h"

namespace cryo::cli {

namespace {

struct Options {
  std::string name;
  std::string from;
  bool force = false;
  bool tee = false;
  bool quiet = false;
};

int restore(const Globals& g, const Options& o) {
  auto dir = open_job(g, o.name);
  if (!dir) return fail(dir.error());
  auto config = job::load_config(*dir);
  if (!config) return fail(config.error());
  auto lock = job::lock_job(*dir);
  if (!lock) return fail(lock.error());
  auto state = job::load_state(*dir);
  if (!state) return fail(state.error());
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

  job::RestoreRun run;
  run.dir = &*dir;
  run.id = id;
  run.criu_path = g.criu_path();
  run.tee = o.tee;
  Progress progress;
  run.progress = [&](const std::string& phase, uint64_t done, uint64_t total) { progress.update(phase, done, total); };
  double t0 = sys::now();
  auto restored = job::restore_job(run);
  progress.finish();
  if (!restored) return fail(restored.error());

  job::Supervised s;
  s.dir = &*dir;
  s.config = *config;
  s.state = *state;
  s.state.state = job::State::running;
  s.state.job_pid = restored->pid;
  s.state.exit_code = -1;
  s.state.message.clear();
  s.state.restores++;
  s.state.restored_from = id;
  s.outputs = std::move(restored->outputs);
  s.criu_path = run.criu_path;
  s.lock = std::move(*lock);
  s.quiet = o.quiet;
  job::event(*dir, fmt::format("job '{}' restored from checkpoint {} in {} (pid {})", o.name, id,
                               format_duration(sys::now() - t0), restored->pid), o.quiet);
  return job::supervise(std::move(s));
}

}  // namespace

void add_restore_verb(CLI::App& app, Globals& g) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("restore", "Continue a job from its latest checkpoint");
  cmd->description(
      "Continue job NAME from its latest checkpoint (or --from ID), on this node or\n"
      "any other that sees the store.  Every byte of the checkpoint is verified\n"
      "first; a damaged checkpoint is refused and nothing is changed.  The job's\n"
      "output logs and the files it had open for writing are put back as they were\n"
      "at the checkpoint, so no output line appears twice.  cryo then supervises the\n"
      "job as 'cryo run' does and exits with its exit status.");
  cmd->add_option("name", o->name, "Job name")->required();
  cmd->add_option("--from", o->from, "Checkpoint ID to restore (default: the latest)");
  cmd->add_flag("--force", o->force, "Restore even a job that has finished");
  cmd->add_flag("--tee", o->tee, "Also copy the job's output to cryo's stdout and stderr");
  cmd->add_flag("--quiet,-q", o->quiet, "Print no event lines");
  cmd->callback([&g, o] { g_exit_code = restore(g, *o); });
}

}  // namespace cryo::cli
