// The supervisor of a multi-node job (the counterpart of job/supervisor.h
// for a job whose parts run on agents): it answers 'cryo status',
// 'cryo checkpoint' and 'cryo rsh' on the job's control socket, takes the
// --every and --checkpoint-on checkpoints, ends the job's parts on SIGTERM
// or SIGINT, records the job's state, and exits with the status of part
// 0's command (75 if the job was stopped at a checkpoint).  Checkpoints run
// in its own loop, one at a time: each is a handful of messages to the
// agents, which do the work.
#pragma once

#include "base/fd.h"
#include "coord/coordinator.h"
#include "job/config.h"
#include "store/store.h"

namespace cryo::coord {

struct Coordinated {
  store::JobDir* dir = nullptr;
  job::JobConfig config;
  job::JobState state;
  UniqueFd lock;
  bool quiet = false;
};

int supervise_coordinated(Coordinated s, Coordinator& c);

}  // namespace cryo::coord
