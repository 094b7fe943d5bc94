// The runtime of a single-node job (job/supervisor.h): its process tree,
// started by cryo-init on this node, and the job's output pipes.
// Each checkpoint runs in a forked worker (job/checkpoint.h): one dumps at a
// time, while earlier ones may still be flushing into the store.  A
// `criu swrk` is started ahead of each checkpoint, and armed where it can
// be, so that CRIU's own start is not part of the checkpoint.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "criu/client.h"
#include "job/config.h"
#include "job/output.h"
#include "job/supervisor.h"
#include "store/staging.h"
#include "store/store.h"

namespace cryo::job {

struct LocalJob {
  store::JobDir* dir = nullptr;
  JobConfig config;
  pid_t job_pid = 0;  // cryo-init, the tree's root
  std::vector<Output> outputs;
  std::string criu_path;
  std::string criu_version;  // as probed when the supervisor started
  std::string init_path;     // the cryo-init the job runs (job/launch.h)
  store::FastTier tier;
  bool quiet = false;
};

class LocalRuntime final : public Runtime {
 public:
  explicit LocalRuntime(LocalJob j) : j_(std::move(j)), dir_(*j_.dir) {}

  void start() override;
  std::vector<int> fds() const override;
  void on_ready(int fd) override;
  void on_child() override;
  Status begin_checkpoint(const CheckpointRequest& r) override;
  bool busy() const override { return !workers_.empty(); }
  void forward_signal(int sig) override;
  void kill_job() override;
  void fill_status(control::JobStatus& st) const override;
  void finish(State final, bool leaves_node) override;

 private:
  void on_worker_note();
  void worker_ended(pid_t pid, int status);
  bool stopping() const;
  void prepare_criu();
  void arm_criu();
  void drop_spare_criu();
  void discard_armed_dir();

  LocalJob j_;
  store::JobDir& dir_;
  bool job_done_ = false;
  // A --stop checkpoint is durable and its worker killed the job: no CRIU
  // is to be armed on a tree that is going away.
  bool job_stopped_ = false;

  // Checkpoint workers: at most one dumps at a time; those that have
  // dumped go on flushing (one after the other, under the flush lock).
  struct Worker {
    bool stop = false;
    bool dumped = false;
    double started = 0;
    // The directory of the armed CRIU it took, if any.  Its dump renames it;
    // if the worker failed before (or was killed), it is removed when the
    // worker ends.
    std::string armed_dir;
    // The fds through which CRIU opens armed_dir (/proc/PID/fd), open until
    // the worker ends.
    std::vector<UniqueFd> armed_fds;
  };
  std::map<pid_t, Worker> workers_;
  pid_t dumping_ = -1;
  UniqueFd dump_notes_;  // from the dumping worker: "r" output may flow, "d" dumped
  // Output is not read from the job's freeze until the worker lets it flow;
  // after a --stop checkpoint it never does: what the job wrote after the
  // dump belongs to its future, which the restore replays.
  bool gated_ = false;
  // A `criu swrk` started ahead of time for the next checkpoint's worker.
  // It waits on its socket; SIGCHLD reaps it.
  std::optional<criu::Session> spare_criu_;
  // Armed (criu::Session::arm_dump) where it can be: it has probed the
  // kernel and waits at its pre-dump notification, with armed_dir_ as its
  // directory, for this job's next checkpoint.
  std::string armed_dir_;
  std::vector<UniqueFd> armed_fds_;
};

}  // namespace cryo::job
