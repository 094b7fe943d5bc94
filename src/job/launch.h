// Starting a job: new PID and mount namespaces (job/mounts.h), and
// optionally private network and IPC namespaces, whose PID 1 is cryo-init,
// running the command in its own session with stdout and stderr on pipes
// that the supervisor reads.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "store/store.h"

namespace cryo::job {

struct LaunchSpec {
  std::vector<std::string> command;
  std::string job_name;     // exported to the job as CRYO_JOB
  bool private_net = false;
  bool private_ipc = false;     // its own IPC namespace, /dev/shm and /dev/mqueue
  std::vector<std::string> env; // added to the job's environment, "NAME=value"
  // The job's whole environment instead of cryo's own (a supervisor that
  // the service started for a user: hers, not the service's).
  std::optional<std::vector<std::string>> environment;
  // Whom the job runs as, "UID:GID:GROUPS" (base/identity.h); "" = as cryo.
  // cryo-init takes it on once it has built the job's namespaces.
  std::string user;
  std::string init_dir;         // cryo-init's own working directory, "" = the job's
  std::string init_path;        // the cryo-init executable
  // A container image's root file system (job/apptainer.h): cryo-init
  // builds the job's mounts from these, instead of the host's.
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

// Programs the settings name instead of the defaults (CRYO_INIT,
// CRYO_APPTAINER or cryo.conf's [apptainer] path), set once at the top of
// the process (cli/main.cc); "" keeps the default.
struct Tools {
  std::string init;
  std::string apptainer;
};
void configure(const Tools& t);
const Tools& tools();

// Where cryo-init is: tools().init, else next to the running cryo.
std::string default_init_path();

// CRIU restores a mapped file only if it is the very binary that was
// dumped, at the same path (it checks the build-ID), so a job does not run
// the installed cryo-init, which an upgrade replaces and another node may
// have built differently, but a copy named by its content:
// /var/lib/cryo/init/cryo-init-<SHA-256 prefix>, kept beside the job in
// the store too (<job>/cryo-init), so that any node can put it back.
// Makes both copies for a job about to run and returns the path it runs;
// where they cannot be made (not root, a full disk), logs why and returns
// default_init_path().
std::string make_job_init(const store::JobDir& dir);
// Whether path is one of those copies (a restore puts it back itself).
bool is_job_init(const std::string& path);
// Before a restore: puts the job's cryo-init back at its path from the
// store's copy if it is not there, and returns that path (a job from
// before these copies: default_init_path()).
Result<std::string> job_init(const store::JobDir& dir);
// The copies pile up, one per cryo build that ran a job on the node.
// make_job_init removes, from `dir`, each copy that no process runs and
// that was not handed out (made, or asked for by job_init) for
// `idle_seconds` (there: a day, longer than any restore takes between
// job_init and CRIU opening the file).  A removed copy comes back from the
// store when its job is restored.  Returns how many went.
size_t remove_unused_inits(const std::string& dir, double idle_seconds);

}  // namespace cryo::job
