// A job's mount namespace.
//
// Every job that is not in a container image runs in its own mount
// namespace, made by cryo-init (init_main.cc --own-proc): the host's mounts,
// as slaves of the host's (a mount or unmount on the host still reaches
// the job, nothing the job mounts reaches the host), except
//   /proc        a new proc of the job's PID namespace, so that
//                /proc/self, /proc/<getpid()> and /proc/locks are the job's
//                and CRIU dumps the files under it by the job's own PIDs;
//   /dev/shm     a new tmpfs, and /dev/mqueue a new mqueue (where the host
//                has one), when the job has its own IPC namespace: POSIX
//                shared memory and message queues are then the job's, and
//                CRIU dumps them with it.
// CRIU dumps that namespace.  The mounts that are the host's are declared
// external, each named by its mount point ("mnt[/home]:/home"); a restore
// binds each back from the same path on the node where it runs, under the
// node's own root.  The checkpoint's restore record lists them.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "base/result.h"

namespace cryo::job {

struct MountEntry {
  std::string point;  // the mount point, unescaped
  std::string fstype;
  dev_t dev = 0;
};

// The mounts of /proc/PID/mountinfo, in order.  (A seam: parse_mountinfo
// takes the text.)
Result<std::vector<MountEntry>> read_mounts(pid_t pid);
std::vector<MountEntry> parse_mountinfo(const std::string& text);

struct JobMounts {
  bool own_namespace = false;     // false: the job shares the caller's (a job from before cryo gave it one)
  std::vector<std::string> host;  // mount points that are the host's, "/" left out, each once
  std::set<dev_t> own;            // devices of the job's own mounts (its /proc, /dev/shm, ...)
};
// Splits the job's mounts by whether the node's own namespace (the
// caller's) has the same file system: the host's are bound back at a
// restore, the job's own go into its checkpoint.
JobMounts split_mounts(const std::vector<MountEntry>& job, const std::vector<MountEntry>& node);
// The same for the running job whose init is job_pid, in its own namespace
// or not.
Result<JobMounts> job_mounts(pid_t job_pid);

// CRIU's --external for those mount points, for a dump and a restore alike.
std::vector<std::string> mount_externals(const std::vector<std::string>& host);

}  // namespace cryo::job
