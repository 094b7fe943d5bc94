// Bringing a job back from a checkpoint: lay out its files from the fast
// copy or the store with every byte verified (store/reader.h), put back the
// job's output logs and written files as they were at the checkpoint, and
// have CRIU restore the tree as a child of this process, with fresh pipes
// in place of the old stdout and stderr.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "criu/client.h"
#include "job/config.h"
#include "job/output.h"
#include "job/record.h"
#include "store/reader.h"
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
  std::string init_path;  // the cryo-init it runs
};

Result<Restored> restore_job(RestoreRun& run);

// The building blocks restore_job shares with a multi-node part's restore
// (coord/part.cc).

// The job's stdout and stderr as the checkpoint recorded them
// (job_state.outputs), made ready for a restore: with `pipes`, a new pipe
// for each, whose write end CRIU gives the restored tree in place of the
// old one; and each log, to be cut back to its size at the checkpoint (what
// the job wrote after it, the restored job writes again) once nothing can
// fail any more, so that a refused restore leaves the logs as they are.
struct RestoredOutputs {
  std::vector<std::pair<std::string, int>> inherit;  // CRIU's inherit-fd keys and the pipes' write ends
  std::vector<Output> outputs;                        // the read ends, appended to the logs
  std::vector<UniqueFd> write_ends;
  std::vector<std::pair<UniqueFd, uint64_t>> logs;  // each log, and its size at the checkpoint
  Status cut_logs();
};
Result<RestoredOutputs> restored_outputs(const store::JobDir& dir, const std::string& id,
                                         const std::map<std::string, OutputCut>& outputs, bool pipes, bool tee);

// A job checkpointed in its own mount namespace (job/mounts.h): the
// node's root as its root, and the host's mounts it had bound back from
// the same paths (that they are there, the checks of job/preflight.h
// said).  Nothing for a job that had the host's namespace.
void add_host_mounts(const RestoreRecord& record, criu::RestoreRequest& req);

// Has CRIU restore checkpoint id, laid out in `files`, as a child of this
// process (req's directories, log file and the fds CRIU keeps for
// req.inherit are set here; its log goes to logs_dir).  A fast
// copy's deferred page check (files.check_pages) runs while CRIU reads the
// pages, and a stream (files.stream) checks chunks as it serves them;
// CRIU's post-restore notification, while the tree is still stopped, is
// answered only once every byte has passed and then at_post_restore has
// succeeded.  Otherwise CRIU kills what it restored; *pages_damaged
// tells that the fast copy failed its check.  before_request, if given, runs once CRIU
// has started and before it is asked to restore: a failure stops there.
// Before CRIU starts, the images must give no thread more than `owner`
// holds (job/images.h).
Result<pid_t> criu_restore(const std::string& criu_path, const std::string& id, criu::RestoreRequest req,
                           const store::Materialized& files, const std::string& logs_dir, const Identity& owner,
                           const std::function<Status()>& at_post_restore, bool* pages_damaged,
                           const std::function<Status()>& before_request = {});

// Lays out checkpoint id of a job whose manifest is m (store::materialize)
// and runs attempt on the files.  With may_defer (the caller has no saved
// files to put back first: they would be put back from unchecked bytes), a fast
// copy's page images are left to be checked while CRIU reads them, and
// the store's copy is streamed to CRIU (store/stream.h).  If
// the attempt failed because the fast copy's pages were damaged, the
// store's copy is laid out and attempted once more, and *warning says why.
Status with_checkpoint_files(const store::JobDir& dir, const store::FastTier& tier, const std::string& id,
                             const store::Manifest& m, bool prefer_fast, bool may_defer,
                             const store::ProgressFn& progress,
                             const std::function<Status(store::Materialized&, bool* pages_damaged)>& attempt,
                             std::string* warning);

}  // namespace cryo::job
