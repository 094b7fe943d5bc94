// Jobs in a container engine that checkpoints its own containers (Podman,
// Docker; container/engine.h).  The job is the container "cryo-NAME";
// standing in for it in the supervisor is a watcher process, forked by
// cryo, which
//   - copies the container's log to the job's stdout and stderr pipes (so
//     the supervisor treats it like any job's output),
//   - forwards the signals it receives to the container,
//   - exits with the container's exit status (dying of the signal that
//     killed the container, if one did).
//
// The cut: a checkpoint records how far the container's log had got when
// CRIU froze it, so that a restore puts stdout.log and stderr.log back to
// exactly that point.  For Podman, runc runs 'cryo criu-hook' as CRIU's
// action script (through the org.criu.config annotation); at "post-dump",
// with the container frozen, it waits for the container's output pipes to
// drain into the log and records the log's size.  Docker has no per-
// container CRIU configuration: cryo pauses the container, records the
// log's size, checkpoints the paused container and lets it go.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/result.h"
#include "container/engine.h"
#include "job/config.h"
#include "job/launch.h"
#include "store/store.h"

namespace cryo::job {

std::string container_name(const std::string& job);
container::RunSpec container_spec(const JobConfig& c, const store::JobDir& dir);

// Starts the job's container and its watcher; Launched.pid is the watcher.
Result<Launched> launch_container(const JobConfig& c, const store::JobDir& dir);

struct ContainerDump {
  uint64_t log_cut = 0;          // the container's log, in bytes, at the freeze
  uint64_t out = 0, err = 0;     // what of it is stdout and stderr
  std::string ip;                // its address, whose traffic is blocked ("" = none blocked)
};
// Checkpoints the container into dir/container/, leaving it running; with
// stop, it stays paused (stop_container or resume_container decide).
// Stopping with established TCP connections, the container's traffic is
// dropped on the host from just before the checkpoint until the restore
// has finished, so that no packet moves its sockets past the checkpoint or
// reaches the restored container before its sockets are back (a reset).
Result<ContainerDump> dump_container(const JobConfig& c, const store::JobDir& job, const std::string& dir, bool tcp,
                                     bool stop);
void resume_container(const JobConfig& c, const store::JobDir& job);
void stop_container(const JobConfig& c);
// For 'cryo rm': the container goes, and any block of its traffic.
void forget_container(const JobConfig& c, const store::JobDir& job);

// Restores the container from dir (as dump_container wrote it, its log cut
// at log_cut), lets its traffic through if it was blocked for it, and
// starts a watcher for it.
Result<Launched> restore_container(const JobConfig& c, const store::JobDir& job, const std::string& dir, bool tcp,
                                   uint64_t log_cut, const std::string& blocked_ip);

// The host PID of the job's container's init, as last started (0 if unknown).
pid_t container_pid(const store::JobDir& dir);

// 'cryo criu-hook JOB_DIR': CRIU's action script for a Podman job.
int criu_hook(const std::string& job_dir, const std::string& action, const std::string& pid);

}  // namespace cryo::job
