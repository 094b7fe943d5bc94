// cryo ls: the jobs in the store.
#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "cli/common.h"
#include "cli/describe.h"

namespace cryo::cli {

namespace {

int ls(const Globals& g, bool json) {
  auto names = store::list_jobs(g.store_root());
  if (!names) return fail(names.error());
  auto tier = g.tier();
  if (!tier) return fail(tier.error());
  nlohmann::json all = nlohmann::json::array();
  for (const auto& n : *names) {
    store::JobDir dir(g.store_root(), n);
    if (!dir.check_access()) continue;  // other users' jobs
    recover_with_progress(g, dir);
    all.push_back(describe_job(dir, *tier, false));
  }
  if (json) {
    print_json(all);
    return 0;
  }
  if (all.empty()) {
    std::printf("no jobs in %s\n", g.store_root().c_str());
    return 0;
  }
  std::printf("%-20s %-10s %-6s %-8s %-10s %-12s %s\n", "NAME", "STATE", "CKPTS", "LATEST", "SIZE", "SLURM", "COMMAND");
  for (const auto& j : all) {
    std::string cmd;
    for (const auto& a : j["command"]) cmd += (cmd.empty() ? "" : " ") + a.get<std::string>();
    // A Slurm job shows its job id and how many times it was requeued.
    std::string slurm = j.contains("slurm_job_id")
                            ? fmt::format("{} r{}", j["slurm_job_id"].get<std::string>(), j.value("slurm_restarts", 0))
                            : "-";
    std::printf("%-20s %-10s %-6zu %-8s %-10s %-12s %s\n", j["name"].get<std::string>().c_str(),
                j["state"].get<std::string>().c_str(), j["checkpoints"].size(),
                j["latest"].is_null() ? "-" : j["latest"].get<std::string>().c_str(),
                format_bytes(j["bytes"].get<double>()).c_str(), slurm.c_str(), cmd.c_str());
  }
  return 0;
}

}  // namespace

void add_ls_verb(CLI::App& app, Globals& g) {
  auto json = std::make_shared<bool>(false);
  auto* cmd = add_verb(app, "ls", "List the jobs in the store");
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([&g, json] {
    g_json_errors = *json;
    g_exit_code = ls(g, *json);
  });
}

}  // namespace cryo::cli
