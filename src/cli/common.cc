#include "cli/common.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "coord/agent.h"
#include "criu/client.h"
#include "job/checkpoint.h"
#include "job/supervisor.h"

namespace cryo::cli {

int g_exit_code = 0;
bool g_json_errors = false;

std::string Globals::store_root() const { return store.empty() ? settings.store : store; }
std::string Globals::criu_path() const {
  if (!criu.empty()) return criu;
  return settings.criu.empty() ? criu::default_path() : settings.criu;
}
Result<store::FastTier> Globals::tier() const {
  return store::FastTier::configure(fast_tier.empty() ? settings.fast_tier : fast_tier,
                                    fast_tier_size.empty() ? settings.fast_tier_size : fast_tier_size);
}

int fail(const Error& e) {
  std::string s = "cryo: error: " + e.message + "\n";
  if (!e.hint.empty()) s += "cryo: hint: " + e.hint + "\n";
  std::fputs(s.c_str(), stderr);
  ErrorKind kind = kind_of(e);
  if (g_json_errors) {
    nlohmann::json j = {{"error", e.message}, {"kind", kind_name(kind)}};
    if (!e.hint.empty()) j["hint"] = e.hint;
    print_json(j);
  }
  return exit_status(kind);
}

int exit_status(ErrorKind kind) { return kind == ErrorKind::config ? kExitConfig : kExitError; }

Status need_root(const std::string& verb) {
  if (::geteuid() == 0) return {};
  return make_error(ErrorKind::denied, "'cryo " + verb + "' needs root: CRIU, which checkpoints and restores the job, runs as root")
      .with_hint("run it as root, for example 'sudo cryo " + verb +
                 " ...'; under Slurm, through a sudo rule for cryo (docs/slurm.md)");
}

Result<store::JobDir> open_job(const Globals& g, const std::string& name) {
  CRYO_TRY(store::validate_job_name(name));
  store::JobDir dir(g.store_root(), name);
  CRYO_TRY(dir.check_access());
  return dir;
}

void recover(const Globals& g, const store::JobDir& dir) {
  auto tier = g.tier();
  if (!tier) return;
  auto staged = store::list_staged(dir, *tier);
  if (!staged) return;
  bool pending = false;
  for (const auto& s : *staged) pending |= !sys::exists(dir.manifest_path(s.id));
  if (!pending) return;
  auto lock = job::lock_job(dir);  // no supervisor, and none starts meanwhile
  if (!lock) return;
  auto config = job::load_config(dir);
  commit_pending(dir, *tier, config ? config->keep : 0, false);
}

void commit_pending(const store::JobDir& dir, const store::FastTier& tier, int keep, bool quiet) {
  Progress progress;
  auto st = job::flush_pending(dir, tier, keep, quiet,
                               [&](const std::string& phase, uint64_t d, uint64_t t) { progress.update(phase, d, t); });
  progress.finish();
  if (!st) std::fprintf(stderr, "cryo: warning: %s, ignoring\n", st.error().message.c_str());
}

void prepare_engine_environment(const Globals& g) {
  std::string criu = g.criu_path();
  if (criu.find('/') == std::string::npos) return;
  std::string dir = criu.substr(0, criu.rfind('/'));
  std::string p = g.settings.get("PATH");
  if (p.empty()) p = "/usr/sbin:/usr/bin:/sbin:/bin";
  if (p.rfind(dir + ":", 0) != 0) ::setenv("PATH", (dir + ":" + p).c_str(), 1);
}

Result<pid_t> start_job_agents(const Globals& g, const store::JobDir& dir, job::JobConfig& c) {
  int nodes = g.settings.slurm_nodes;
  if (nodes < 1) return make_error("--agents slurm needs a Slurm batch job (SLURM_JOB_NUM_NODES is not set)");
  auto agents = coord::start_slurm_agents(sys::self_dir() + "/cryo", {"--criu", g.criu_path()}, dir.file(store::JobFile::agents),
                                          nodes, 60);
  if (!agents) return agents.error();
  c.nodes = agents->addresses;
  CRYO_TRY(job::save_config(dir, c));
  return agents->srun;
}

void print_json(const nlohmann::json& j) { std::printf("%s\n", j.dump(2).c_str()); }

Progress::Progress() : tty_(::isatty(STDERR_FILENO)) {}

void Progress::update(const std::string& phase, uint64_t done, uint64_t total) {
  if (!tty_) return;
  double now = sys::now();
  if (now - last_ < 0.1 && done < total) return;
  last_ = now;
  std::string line = total > 0 ? fmt::format("  {:<13} {:>10} / {:<10} {:3.0f}%", phase, format_bytes(static_cast<double>(done)),
                                             format_bytes(static_cast<double>(total)), 100.0 * static_cast<double>(std::min(done, total)) / static_cast<double>(total))
                               : fmt::format("  {:<13} {:>10}", phase, format_bytes(static_cast<double>(done)));
  std::fprintf(stderr, "\r%-60s", line.c_str());
  std::fflush(stderr);
  shown_ = true;
}

void Progress::finish() {
  if (shown_) std::fprintf(stderr, "\r%-60s\r", "");
  shown_ = false;
}

}  // namespace cryo::cli
