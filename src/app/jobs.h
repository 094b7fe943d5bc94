// The use cases of a job's life: start it, continue it from a checkpoint
// (restore, or the next allocation of a requeued Slurm job), ask its
// supervisor for a checkpoint.  The CLI parses into these requests, calls,
// and prints what comes back; the machinery is below (job/, coord/).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "app/context.h"
#include "base/result.h"
#include "control.pb.h"
#include "job/preflight.h"
#include "slurm/slurm.h"
#include "store/store.h"

namespace cryo::app {

// The options that describe a job, shared by 'cryo run' and 'cryo sbatch'
// (which passes them on to the 'cryo run' of its batch script).
struct JobOptions {
  std::string name;
  std::string every;
  int keep = -1;  // -1: not given
  bool tcp_established = false;
  std::string net;  // "" = host
  std::string ipc;  // "" = private
  std::string mpi = "auto";
  std::string podman, docker, apptainer;  // the image, in that engine
  std::vector<std::string> engine_options;
  std::vector<std::string> nodes;  // a multi-node job's agents, or {"slurm"}
  std::string part_net = "192.0.2.0/24";
  std::string bridge = "cryo0";
};

struct StartRequest : JobOptions {
  std::string checkpoint_on;
  bool tee = false;
  bool quiet = false;
  bool no_slurm = false;
  std::vector<std::string> command;
  store::ProgressFn progress;  // committing what an earlier allocation left
};

// Starts a job (or, in the next allocation of a requeued Slurm job,
// continues it) and supervises it until it ends; returns cryo's exit
// status.  A command that cannot be executed is an error of kind exec.
Result<int> start_job(const Context& ctx, StartRequest r);

struct ContinueRequest {
  std::string name;
  std::string from;  // a checkpoint id, "" = the latest
  bool force = false;    // even a job that finished
  bool durable = false;  // from the store, not this node's fast copy
  std::vector<std::string> nodes;  // a multi-node job's agents, part k on the k-th ("" = as before)
  bool tee = false;
  bool quiet = false;
  bool no_slurm = false;
  store::ProgressFn progress;
};

// Restores a job from a checkpoint and supervises it until it ends;
// returns cryo's exit status.
Result<int> continue_job(const Context& ctx, const ContinueRequest& r);

// Would continue_job(r) work on this node?  Changes nothing.  The checks
// (job/preflight.h) after two of its own: "job" (the job is not running,
// nor finished without r.force) and "key" (the checkpoint's signature
// verifies with this node's key).  The error: no such job or checkpoint.
struct RestoreCheck {
  std::string job, id;
  std::vector<job::Check> checks;
  bool ok() const;
};
Result<RestoreCheck> check_restore(const Context& ctx, const ContinueRequest& r);

struct CheckpointRequest {
  std::string name;
  bool stop = false;  // stop the job once the checkpoint is durable
  bool tcp = false;   // its established TCP connections too
  bool wait = false;  // answer once durable, not once dumped
  store::ProgressFn progress;
};

// Asks the job's supervisor for a checkpoint and waits for its answer.
// With stop, returns once the job's supervisor has let go of it, so that
// a restore straight after finds the job free.
Result<control::CheckpointDone> request_checkpoint(const Context& ctx, const CheckpointRequest& r);

}  // namespace cryo::app
