// Bringing a job back from a checkpoint: lay out its files from the fast
// copy or the store with every byte verified (store/reader.h), put back the
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
#include "store/staging.h"
#include "store/store.h"

namespace cryo::job {

struct RestoreRun {
  store::JobDir* dir = nullptr;
  const JobConfig* config = nullptr;
  std::string id;  // checkpoint to restore
  std::string criu_path;
  store::FastTier tier;
  bool prefer_fast = true;  // read a fast copy of the checkpoint if there is a sound one
  bool tee = false;
  store::ProgressFn progress;
};

struct Restored {
  pid_t pid = 0;  // host PID of the restored init
  std::vector<Output> outputs;
  std::string source;   // "fast copy" or "store"
  std::string warning;  // a fast copy refused, and why
  std::string criu_version;
};

Result<Restored> restore_job(RestoreRun& run);

}  // namespace cryo::job
