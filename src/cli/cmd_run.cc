// cryo run: start a job under supervision.
#include "app/jobs.h"
#include "cli/common.h"
#include "cli/job_options.h"

namespace cryo::cli {

void add_run_verb(CLI::App& app, Globals& g) {
  auto o = std::make_shared<app::StartRequest>();
  auto* cmd = add_verb(app, "run", "Start a job under cryo's supervision",
      "Start COMMAND as a checkpointable job and supervise it until it ends.\n\n"
      "The job runs in its own PID namespace under a small init, in its own session,\n"
      "so that a restore never collides with PIDs in use, and in its own mount\n"
      "namespace: the node's mounts, but its own /proc and (unless --ipc host) its\n"
      "own /dev/shm and /dev/mqueue.  Its stdout and stderr go to\n"
      "STORE/NAME/stdout.log and stderr.log.  cryo stays in the foreground and exits\n"
      "with the job's exit status (75 if the job was stopped at a checkpoint).\n"
      "Signals sent to cryo (TERM, INT, HUP, USR1, ...) are forwarded to the job,\n"
      "except the --checkpoint-on signal.\n\n"
      "An MPI job (COMMAND is Open MPI's mpirun or MPICH's mpiexec, or --mpi) gets\n"
      "private network and IPC namespaces, --tcp-established, and its own MPI\n"
      "session directory, so that all its ranks checkpoint and restore as one and\n"
      "two MPI jobs never collide.  See docs/mpi.md.\n\n"
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
  cmd->callback([&g, o] {
    Progress progress;
    o->progress = progress.fn();
    auto code = app::start_job(g, *o);
    progress.finish();
    g_exit_code = code ? *code : fail(code.error());
  });
}

}  // namespace cryo::cli
