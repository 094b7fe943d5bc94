// The use cases' context: the settings and the global options over them,
// resolved to what the machinery takes (the store, CRIU, the fast tier),
// and what every use case does first (find a job, commit what a killed
// flush left).  The CLI builds one per command; nothing here prints but
// the job's event lines (job/events.h).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "config/settings.h"
#include "job/config.h"
#include "store/staging.h"
#include "store/store.h"

namespace cryo::app {

struct Context {
  config::Settings settings;
  std::string store;  // --store, else settings.store
  std::string criu;   // --criu, else settings.criu, else criu::default_path()
  std::string fast_tier, fast_tier_size;  // --fast-tier, --fast-tier-size; "" = as the settings say
  // A supervisor that the service started for a user (base/identity.h):
  // the environment her command gets, which is not this process's.
  std::optional<std::vector<std::string>> job_env;

  std::string store_root() const;
  std::string criu_path() const;
  Result<store::FastTier> tier() const;
};

// CRIU checkpoints and restores processes only as root: an error that says
// so unless cryo runs as root (a user's run and restore go through cryo's
// service before they get here: src/service/).
Status need_root(const std::string& verb);
// Opens an existing job that the caller may use.
Result<store::JobDir> open_job(const Context& ctx, const std::string& name);
// A job without a supervisor may hold a dump whose flush was killed:
// commit it now, so that what the caller reads next includes it.  With a
// supervisor, its next checkpoint does that.
void recover(const Context& ctx, const store::JobDir& dir, const store::ProgressFn& progress = {});
// Commits the dumps whose flush was killed; the caller holds the job's
// lock.  A failure is a warning in the job's events: the checkpoints
// before stay as they are.
void commit_pending(const store::JobDir& dir, const store::FastTier& tier, int keep, bool quiet,
                    const store::ProgressFn& progress = {});
// Frees what this node's fast tier holds for nothing (store::sweep_fast_tier):
// a durable copy stays only while its job runs on this node, or is stopped
// here outside Slurm (a restore here reads it).  Cheap enough for every
// verb to run.  Returns the copies freed.
std::vector<store::FastCopy> tidy_fast_tier(const Context& ctx);
// Container engines find CRIU as 'criu' in PATH: put cryo's first.
void prepare_engine_environment(const Context& ctx);
// A multi-node job under Slurm: its agents, started with srun on every node
// of the allocation (the job's agents directory).  Fills c.nodes with
// their addresses; returns srun's pid.
Result<pid_t> start_job_agents(const Context& ctx, const store::JobDir& dir, job::JobConfig& c);

}  // namespace cryo::app
