// A real Slurm cluster on this machine for a test (scripts/slurm-cluster.sh:
// munged, slurmctld, slurmd per node), in its own directory and on its own
// port, so that a cluster brought up by hand keeps running beside it.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace cryo::test {

class SlurmCluster {
 public:
  // Brings it up in `dir` on `port` (and the ports after it), and points
  // this process's Slurm commands at it (SLURM_CONF); false with the
  // script's output in *out if it failed.
  bool up(const std::string& dir, int port, int nodes, std::string* out);
  // Cancels `jobs`, waits for the queue to empty (slurmd ends their
  // processes), then takes the cluster down.
  void down(const std::vector<std::string>& jobs);
  std::string conf() const { return dir_ + "/slurm.conf"; }
  bool started() const { return started_; }

 private:
  std::string script(const std::string& args) const;
  std::string dir_;
  int port_ = 0;
  bool started_ = false;
};

// The text without its trailing newlines and spaces.
std::string trim(std::string s);
// Slurm's view of a job: PENDING, RUNNING, ..., or "" once it has left the queue.
std::string slurm_state(const std::string& id);
// 'cryo sbatch --json ARGS' through `cryo` (as root, or as a user: it
// returns cryo's exit status and fills out and err); the Slurm job id it
// submitted (a failure if none), also added to `submitted` for clean-up.
using CryoFn = std::function<int(const std::vector<std::string>& args, std::string* out, std::string* err)>;
std::string sbatch(const CryoFn& cryo, const std::vector<std::string>& args, std::vector<std::string>& submitted);
// Waits until the job has left the queue.
bool wait_slurm_gone(const std::string& id, double timeout);

}  // namespace cryo::test
