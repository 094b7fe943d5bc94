// Taking one checkpoint of a running job.  This runs in a worker process
// forked by the supervisor, so that a crash or kill of the worker (or of
// CRIU) never takes the supervisor or the job down with it.
//
// Sequence:
//   1. begin a dump in the fast tier, or in the store if it does not fit
//      (store/staging.h)
//   2. CRIU dumps the tree, leaving it running (the CRIU the supervisor
//      started and armed ahead of time, if it has one)
//   3. at CRIU's post-dump notification, while the job is still frozen:
//      drain the output pipes into the logs and record the logs' sizes,
//      copy the files the job has open for writing; with --stop, stop the
//      tree (SIGSTOP) so that it does no more work
//   4. the dump is complete (dump.json, rename): tell the supervisor
//      ("d" on notify_fd), which may start the next checkpoint; a client
//      that does not wait gets its answer now
//   5. flush: compress, dedup, checksum, sync and commit into the store,
//      then retention (store/flush.h); this also commits any earlier dump
//      whose flush was interrupted
//   6. with --stop, kill the job only now that the checkpoint is durable;
//      if the flush failed, let it continue (SIGCONT)
// A failure at any step leaves "latest" and every earlier checkpoint as
// they were, and the job running.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "control.pb.h"
#include "criu/client.h"
#include "store/follow.h"
#include "job/config.h"
#include "job/output.h"
#include "job/record.h"
#include "store/staging.h"
#include "store/store.h"

namespace cryo::job {

// One dump of a job's process tree, complete and staged for the flush
// (steps 1 to 4 above): the one dump path of single-node jobs and of a
// multi-node job's parts (coord/part.h).
struct DumpSpec {
  store::JobDir* dir = nullptr;
  std::string manifest_job;  // the manifest's job name ("" = dir's name)
  const JobConfig* config = nullptr;  // its kind (container, Apptainer), command and cwd
  store::FastTier tier;
  pid_t job_pid = 0;  // the tree's root: cryo-init
  std::vector<Output*> outputs;
  std::string criu_path;
  std::string criu_version;
  // A CRIU the supervisor started ahead of time, ready for the request; the
  // dump starts its own without it.  If it is armed (criu::Session::arm_dump)
  // it has probed the kernel and waits at its pre-dump notification, with
  // armed_dir (store::make_armed_dir) as its directory: it serves the dump
  // if that goes into the fast tier and asks what it was armed for.  The
  // dump renames the directory; the supervisor removes it if it is still
  // there when the worker ends.
  std::optional<criu::Session> criu;
  std::string armed_dir;
  std::string init_path;  // the cryo-init the job runs
  bool stop = false;
  bool tcp_established = false;
  // CRIU's external resources besides the job kind's own (a part's
  // network namespace).
  std::vector<std::string> external;
  // At CRIU's post-dump notification, after the outputs and the written
  // files: more of what the restore needs, into its record.
  std::function<Status(RestoreRecord& record)> at_post_dump;
  const char* post_dump_fault = "checkpoint.post_dump";
  int progress_fd = -1;  // the dump's progress goes here, if >= 0
  // Once CRIU has let the tree go again, or failed to dump it.
  std::function<void()> resumed;
  bool quiet = false;  // event lines only to cryo.log
};

struct Dump {
  store::Staged staged;
  store::Manifest manifest;  // as staged: committed by the flush
  store::Digests digests;    // of the page images, hashed while CRIU wrote them
  uint64_t bytes = 0;
};

// Steps 1 to 4: begins the dump in the fast tier (retried in the store if
// the fast tier fills up), has CRIU (or the container's engine) dump the
// tree, and stages it with its manifest.  On failure nothing is left of
// it, and a --stop job runs on.
Result<Dump> dump_job(DumpSpec& s);

struct CheckpointRun {
  DumpSpec dump;
  bool wait = false;   // answer the client once durable, not once dumped
  int client_fd = -1;  // progress and the answer go here, if >= 0; closed once answered
  // Written to as the checkpoint goes: "r" once output may flow again (not
  // with --stop), "d" once the dump is complete.
  int notify_fd = -1;
};

// The worker's exit status.
inline constexpr int kWorkerDone = 0;          // dumped and durable
inline constexpr int kWorkerFailed = 1;        // nothing new: the dump failed
inline constexpr int kWorkerStopped = 2;       // durable, and the job was killed (--stop)
inline constexpr int kWorkerFlushFailed = 3;   // dumped, but not made durable

// Runs the whole sequence; returns the worker's exit status.  Every outcome
// is logged as an event line.
int take_checkpoint(CheckpointRun& run);

// Flushes pending dumps (of an interrupted flush) with the job's retention,
// logging each commit and failure as an event line.
Status flush_pending(const store::JobDir& dir, const store::FastTier& tier, int keep, bool quiet,
                     const store::ProgressFn& progress = {});

}  // namespace cryo::job
