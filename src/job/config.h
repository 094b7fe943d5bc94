// What the store keeps about a job outside its checkpoints:
//   job.json   how it was started; written once by 'cryo run'
//   state.json what its supervisor last reported; replaced atomically
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/identity.h"
#include "base/result.h"
#include "job/mpi.h"
#include "store/store.h"

namespace cryo::job {

// Where a job runs, which decides how it is launched, dumped and restored.
// A kind's behaviour is its row in kind_traits (config.cc) and its own
// files; the rest of cryo asks the traits, never the kind's name.
enum class Kind {
  process,    // under cryo-init (job/launch.h), dumped by CRIU
  apptainer,  // an Apptainer image's root under cryo-init, dumped by CRIU with its mounts (job/apptainer.h)
  podman,     // a container that its engine checkpoints (job/container.h)
  docker,
};
struct KindTraits {
  const char* name;         // in job.json ("" for a process, as before kinds had names)
  bool engine_checkpoints;  // an engine dumps and restores it; its output is cut by its log
  bool mounts_at_dump;      // CRIU gets its mounts and root at each dump and restore
};
const KindTraits& kind_traits(Kind k);
Result<Kind> parse_kind(const std::string& name);

struct JobConfig {
  std::string name;
  std::vector<std::string> command;
  std::string cwd;
  double created = 0;
  // Its owner, whom it runs as (base/identity.h): uid, gid and groups.
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  Identity owner() const { return {uid, gid, groups}; }
  std::string host;
  double every = 0;              // seconds between periodic checkpoints, 0 = none
  int keep = 0;                  // checkpoints to keep, 0 = all
  std::string checkpoint_on;     // signal name, "" = none
  bool tcp_established = false;
  bool private_net = false;
  bool private_ipc = false;
  Mpi mpi = Mpi::none;
  std::string slurm_job_id;      // the Slurm job it belongs to, "" = none
  // Where it runs; a container's `image`, and `engine_options` added to
  // its engine's 'run'.
  Kind kind = Kind::process;
  std::string image;
  std::vector<std::string> engine_options;
  const KindTraits& traits() const { return kind_traits(kind); }
  // A multi-node job (src/coord/): its agents (IP:PORT, part k on the
  // k-th), the parts' network and the bridge that joins them.
  std::vector<std::string> nodes;
  bool nodes_from_slurm = false;  // the agents start with srun in each allocation
  std::string part_net;
  std::string bridge;
  // The instruction sets of the CPU it started on (job/preflight.h): its
  // code may have chosen to use them, wherever it is restored.
  std::vector<std::string> cpu_flags;
  bool coordinated() const { return !nodes.empty(); }
};

enum class State { running, finished, stopped, failed };
const char* state_name(State s);

// One run of a Slurm job on its nodes, from start (or restore) to its end.
struct Allocation {
  std::string job_id;        // the Slurm job (a restart by hand is another one)
  int restart = 0;           // SLURM_RESTART_COUNT
  std::string nodes;
  std::string host;          // where the supervisor ran
  double start = 0, end = 0; // end 0 = still running
  std::string restored_from; // checkpoint it continued from, "" = a fresh start
  std::string outcome;       // how it ended, in words
  double checkpoint_seconds = 0;  // the last checkpoint's duration, 0 = none
  double margin_seconds = 0;      // time left when the warning signal came, 0 = none
};

struct JobState {
  State state = State::running;
  std::string host;
  pid_t supervisor_pid = 0;
  pid_t job_pid = 0;        // host PID of the job's init
  double since = 0;         // when this state began
  int exit_code = -1;       // when finished: the job's exit status
  int restores = 0;         // how many times it was restored
  std::string restored_from;
  std::string message;      // for failed: why
  std::vector<Allocation> allocations;  // Slurm jobs: every allocation so far
};

// job.json, signed with the node's key as manifests are (store/signing.h):
// it says how the job is restored (its container image and options, its
// MPI, its owner), so a restore reads it with `signed_only`, which refuses
// one changed without the key.
Status save_config(const store::JobDir& dir, const JobConfig& c);
Result<JobConfig> load_config(const store::JobDir& dir, bool signed_only = false);
Status save_state(const store::JobDir& dir, const JobState& s);
// A job that never reported a state (it is starting) reads as running.
Result<JobState> load_state(const store::JobDir& dir);

}  // namespace cryo::job
