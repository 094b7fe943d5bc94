// What cryo needs from Slurm: who the batch job is (its environment), when
// its time limit ends, requeueing it, and advice on the warning margin.
// Slurm's own commands (squeue, scontrol, sbatch) do the talking, so cryo
// works with whatever Slurm version and configuration the site runs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace cryo::slurm {

// A Slurm job as its environment describes it (read by config/settings.h).
struct Env {
  std::string job_id;     // SLURM_JOB_ID
  int restart_count = 0;  // SLURM_RESTART_COUNT: 0 in the first allocation, then 1, 2, ...
  std::string nodes;      // SLURM_JOB_NODELIST
  std::string job_name;   // SLURM_JOB_NAME
  bool batch = false;     // running in the batch script, not in an srun step
};

// When the job's time limit ends (seconds since the epoch), or 0 if it has none.
Result<double> end_time(const std::string& job_id);

// Why a job's processes got SIGTERM, from Slurm's view of the job: it may
// be preempted (still running, with a grace time), at its time limit, or
// cancelled by its user or an administrator.
enum class Ending { preempted, time_limit, cancelled };
Result<Ending> why_terminated(const std::string& job_id);

// The uid of the job's owner, as Slurm knows it.
Result<uint32_t> job_owner(const std::string& job_id);

// Puts the job back in the queue ('scontrol requeue').
Status requeue(const std::string& job_id);

// The --signal margin (seconds) that leaves room for the next checkpoint
// when the last one took `seconds`: twice as long (images grow), plus the
// requeue, rounded up to Slurm's 30-second limit check, at least 60.
int suggested_margin(double seconds);
// Whether `margin` seconds of warning leave too little room for the next
// checkpoint when the last one took `seconds`.
bool margin_too_short(double seconds, double margin);

// A batch shell runs cryo as its child.  With --signal=B:SIG, Slurm signals
// only the shell, which dies of it unless it handles the signal, and takes
// the whole job down.  Returns why that would happen (empty when safe).
std::string shell_hazard(int sig);

// The batch script 'cryo sbatch' submits.
struct BatchSpec {
  int margin = 0;                        // seconds of warning before the limit
  std::string signal = "USR1";
  std::vector<std::string> cryo_global_args;  // cryo's options before 'run'
  std::vector<std::string> cryo_args;         // 'cryo run' options
  std::vector<std::string> command;
  std::string cryo_path;                 // this cryo
};
std::string batch_script(const BatchSpec& spec);

}  // namespace cryo::slurm
