// The runtime of a multi-node job (job/supervisor.h): its parts on agents,
// driven by a Coordinator.  A coordinated checkpoint runs on a thread of
// its own, with the agents' connections left to it meanwhile, so that the
// supervisor answers 'cryo status' while the parts dump; what the agents
// report and what 'cryo rsh' asks in that time waits for its end.  Under
// Slurm, part 0's output goes on to the Slurm output file as it grows.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "coord/coordinator.h"
#include "job/supervisor.h"

namespace cryo::coord {

struct CoordinatedJob {
  store::JobDir* dir = nullptr;
  job::JobConfig config;
  Coordinator* coordinator = nullptr;  // connected, the parts running
  pid_t srun = -1;                     // the agents' srun, ended at the end
  // Part 0's output is copied to our stdout and stderr (the Slurm output
  // file), from the checkpoint this job was restored from, if any.
  bool tee = false;
  std::string restored_from;
  bool quiet = false;
};

class CoordinatedRuntime final : public job::Runtime {
 public:
  explicit CoordinatedRuntime(CoordinatedJob j);
  ~CoordinatedRuntime() override;

  void start() override;
  std::vector<int> fds() const override;
  void on_ready(int fd) override;
  void on_child() override {}
  Status begin_checkpoint(const job::CheckpointRequest& r) override;
  bool busy() const override { return worker_.joinable(); }
  void forward_signal(int sig) override;
  void kill_job() override;
  void fill_status(control::JobStatus& st) const override;
  void spawn(const control::SpawnRequest& r, UniqueFd client, const control::Reply& ok) override;
  void finish(job::State final, bool leaves_node) override;

 private:
  void checkpoint_done();
  void end_parts(int sig);
  void on_agent(int fd);
  void tee();

  CoordinatedJob j_;
  store::JobDir& dir_;
  Coordinator& c_;
  bool ended_ = false;

  // The checkpoint running on worker_, which signals done_ when it ends.
  std::thread worker_;
  UniqueFd done_;
  bool stop_ = false;
  UniqueFd client_;
  double started_ = 0;
  std::optional<Result<std::string>> result_;
  Timings timings_;
  // What came while it ran, for its end.
  int signal_ = 0;
  struct Spawn {
    control::SpawnRequest request;
    UniqueFd client;
    control::Reply ok;
  };
  std::vector<Spawn> spawns_;

  UniqueFd tee_timer_;
  uint64_t teed_[2] = {0, 0};
};

}  // namespace cryo::coord
