// What an MPI job needs to be checkpointed and restored, applied by 'cryo
// run' when the command is an MPI launcher (see docs/mpi.md and the MPI
// traps in shared/docs/platform.md):
//   - a private network namespace (loopback only): CRIU's network lock
//     (iptables rules that only a successful restore removes) never stays
//     on the host, and the launcher's TCP connections are dumped with
//     --tcp-established;
//   - a private IPC namespace: MPICH maps SysV shared memory;
//   - a per-job shared-memory directory and session directory, so that two
//     MPI jobs (whose launchers are both PID 1 of their namespace, and so
//     get the same MPI job ID) never share files;
//   - UCX_POSIX_USE_PROC_LINK=n: UCX opens /proc/PID/fd links, which break
//     when the job's PIDs are not the host's;
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

// The per-job directory for MPI's shared-memory files (in /dev/shm).
std::string mpi_shm_dir(const std::string& job_name);
// The same for part k of a multi-node job, on the part's node.
std::string mpi_shm_dir(const std::string& job_name, int part);

// The environment the job starts with ("NAME=value" strings).  session_dir
// is a directory of the job's own (in its store directory).
std::vector<std::string> mpi_environment(Mpi m, const std::string& job_name, const std::string& session_dir,
                                         bool as_root);

// Creates the directories the job's files live in; before launch and
// before a restore (CRIU puts deleted shared-memory files back there).
Status prepare_mpi_dirs(Mpi m, const std::string& job_name, const std::string& session_dir);

}  // namespace cryo::job
