// The coordinator of a multi-node job: the supervisor of 'cryo run --agents
// AGENT,AGENT,...' (and of the 'cryo restore' that continues it).  It talks
// to one agent per node (coord/agent.h) over proto/coord.proto, runs the
// job's parts there, takes coordinated checkpoints (prepare, dump, commit,
// resume or stop: see the protocol's header) and restores them, possibly
// onto other nodes or in another order.
//
// The job's checkpoint is a manifest in its own store directory like any
// job's (checkpoints/ID/manifest.json, "latest"), with no files: its
// job_state names each part's own checkpoint, kept in STORE/JOB/parts/pK.
// It is written only when every agent has written and verified its part,
// so "latest" always names a complete, consistent set.
//
// Parts and addresses: part k gets the address --part-net + 10 + k (e.g.
// 192.0.2.10/24, .11, ...) on the bridge --bridge, which every node must
// have and which must join the nodes (on one host: a Linux bridge; across
// hosts: a bridge over VXLAN or the like, see docs/mpi.md).  Part 0 runs
// the command; an Open MPI launcher there starts its daemons in the other
// parts through 'cryo rsh' (its rsh agent), which asks the coordinator,
// which asks the part's agent.
#pragma once

#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "coord.pb.h"
#include "coord/wire.h"
#include "job/config.h"
#include "job/preflight.h"
#include "store/store.h"

namespace cryo::coord {

// The address of part k in net (an IPv4 CIDR such as 192.0.2.0/24).
Result<std::string> part_address(const std::string& net, uint32_t k);
// The environment an Open MPI launcher in part 0 needs to reach the parts.
std::vector<std::string> mpi_environment(const job::JobConfig& c, const std::string& hostfile);

// Retention for a multi-node job (--keep): its checkpoints beyond the
// newest `keep` go (never the latest); then, in each part's directory, the
// part checkpoints that no remaining checkpoint of the job names and that
// are older than the newest it names (one a failed checkpoint left), and
// the chunks nothing names any more.  Whatever is busy (a restore reading
// it) or cannot be read is left for the next time.  Returns the job's
// checkpoints removed.
Result<std::vector<std::string>> retain_parts(const store::JobDir& dir, int keep);

struct Timings {
  double prepare = 0, dump = 0, commit = 0, total = 0, frozen = 0;
  uint64_t bytes = 0;
};

class Coordinator {
 public:
  // timeout: the seconds a dump, commit or restore may take on an agent.
  Coordinator(const store::JobDir& dir, const job::JobConfig& c, double timeout)
      : dir_(dir), config_(c), timeout_(timeout) {}

  // Says hello to every agent (part k on agents[k]); fails naming any that
  // cannot be reached or speaks another protocol.
  Status connect(const std::vector<std::string>& agents);
  // Starts the job: part 0 runs the command, the others wait for Spawn.
  Status start();
  // Restores the job's checkpoint `id` onto the connected agents (part k on
  // the k-th), and unlocks the networks once every part is back.  Each
  // part whose fast copy was refused (and restored from the store) adds a
  // warning.
  Status restore(const std::string& id, std::vector<std::string>* warnings);
  // What restore(id) would meet: each part's checks on its agent's node
  // (job/preflight.h), in part order.  Nothing is restored.
  Result<std::vector<std::vector<job::Check>>> check_restore(const std::string& id);
  // A coordinated checkpoint; returns its id.  On failure every agent
  // still reachable aborts, and the job runs on.
  Result<std::string> checkpoint(bool stop, Timings* t = nullptr);
  // Runs argv (through /bin/sh -c, as ssh would) in the part at host.
  Status spawn(const std::string& host, const std::vector<std::string>& argv);
  // Ends every part still running.
  void stop_all();

  // The agents' connections, for poll; after one is readable, event()
  // reads it: the waitpid status of part 0's init once it ends (the job's
  // end), -1 for other news, or an error if the agent went away.
  std::vector<int> fds() const;
  Result<int> event(int fd);

 private:
  struct Agent {
    std::string address, node;
    Channel conn;
    std::vector<Envelope> queued;  // events that came while waiting for a reply
  };
  // Sends r to every agent in `which` (all if empty), then waits for every
  // reply (at most timeout seconds each).  The first failure is returned.
  Status all(const std::string& what, std::vector<Request> requests, std::vector<Reply>* replies, double timeout,
             const std::vector<size_t>& which = {});
  Result<Reply> wait_reply(Agent& a, uint64_t seq, double timeout);
  // Each part's restore request for the job's checkpoint id.
  Result<std::vector<Request>> restore_requests(const std::string& id, bool dry_run);
  Part part(uint32_t k) const;

  const store::JobDir& dir_;
  job::JobConfig config_;
  double timeout_;
  std::vector<Agent> agents_;
  uint64_t seq_ = 0;
  bool part0_ended_ = false;
};

}  // namespace cryo::coord
