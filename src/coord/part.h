// One part of a multi-node job, as the agent on its node runs it
// (proto/coord.proto).  The part's processes live under their own cryo-init
// in new PID, UTS and IPC namespaces, inside a network namespace that the
// agent creates for the part (/run/netns/cryo-JOB-pK) with the part's
// address and a veth on the host's bridge.  That namespace is not CRIU's
// to dump: it is declared external, and a restore, wherever it runs,
// first creates it again with the same address and has the restored tree
// join it.  So the address moves with the part.
//
// The part keeps its checkpoints in its own directory of the job's store
// (STORE/JOB/parts/pK: a store::JobDir, with the fast tier of this node),
// and its output in the logs there.
//
// Not thread-safe: the agent calls it from its one loop.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "coord.pb.h"
#include "job/preflight.h"
#include "job/config.h"
#include "job/mpi.h"
#include "job/output.h"
#include "store/staging.h"
#include "store/store.h"

namespace cryo::coord {

// The part's network namespace and its veth: created, locked, removed
// with iproute2 and iptables.
class PartNet {
 public:
  explicit PartNet(const Part& p);
  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  Status create() const;
  void remove() const;
  // Nothing in or out but loopback, until unlock (or until the lock's
  // guard process sees this agent die).
  Status lock();
  void unlock();
  bool locked() const { return guard_ > 0; }

 private:
  // Where Open MPI's shared-memory files of this part were on this node
  // before parts had their own /dev/shm (job/mpi.h).
  std::string legacy_shm_dir() const { return job::legacy_shm_dir(part_.job(), static_cast<int>(part_.index())); }

  Part part_;
  std::string name_, veth_;
  pid_t guard_ = -1;
  UniqueFd guard_pipe_;
};

struct DumpResult {
  std::string checkpoint;  // the part's own checkpoint id
  uint64_t bytes = 0;
  uint64_t stored_bytes = 0;
  double frozen_seconds = 0;
};

class PartRuntime {
 public:
  PartRuntime(const Part& p, store::FastTier tier, std::string criu_path);
  ~PartRuntime();
  uint32_t index() const { return part_.index(); }
  pid_t pid() const { return pid_; }
  store::JobDir& dir() { return dir_; }

  Status start(const StartPart& s);
  Status spawn(const std::vector<std::string>& argv);
  // A new checkpoint begins: its dump, if any, is the one abort() drops.
  Status prepare() {
    last_checkpoint_.clear();
    return net_.lock();
  }
  Result<DumpResult> dump(bool tcp_established);
  // The part's checkpoint from the last dump is sound, every byte.
  Status verify();
  // The job's checkpoint is committed: this part's is its for good.
  void resume() {
    last_checkpoint_.clear();
    net_.unlock();
  }
  // Drops the last dump's checkpoint and unlocks: the checkpoint is aborted.
  void abort();
  // Ends the part: its processes, its network namespace.
  void stop();
  Status restore(const RestorePart& r);
  // The checks restore(r) makes on this node first, the checkpoint's
  // signature ("key") among them.
  std::vector<job::Check> check_restore(const RestorePart& r) const;
  // Why the last restore did not use the part's fast copy, if it did not.
  const std::string& restore_warning() const { return restore_warning_; }
  void unlock() { net_.unlock(); }

  // The part's output pipes, for the agent's poll; drain() moves what they hold.
  std::vector<int> output_fds() const;
  void drain();
  // The part's init ended (reaped by the agent).
  void ended() { pid_ = -1; }

 private:
  // Where Open MPI's shared-memory files of this part were on this node
  // before parts had their own /dev/shm (job/mpi.h).
  std::string legacy_shm_dir() const { return job::legacy_shm_dir(part_.job(), static_cast<int>(part_.index())); }

  Part part_;
  store::FastTier tier_;
  std::string criu_path_;
  job::JobConfig config_;  // a plain job: what the dump path asks of its kind
  store::JobDir dir_;
  PartNet net_;
  pid_t pid_ = -1;
  std::vector<job::Output> outputs_;
  UniqueFd serve_;  // write end of cryo-init's command pipe
  std::string last_checkpoint_;
  std::string restore_warning_;
};

}  // namespace cryo::coord
