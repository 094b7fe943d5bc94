// 'cryo agent': the per-node service of multi-node jobs (proto/coord.proto).
// It listens on a TCP address, takes one coordinator at a time, and runs
// the parts of that coordinator's job that live on its node
// (coord/part.h).  When the coordinator goes away, its parts are ended.
#pragma once

#include <string>

#include "store/staging.h"

namespace cryo::coord {

struct AgentOptions {
  std::string listen = "127.0.0.1:0";  // IP:PORT, port 0 = any free one
  std::string node;                    // its name for the node (default: $SLURMD_NODENAME, else the host name)
  std::string advertise;               // the IP to announce, when listening on 0.0.0.0 (default: the host name's)
  std::string announce;                // write "NODE ADDRESS" here once listening
  std::string announce_dir;            // ... or into DIR/NODE
  std::string criu_path;
  store::FastTier tier;
  bool once = false;                   // exit after one coordinator
};

// Runs until killed (or after one coordinator, with once); returns an exit status.
int run_agent(const AgentOptions& o);

// The agents of a Slurm allocation: 'srun --ntasks-per-node=1 cryo agent'
// on every node, announcing themselves into dir.  Returns srun's PID and
// the agents' addresses, sorted by node name, once all `nodes` are there.
struct SlurmAgents {
  pid_t srun = -1;
  std::vector<std::string> addresses;
};
Result<SlurmAgents> start_slurm_agents(const std::string& cryo, const std::vector<std::string>& cryo_args,
                                       const std::string& dir, int nodes, double timeout);
void stop_slurm_agents(pid_t srun);

}  // namespace cryo::coord
