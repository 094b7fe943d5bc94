// cryo status: one job in detail.
#include <algorithm>

#include <fmt/format.h>

#include "base/duration.h"
#include "base/sys.h"
#include "cli/common.h"
#include "cli/describe.h"
#include "job/config.h"
#include "job/control.h"
#include "store/flush.h"

namespace cryo::cli {

nlohmann::json describe_job(const store::JobDir& dir, const store::FastTier& tier, bool detailed) {
  nlohmann::json j;
  j["name"] = dir.name();
  j["path"] = dir.path();
  auto c = job::load_config(dir);
  if (c) {
    j["command"] = c->command;
    j["cwd"] = c->cwd;
    j["created"] = c->created;
    j["every"] = c->every;
    j["keep"] = c->keep;
    if (!c->slurm_job_id.empty()) j["slurm_job_id"] = c->slurm_job_id;
  } else {
    j["command"] = nlohmann::json::array();
    j["error"] = c.error().message;
  }
  auto st = job::load_state(dir);
  std::string state = st ? job::state_name(st->state) : "unknown";
  // "running" in state.json is a claim; the control socket proves it.
  auto conn = job::control_connect(dir.path());
  if (st && st->state == job::State::running && !conn) state = st->host == sys::hostname() ? "lost" : "running";
  if (st) {
    j["host"] = st->host;
    j["supervisor_pid"] = st->supervisor_pid;
    j["job_pid"] = st->job_pid;
    j["since"] = st->since;
    j["restores"] = st->restores;
    if (st->exit_code >= 0) j["exit_code"] = st->exit_code;
    if (!st->message.empty()) j["message"] = st->message;
    if (!st->restored_from.empty()) j["restored_from"] = st->restored_from;
    if (!st->allocations.empty()) {
      nlohmann::json allocs = nlohmann::json::array();
      for (const auto& a : st->allocations) {
        nlohmann::json e = {{"job_id", a.job_id}, {"restart", a.restart}, {"nodes", a.nodes}, {"host", a.host}, {"start", a.start},
                            {"outcome", a.outcome}};
        if (a.end > 0) e["end"] = a.end;
        if (!a.restored_from.empty()) e["restored_from"] = a.restored_from;
        if (a.checkpoint_seconds > 0) e["checkpoint_seconds"] = a.checkpoint_seconds;
        if (a.margin_seconds > 0) e["margin_seconds"] = a.margin_seconds;
        allocs.push_back(e);
      }
      j["allocations"] = allocs;
      j["slurm_restarts"] = st->allocations.back().restart;
    }
  }
  if (detailed && conn) {
    control::Request req;
    req.set_version(job::kControlVersion);
    req.mutable_status();
    control::Reply r;
    if (job::send_message(conn->get(), req) && job::recv_message(conn->get(), r) && r.has_status()) {
      state = r.status().state();
      j["rss_bytes"] = r.status().rss_bytes();
      j["flushing"] = r.status().flushing();
      if (r.status().has_next_checkpoint()) j["next_checkpoint"] = r.status().next_checkpoint();
    }
  }
  j["state"] = state;
  auto latest = dir.latest_id();
  j["latest"] = latest && !latest->empty() ? nlohmann::json(*latest) : nlohmann::json(nullptr);
  // Dumps not yet committed, and fast copies of committed ones on this node.
  std::vector<store::Staged> staged;
  if (auto s = store::list_staged(dir, tier)) staged = *s;
  auto flush = store::flush_state(dir);
  nlohmann::json cks = nlohmann::json::array();
  double bytes = 0;
  if (auto ids = dir.checkpoint_ids()) {
    for (const auto& id : *ids) {
      nlohmann::json e = {{"id", id}};
      if (auto m = dir.load_manifest(id)) {
        e["created"] = m->created;
        e["bytes"] = m->total_bytes;
        e["stored_bytes"] = m->stored_bytes;
        e["frozen_seconds"] = m->frozen_seconds;
        e["durable_seconds"] = m->durable_seconds;
        e["host"] = m->host;
        e["criu_version"] = m->criu_version;
        e["fast_copy"] = std::any_of(staged.begin(), staged.end(), [&](const auto& s) { return s.fast && s.id == id; });
        bytes += static_cast<double>(m->stored_bytes);
      } else {
        e["error"] = m.error().message;
      }
      cks.push_back(e);
    }
  }
  nlohmann::json pending = nlohmann::json::array();
  for (const auto& s : staged) {
    if (sys::exists(dir.manifest_path(s.id))) continue;
    nlohmann::json e = {{"id", s.id}, {"tier", s.fast ? "fast" : "store"}, {"flushing", flush.running && flush.id == s.id}};
    if (flush.running && flush.id == s.id) {
      e["done"] = flush.done;
      e["total"] = flush.total;
    }
    pending.push_back(e);
  }
  j["checkpoints"] = cks;
  j["pending"] = pending;
  j["bytes"] = bytes;
  j["store_bytes"] = dir.stored_bytes();
  j["stdout"] = dir.output_log("stdout");
  j["stderr"] = dir.output_log("stderr");
  return j;
}

namespace {

int status(const Globals& g, const std::string& name, bool json) {
  auto dir = open_job(g, name);
  if (!dir) return fail(dir.error());
  auto tier = g.tier();
  if (!tier) return fail(tier.error());
  recover_with_progress(g, *dir);
  auto j = describe_job(*dir, *tier, true);
  if (json) {
    print_json(j);
    return 0;
  }
  std::string cmd;
  for (const auto& a : j["command"]) cmd += (cmd.empty() ? "" : " ") + a.get<std::string>();
  std::string state = j["state"];
  std::printf("job:       %s\n", name.c_str());
  std::printf("command:   %s\n", cmd.c_str());
  std::printf("directory: %s\n", j.value("cwd", "").c_str());
  std::printf("state:     %s", state.c_str());
  if (state == "running" || state == "checkpointing" || state == "stopping")
    std::printf(" on %s (job pid %d, supervisor pid %d)", j.value("host", "").c_str(), j.value("job_pid", 0), j.value("supervisor_pid", 0));
  if (j.contains("exit_code")) std::printf(", exit status %d", j["exit_code"].get<int>());
  if (j.contains("message")) std::printf(" (%s)", j["message"].get<std::string>().c_str());
  if (state == "lost") std::printf(" (its supervisor is gone; 'cryo restore %s' continues it)", name.c_str());
  std::printf("\n");
  if (j.contains("rss_bytes")) std::printf("memory:    %s\n", format_bytes(j["rss_bytes"].get<double>()).c_str());
  if (j.contains("restores") && j["restores"].get<int>() > 0)
    std::printf("restored:  %d time(s), last from checkpoint %s\n", j["restores"].get<int>(), j.value("restored_from", "").c_str());
  if (j.value("every", 0.0) > 0) {
    std::printf("periodic:  every %s", format_duration(j["every"].get<double>()).c_str());
    if (j.contains("next_checkpoint")) std::printf(", next in %s", format_duration(j["next_checkpoint"].get<double>() - sys::now()).c_str());
    std::printf("\n");
  }
  if (j.value("keep", 0) > 0) std::printf("retention: keep %d\n", j["keep"].get<int>());
  if (j.contains("slurm_job_id")) {
    std::printf("slurm:     job %s, restart count %d\n", j["slurm_job_id"].get<std::string>().c_str(),
                j.value("slurm_restarts", 0));
    for (const auto& a : j.value("allocations", nlohmann::json::array())) {
      double start = a["start"].get<double>();
      std::string took = a.contains("end") ? format_duration(a["end"].get<double>() - start) : "running";
      std::printf("  job %s restart %-3d %s  %-9s on %-10s %s", a["job_id"].get<std::string>().c_str(),
                  a["restart"].get<int>(), sys::iso_time(start).c_str(),
                  took.c_str(), a["nodes"].get<std::string>().c_str(), a["outcome"].get<std::string>().c_str());
      if (a.contains("checkpoint_seconds"))
        std::printf(" (checkpoint %s", format_duration(a["checkpoint_seconds"].get<double>()).c_str());
      if (a.contains("checkpoint_seconds") && a.contains("margin_seconds"))
        std::printf(" of a %s margin", format_duration(a["margin_seconds"].get<double>()).c_str());
      if (a.contains("checkpoint_seconds")) std::printf(")");
      std::printf("\n");
    }
  }
  std::printf("output:    %s\n           %s\n", j["stdout"].get<std::string>().c_str(), j["stderr"].get<std::string>().c_str());
  std::printf("checkpoints (%zu, %s in the store):\n", j["checkpoints"].size(),
              format_bytes(j["store_bytes"].get<double>()).c_str());
  if (!j["checkpoints"].empty())
    std::printf("  %-4s  %-24s  %10s  %10s  %-8s  %-8s  %s\n", "ID", "TAKEN", "SIZE", "STORED", "FROZEN", "DURABLE", "HOST");
  for (const auto& c : j["checkpoints"]) {
    if (c.contains("error")) {
      std::printf("  %s  damaged: %s\n", c["id"].get<std::string>().c_str(), c["error"].get<std::string>().c_str());
      continue;
    }
    std::string notes;
    if (j["latest"] == c["id"]) notes += "  latest";
    if (c.value("fast_copy", false)) notes += "  fast copy here";
    std::printf("  %-4s  %-24s  %10s  %10s  %-8s  %-8s  %s%s\n", c["id"].get<std::string>().c_str(),
                sys::iso_time(c["created"].get<double>()).c_str(), format_bytes(c["bytes"].get<double>()).c_str(),
                format_bytes(c["stored_bytes"].get<double>()).c_str(),
                format_duration(c["frozen_seconds"].get<double>()).c_str(),
                format_duration(c["durable_seconds"].get<double>()).c_str(), c["host"].get<std::string>().c_str(),
                notes.c_str());
  }
  for (const auto& p : j["pending"]) {
    std::string where = p["tier"] == "fast" ? "in the fast tier" : "in the store's staging";
    if (p["flushing"].get<bool>()) {
      double total = p["total"].get<double>();
      std::printf("  %-4s  being flushed to the store: %s of %s (%.0f%%), %s\n", p["id"].get<std::string>().c_str(),
                  format_bytes(p["done"].get<double>()).c_str(), format_bytes(total).c_str(),
                  total > 0 ? 100.0 * p["done"].get<double>() / total : 0.0, where.c_str());
    } else {
      std::printf("  %-4s  dumped %s, waiting to be flushed to the store\n", p["id"].get<std::string>().c_str(),
                  where.c_str());
    }
  }
  return 0;
}

}  // namespace

void add_status_verb(CLI::App& app, Globals& g) {
  auto name = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* cmd = add_verb(app, "status", "Show a job's state and checkpoints");
  cmd->add_option("name", *name, "Job name")->required()->type_name("NAME");
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([&g, name, json] {
    g_json_errors = *json;
    g_exit_code = status(g, *name, *json);
  });
}

}  // namespace cryo::cli
