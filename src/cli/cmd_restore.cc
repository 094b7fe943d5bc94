// cryo restore: continue a job from a checkpoint, and supervise it; or
// (--dry-run) say whether that would work on this node.
#include <fmt/format.h>

#include "app/jobs.h"
#include "cli/common.h"

namespace cryo::cli {

namespace {

int dry_run(const Globals& g, const app::ContinueRequest& o, bool json) {
  if (json) g_json_errors = true;
  auto r = app::check_restore(g, o);
  if (!r) return fail(r.error());
  if (json) {
    nlohmann::json checks = nlohmann::json::array();
    for (const auto& c : r->checks) checks.push_back(job::to_json(c));
    print_json({{"job", r->job}, {"checkpoint", r->id}, {"ok", r->ok()}, {"checks", checks}});
  } else {
    std::printf("checkpoint %s of job '%s', restored now:\n", r->id.c_str(), r->job.c_str());
    for (const auto& c : r->checks) {
      std::printf("  %-4s  %-9s %s\n", job::verdict_name(c.verdict), c.name.c_str(), c.detail.c_str());
      if (!c.fix.empty()) std::printf("                  fix: %s\n", c.fix.c_str());
    }
    std::printf("%s\n", r->ok() ? "the restore would pass these checks" : "the restore would be refused");
  }
  return r->ok() ? 0 : kExitError;
}

}  // namespace

void add_restore_verb(CLI::App& app, Globals& g) {
  auto o = std::make_shared<app::ContinueRequest>();
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
      "'cryo run --help'); a batch script 'exec cryo restore NAME' restarts a job by hand.\n"
      "\n"
      "Before anything on the node changes, the restore checks that this node can run\n"
      "the checkpoint: its CPU has the instruction sets of the one the job started on,\n"
      "the kernel and CRIU are not older than the checkpoint's, every file and\n"
      "library the job had open or mapped is there unchanged (size, ELF build-ID),\n"
      "its mount points exist, and the memory is free.  It refuses, saying which and\n"
      "how to fix it, rather than fail inside CRIU.  --dry-run runs only these checks\n"
      "(and whether the job is running, and the checkpoint's signature), prints each\n"
      "as pass, warn or fail with its fix, and exits 1 if the restore would be refused.\n"
      "A multi-node job's parts are checked by their agents (--agents, or those it ran on).");
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
  auto dry = std::make_shared<std::pair<bool, bool>>();
  cmd->add_flag("--dry-run", dry->first, "Only check whether the restore would work on this node; change nothing");
  cmd->add_flag("--json", dry->second, "With --dry-run: print the checks as JSON");
  cmd->callback([&g, o, dry] {
    if (dry->first || dry->second) {
      if (!dry->first) {
        g_exit_code = fail(make_error(ErrorKind::usage, "--json goes with --dry-run").with_hint("add --dry-run"));
        return;
      }
      g_exit_code = dry_run(g, *o, dry->second);
      return;
    }
    Progress progress;
    o->progress = progress.fn();
    auto code = app::continue_job(g, *o);
    progress.finish();
    g_exit_code = code ? *code : fail(code.error());
  });
}

}  // namespace cryo::cli
