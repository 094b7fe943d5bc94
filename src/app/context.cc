#include "app/context.h"

#include <unistd.h>

#include <cstdlib>

#include "base/sys.h"
#include "coord/agent.h"
#include "criu/client.h"
#include "job/checkpoint.h"
#include "job/events.h"
#include "job/supervisor.h"

namespace cryo::app {

std::string Context::store_root() const { return store.empty() ? settings.store : store; }

std::string Context::criu_path() const {
  if (!criu.empty()) return criu;
  return settings.criu.empty() ? criu::default_path() : settings.criu;
}

Result<store::FastTier> Context::tier() const {
  return store::FastTier::configure(fast_tier.empty() ? settings.fast_tier : fast_tier,
                                    fast_tier_size.empty() ? settings.fast_tier_size : fast_tier_size);
}

Status need_root(const std::string& verb) {
  if (::geteuid() == 0) return {};
  return make_error(ErrorKind::denied,
                    "'cryo " + verb + "' needs root: CRIU, which checkpoints and restores the job, runs as root")
      .with_hint("an admin runs it as root; users run and restore their jobs through cryo's service, which "
                 "'cryo run' and 'cryo restore' use by themselves (docs/admin.md)");
}

std::vector<store::FastCopy> tidy_fast_tier(const Context& ctx) {
  auto tier = ctx.tier();
  if (!tier) return {};
  std::string host = sys::hostname();
  return store::sweep_fast_tier(*tier, [&](const std::string& store_job_dir) {
    auto slash = store_job_dir.rfind('/');
    store::JobDir dir(store_job_dir.substr(0, slash), store_job_dir.substr(slash + 1));
    // No state (a multi-node job's part), or one that does not read: cannot tell.
    if (!sys::exists(dir.file(store::JobFile::state))) return true;
    auto st = job::load_state(dir);
    if (!st) return true;
    if (st->host != host) return false;  // it went on elsewhere
    if (st->state == job::State::running) return sys::pid_alive(st->supervisor_pid);
    if (st->state != job::State::stopped) return false;
    auto c = job::load_config(dir);
    return c && c->slurm_job_id.empty();  // under Slurm the next allocation may be anywhere
  });
}

Result<store::JobDir> open_job(const Context& ctx, const std::string& name) {
  CRYO_TRY(store::validate_job_name(name));
  store::JobDir dir(ctx.store_root(), name);
  CRYO_TRY(dir.check_access());
  return dir;
}

void recover(const Context& ctx, const store::JobDir& dir, const store::ProgressFn& progress) {
  auto tier = ctx.tier();
  if (!tier) return;
  auto staged = store::list_staged(dir, *tier);
  if (!staged) return;
  bool pending = false;
  for (const auto& s : *staged) pending |= !sys::exists(dir.manifest_path(s.id));
  if (!pending) return;
  auto lock = job::lock_job(dir);  // no supervisor, and none starts meanwhile
  if (!lock) return;
  auto config = job::load_config(dir);
  commit_pending(dir, *tier, config ? config->keep : 0, false, progress);
}

void commit_pending(const store::JobDir& dir, const store::FastTier& tier, int keep, bool quiet,
                    const store::ProgressFn& progress) {
  if (auto st = job::flush_pending(dir, tier, keep, quiet, progress); !st)
    job::event(dir, "warning: " + st.error().message + ", ignoring", quiet);
}

void prepare_engine_environment(const Context& ctx) {
  std::string criu = ctx.criu_path();
  if (criu.find('/') == std::string::npos) return;
  std::string dir = criu.substr(0, criu.rfind('/'));
  std::string p = ctx.settings.get("PATH");
  if (p.empty()) p = "/usr/sbin:/usr/bin:/sbin:/bin";
  if (p.rfind(dir + ":", 0) == 0) return;
  ::setenv("PATH", (dir + ":" + p).c_str(), 1);
  sys::set_search_path(dir + ":" + p);
}

Result<pid_t> start_job_agents(const Context& ctx, const store::JobDir& dir, job::JobConfig& c) {
  int nodes = ctx.settings.slurm_nodes;
  if (nodes < 1) return make_error("--agents slurm needs a Slurm batch job (SLURM_JOB_NUM_NODES is not set)");
  auto agents = coord::start_slurm_agents(sys::self_dir() + "/cryo", {"--criu", ctx.criu_path()},
                                          dir.file(store::JobFile::agents), nodes, 60);
  if (!agents) return agents.error();
  c.nodes = agents->addresses;
  CRYO_TRY(job::save_config(dir, c));
  return agents->srun;
}

}  // namespace cryo::app
