// cryo restore: continue a job from a checkpoint, and supervise it.
#include "app/jobs.h"
#include "cli/common.h"

namespace cryo::cli {

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
  cmd->callback([&g, o] {
    Progress progress;
    o->progress = progress.fn();
    auto code = app::continue_job(g, *o);
    progress.finish();
    g_exit_code = code ? *code : fail(code.error());
  });
}

}  // namespace cryo::cli
