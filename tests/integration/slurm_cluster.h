// A real Slurm cluster on this machine for a test (scripts/slurm-cluster.sh:
// munged, slurmctld, slurmd per node), in its own directory and on its own
// port, so that a cluster brought up by hand keeps running beside it.
#pragma once

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
// The Slurm job id in what 'cryo sbatch --json' printed (a failure if none).
std::string submitted_job(const std::string& out, const std::string& err);
// Waits until the job has left the queue.
bool wait_slurm_gone(const std::string& id, double timeout);

}  // namespace cryo::test
