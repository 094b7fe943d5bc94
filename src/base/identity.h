// Whom cryo acts for.  A cryo process acts for the user who runs it, except
// a supervisor that the service (cryod, src/service/) starts for a user:
// that process is root, for CRIU and the job's namespaces, but acts for
// her.  Its file-system identity (fsuid, fsgid, supplementary groups) is
// hers, so every file it opens or creates in her store is checked and
// owned as if she had done it herself; it becomes root only for the
// node's own files (the fast tier, the key, /var/lib/cryo), in the scope of
// an AsRoot.  The fs identity is per thread in Linux: threads and children
// inherit it, and an exec resets it to the effective uid (CRIU runs as
// root).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"

namespace cryo {

struct Identity {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary
  std::string text() const;   // "UID:GID:G1,G2", as parse() reads it
  static Result<Identity> parse(const std::string& text);
  // This process's real user, group and groups.
  static Identity of_process();
};

// The identity this process acts for: its own, or the one act_for() set.
const Identity& acting_for();
// True in a root process that acts for another user.
bool acting_for_other();
// Makes this (root, still single-threaded) process act for `who`: its
// supplementary groups become hers, and its fsuid and fsgid.
Status act_for(const Identity& who);

// In its scope, this thread's file-system identity is root's (AsRoot), or
// the one it acts for (AsOwner, inside an AsRoot); no effect unless
// acting_for_other().
class FsIdentity {
 public:
  explicit FsIdentity(bool root);
  ~FsIdentity();
  FsIdentity(const FsIdentity&) = delete;
  FsIdentity& operator=(const FsIdentity&) = delete;

 private:
  bool changed_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};
struct AsRoot : FsIdentity {
  AsRoot() : FsIdentity(true) {}
};
struct AsOwner : FsIdentity {
  AsOwner() : FsIdentity(false) {}
};

// Whether this process's bounding set lacks CAP_SYS_RESOURCE, as root's
// does in some containers and VMs.
bool lacks_sys_resource();
// In a child about to execute CRIU for the user this process acts for,
// where lacks_sys_resource(): takes her real uid and gid, keeping root's
// effective and saved ones.  The kernel lets a process read and set the
// resource limits (prlimit) of processes whose ids all equal its real ids,
// and otherwise only with CAP_SYS_RESOURCE; CRIU does that for every
// process it dumps.  She may then signal that CRIU, as she could kill her
// job, but not trace it (its effective and saved ids are root's).  The
// netfilter tools that CRIU runs for a job's own network namespace, or its
// TCP connections, refuse real and effective ids apart: such jobs of users
// cannot be checkpointed on these nodes (app/jobs.cc refuses them).
// Whether lend_real_ids_for_criu() changes anything in this process.
bool lends_real_ids();
void lend_real_ids_for_criu();

// The credentials of a process, from /proc/PID/status.
struct ProcessCreds {
  uid_t uid[4] = {};  // real, effective, saved, fs
  gid_t gid[4] = {};
  std::vector<gid_t> groups;
  uint64_t cap_inh = 0, cap_prm = 0, cap_eff = 0, cap_amb = 0;
};
Result<ProcessCreds> parse_process_status(const std::string& status_text);
// "" if every id of p is `who`'s and p holds no capability; else what is more.
std::string privilege_beyond(const ProcessCreds& p, const Identity& who);

}  // namespace cryo
