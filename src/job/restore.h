// Bringing a job back from a checkpoint: verify every byte, put back the
// job's output logs and written files as they were at the checkpoint, and
// have CRIU restore the tree as a child of this process, with fresh pipes
// in place of the old stdout and stderr.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "job/config.h"
#include "job/output.h"
#include "store/store.h"

namespace cryo::job {

struct RestoreRun {
  store::JobDir* dir = nullptr;
  const JobConfig* config = nullptr;
  std::string id;  // checkpoint to restore
  std::string criu_path;
  bool tee = false;
  store::ProgressFn progress;
};

struct Restored {
  pid_t pid = 0;  // host PID of the restored init
  std::vector<Output> outputs;
};

Result<Restored> restore_job(RestoreRun& run);

}  // namespace cryo::job
