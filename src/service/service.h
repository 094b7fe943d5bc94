// cryo's service, cryod: how a user who is not root runs and restores jobs.
//
// CRIU needs root, and so do the job's namespaces, so 'cryo run' and
// 'cryo restore' of a user are started by the service, a root daemon on
// each node (docs/security.md says why this form, and what it trusts).
// The user's cryo connects to its socket and sends the verb's arguments
// and the job's environment, with its stdin, stdout, stderr and working
// directory as descriptors (proto/service.proto).  For each request the
// service:
//   - takes the caller's identity from the socket (SO_PEERCRED, and a
//     pidfd of the caller, so that what it reads of her process in /proc
//     is hers): uid and gid there, supplementary groups and umask from her
//     process's status, her resource limits, her cgroup;
//   - starts cryo as root in her cgroup (under Slurm, the job's: scancel
//     ends it, its limits apply), with her limits and umask, her
//     descriptors and directory, the service's own environment (hers is
//     handed over as data, for her command only), and CRYO_ACT_FOR: that
//     cryo acts for her (base/identity.h), and its job runs as her;
//   - forwards the signals she sends, and answers with its exit status.
// Nothing the request says is trusted beyond what it is: arguments for
// cryo, which parses and checks them acting for her.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "service.pb.h"

namespace cryo::service {

inline constexpr uint32_t kVersion = 1;

// The verbs that start a supervisor, which the service runs for users.
bool served_verb(const std::string& verb);
// The verb of cryo's arguments (those after 'cryo'): the first word that is
// not an option or an option's value.
std::string verb_of(const std::vector<std::string>& args);

// The client: has the service run `args` ("run", ...) for this user, with
// `env` for her job; forwards this process's signals until it ends, and
// returns its exit status.
Result<int> run_through_service(const std::string& socket, const std::vector<std::string>& args,
                                const std::vector<std::string>& env);

// Whether the service listens at `socket` (for 'cryo check'): connects,
// and goes.
Status reachable(const std::string& socket);

struct DaemonOptions {
  std::string socket;           // where it listens (made 0666: every user may ask)
  std::string cryo;             // the cryo binary it starts
  std::string criu;             // the CRIU that cryo uses (prepare_criu_cache)
  std::vector<std::string> env; // the environment of the cryo it starts
  int max_requests = 256;       // requests being read at once; more are refused (busy)
  int listen_fd = -1;           // a listening socket systemd handed over (cryod.socket), else -1
};
// A caller's request, as the daemon reads it from her packet: it parses,
// speaks this protocol, starts a verb the service runs, and `caller` (her
// uid from the socket) is not root.  Her descriptors are checked apart.
Result<ServiceRequest> parse_request(const std::string& packet, uid_t caller);

// Where root lacks CAP_SYS_RESOURCE, the CRIU that works for a user runs
// with her real uid (base/identity.h), and CRIU's probe of the kernel
// refuses to run that way (its netfilter library will not run with real
// and effective ids apart).  CRIU skips the probe when it finds its cache,
// /run/criu.kdat, which it writes itself only where /run is a tmpfs: a
// root CRIU writes it here in a mount namespace of its own, with a tmpfs
// on /run, and the service puts it in place, at every start (the cache is
// valid for one boot).  Elsewhere, nothing.
Status prepare_criu_cache(const std::string& criu);

// Serves until SIGTERM or SIGINT.
Status serve(const DaemonOptions& o);

}  // namespace cryo::service
