// The supervisor: the process that 'cryo run' and 'cryo restore' become.
// It stays outside the dumped tree and
//   - appends the job's output to its logs,
//   - answers 'cryo status' and 'cryo checkpoint' on the control socket,
//   - takes periodic and signal-triggered checkpoints,
//   - under Slurm, checkpoints and requeues the job when its allocation ends,
//   - forwards other signals to the job,
//   - records the job's state, and exits with the job's exit status.
// Each checkpoint runs in a forked worker (job/checkpoint.h): one dumps at a
// time, while earlier ones may still be flushing into the store.
#pragma once

#include <sys/types.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "job/config.h"
#include "job/events.h"
#include "job/output.h"
#include "slurm/slurm.h"
#include "store/staging.h"
#include "store/store.h"

namespace cryo::job {

// The exit status of cryo when the job was stopped at a checkpoint and can
// be continued with 'cryo restore' (EX_TEMPFAIL).
inline constexpr int kExitStopped = 75;

// Takes the job's lock, held by its supervisor for its whole life.  Fails
// if another supervisor holds it.
Result<UniqueFd> lock_job(const store::JobDir& dir);

struct Supervised {
  store::JobDir* dir = nullptr;
  JobConfig config;
  JobState state;  // as it starts: running, with pids filled in
  std::vector<Output> outputs;
  std::string criu_path;
  std::string criu_version;  // as probed when the supervisor started
  std::string init_path;     // the cryo-init the job runs (job/launch.h)
  store::FastTier tier;
  UniqueFd lock;
  bool quiet = false;  // no event lines on stderr
  // Inside a Slurm batch job: the checkpoint signal and SIGTERM mean the
  // allocation is ending, so cryo checkpoints, stops the job, requeues it
  // and exits 0; the next allocation restores.  Completion applies --keep.
  std::optional<slurm::Env> slurm;
};

// Runs until the job ends (or is stopped at a checkpoint); returns cryo's
// exit status.
int supervise(Supervised s);

// What every supervisor, this one and a multi-node job's
// (coord/supervise.cc), watches in its loop.
struct Watched {
  UniqueFd signals;            // signalfd
  UniqueFd control;            // the control socket, if it could be made
  UniqueFd timer;              // --every, if set
  int checkpoint_signal = 0;   // --checkpoint-on, 0 if none
  double next_checkpoint = 0;  // when the timer fires next, 0 if never
};
// Blocks `signals` and the job's --checkpoint-on signal and takes them
// through a signalfd, listens on the control socket (a warning in the
// event log if it cannot), starts the --every timer, and records this
// process as the job's supervisor in `state` (not saved).
Watched start_watching(const store::JobDir& dir, const JobConfig& c, std::initializer_list<int> signals,
                       JobState& state, bool quiet);


}  // namespace cryo::job
