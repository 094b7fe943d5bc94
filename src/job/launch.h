// Starting a job: a new PID namespace (and optionally private network, IPC
// and mount namespaces) whose PID 1 is cryo-init, running the command in its own
// session with stdout and stderr on pipes that the supervisor reads.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace cryo::job {

struct LaunchSpec {
  std::vector<std::string> command;
  std::string job_name;     // exported to the job as CRYO_JOB
  bool private_net = false;
  bool private_ipc = false;     // its own SysV IPC namespace
  std::vector<std::string> env; // added to the job's environment, "NAME=value"
  std::string init_dir;         // cryo-init's own working directory, "" = the job's
  std::string init_path;        // the cryo-init executable
  // A container image's root file system (job/apptainer.h): the job gets its
  // own mount namespace, and cryo-init sets it up from these.
  std::string rootfs;
  std::vector<std::string> binds;  // SRC:DST
  std::string workdir;             // COMMAND's directory in the container
  // A part of a multi-node job (src/coord/): the network namespace to join
  // (instead of a private one), its own UTS namespace and host name, and
  // the read end of the pipe cryo-init takes commands to start from.
  std::string netns;
  std::string hostname;
  int serve_fd = -1;
};

struct Launched {
  pid_t pid = 0;  // host PID of the job's init
  UniqueFd out, err;  // read ends of its stdout and stderr
};

// Returns once the command has been executed (or failed to be: the error
// then says why, as execvp saw it).
Result<Launched> launch(const LaunchSpec& spec);

// Where cryo-init is: $CRYO_INIT, else next to the running cryo.
std::string default_init_path();

}  // namespace cryo::job
