// What an MPI job needs to be checkpointed and restored, applied by 'cryo
// run' when the command is an MPI launcher (see docs/mpi.md and the MPI
// traps in shared/docs/platform.md):
//   - a private network namespace (loopback only): CRIU's network lock
//     (iptables rules that only a successful restore removes) never stays
//     on the host, and the launcher's TCP connections are dumped with
//     --tcp-established;
//   - a private IPC namespace: MPICH maps SysV shared memory; with it the
//     job has its own /dev/shm (job/mounts.h), where Open MPI's
//     shared-memory files go, dumped by CRIU with the job;
//   - a per-job session directory, so that two MPI jobs (whose launchers
//     are both PID 1 of their namespace, and so get the same MPI job ID)
//     never share files;
//   - every rank on this node, even inside a Slurm allocation: the
//     launcher starts no daemons elsewhere (Open MPI's plm=isolated and
//     ras=^slurm, Hydra's fork launcher and user RMK).
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace cryo::job {

enum class Mpi { none, openmpi, mpich };

const char* mpi_name(Mpi m);
Result<Mpi> parse_mpi(const std::string& name);  // "openmpi", "mpich", "none"

// Which MPI launches `command`, from what its first word resolves to in
// PATH (mpirun -> orterun is Open MPI, mpiexec.mpich -> mpiexec.hydra is
// MPICH); none if it is not an MPI launcher.
Mpi detect_mpi(const std::vector<std::string>& command);

// Where MPI jobs kept their shared-memory files on the node's /dev/shm
// before they had their own (checkpoints whose restore record has no
// mounts): a restore of such a checkpoint makes it again, and the job's
// end removes it.  part: a multi-node job's part k, or -1.
std::string legacy_shm_dir(const std::string& job_name, int part = -1);

// The environment the job starts with ("NAME=value" strings).  session_dir
// is a directory of the job's own (in its store directory).
std::vector<std::string> mpi_environment(Mpi m, const std::string& session_dir, bool as_root);

// Creates the session directory; before launch and before a restore.
Status prepare_mpi_dirs(Mpi m, const std::string& session_dir);

}  // namespace cryo::job
