// Taking one checkpoint of a running job.  This runs in a worker process
// forked by the supervisor, so that a crash or kill of the worker (or of
// CRIU) never takes the supervisor or the job down with it.
//
// Sequence:
//   1. begin a pending checkpoint in the store
//   2. CRIU dumps the tree, leaving it running
//   3. at CRIU's post-dump notification, while the job is still frozen:
//      drain the output pipes into the logs and record the logs' sizes,
//      copy the files the job has open for writing, then let the
//      supervisor resume reading output (resume_fd; not with --stop)
//   4. checksum, sync and commit (store::JobDir::commit)
//   5. with --stop, kill the job only now that the checkpoint is durable
//   6. apply retention
// A failure before 4 completes leaves "latest" and every earlier
// checkpoint as they were, and the job running.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "control.pb.h"
#include "job/config.h"
#include "job/output.h"
#include "store/store.h"

namespace cryo::job {

struct CheckpointRun {
  store::JobDir* dir = nullptr;
  const JobConfig* config = nullptr;
  pid_t job_pid = 0;
  std::vector<Output*> outputs;
  std::string criu_path;
  bool stop = false;
  bool tcp_established = false;
  int client_fd = -1;  // progress goes here, if >= 0
  int resume_fd = -1;  // written to (then closed) once output may flow again
};

Result<control::CheckpointDone> take_checkpoint(CheckpointRun& run);

}  // namespace cryo::job
