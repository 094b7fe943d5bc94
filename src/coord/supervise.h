// The supervisor of a multi-node job (the counterpart of job/supervisor.h
// for a job whose parts run on agents): it answers 'cryo status',
// 'cryo checkpoint' and 'cryo rsh' on the job's control socket, takes the
// --every and --checkpoint-on checkpoints, ends the job's parts on SIGTERM
// or SIGINT, records the job's state, and exits with the status of part
// 0's command (75 if the job was stopped at a checkpoint).  Under Slurm it
// takes the end of an allocation as job/supervisor.h does: a stop
// checkpoint of every part, 'scontrol requeue', exit 0.  Checkpoints run
// in its own loop, one at a time: each is a handful of messages to the
// agents, which do the work.
#pragma once

#include "base/fd.h"
#include "coord/coordinator.h"
#include <optional>

#include "job/config.h"
#include "slurm/slurm.h"
#include "store/store.h"

namespace cryo::coord {

struct Coordinated {
  store::JobDir* dir = nullptr;
  job::JobConfig config;
  job::JobState state;
  UniqueFd lock;
  bool quiet = false;
  // Inside a Slurm batch job: the warning signal and SIGTERM (but a
  // cancel's) mean the allocation ends: a stop checkpoint, then requeue.
  std::optional<slurm::Env> slurm;
  pid_t srun = -1;  // the agents' srun, ended at the end
};

int supervise_coordinated(Coordinated s, Coordinator& c);

}  // namespace cryo::coord
