// A client for CRIU's RPC service.  Each Session spawns `criu swrk FD` as a
// child connected through a SOCK_SEQPACKET socketpair and exchanges
// criu_req/criu_resp messages (images/rpc.proto, generated at build time
// from the schema the installed CRIU ships).
//
// Directory fds (images, work dir) are passed by number: CRIU opens them
// through /proc/<peer>/fd, so they must stay open in this process for the
// call.  Its peer is the process that started it; a Session used by another
// (a child it forked, as the supervisor's checkpoint worker) names them in
// an RPC configuration file instead.  Inherited fds for restore are handed
// to the criu child itself.
//
// Not thread-safe; one operation at a time per Session.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

class criu_req;   // rpc.proto's messages
class criu_resp;

namespace cryo::criu {

struct Version {
  int major = 0, minor = 0, sublevel = 0;
  std::string text() const;
  int code() const { return major * 10000 + minor * 100 + sublevel; }
};

// The oldest CRIU cryo accepts: 4.1.1 and older cannot dump sockets on
// kernels >= 6.16, and 3.x cannot run on kernels with [vvar_vclock].
inline constexpr Version kMinVersion{4, 2, 0};

// The largest deleted file a dump takes along (CRIU's --ghost-limit).
inline constexpr uint32_t kGhostLimit = 0xffffffffu;

// Called for each notification CRIU sends while notify_scripts is set
// ("pre-dump", "post-dump", "network-lock", ...).  Returning an error makes
// CRIU abort the operation.
using NotifyFn = std::function<Status(const std::string& script, pid_t pid)>;

struct DumpRequest {
  pid_t pid = 0;            // root of the tree (host PID)
  int images_dir_fd = -1;
  int work_dir_fd = -1;     // CRIU's log goes here
  std::string log_file = "criu-dump.log";
  bool leave_running = false;
  bool tcp_established = false;
  // CRIU's --external: "mnt[MOUNTPOINT]:KEY" for a bind mount from outside
  // the job's mount namespace.
  std::vector<std::string> external;
  NotifyFn notify;
};

struct RestoreRequest {
  int images_dir_fd = -1;
  int work_dir_fd = -1;
  std::string log_file = "criu-restore.log";
  bool tcp_established = false;
  // Fds of this process that replace the dumped files with these keys
  // (e.g. "pipe:[12345]"), or stand for external namespaces (a netns fd
  // for the key it was dumped with: "net[INODE]:KEY").  The restored tree becomes a child of the
  // calling process (rst_sibling).
  std::vector<std::pair<std::string, int>> inherit;
  // A job in its own mount namespace: "mnt[KEY]:HOST_PATH" for each bind
  // mount declared external at the dump, and its root file system; with
  // compat_mounts, the mounts go back as they were listed, not through
  // CRIU 4's new mount engine (a container's root, job/apptainer.h).
  std::vector<std::string> external;
  std::string root;
  bool compat_mounts = false;
  NotifyFn notify;
};

// Where to find CRIU when the settings name none (--criu, CRYO_CRIU,
// cryo.conf's [criu] path): the private install of
// scripts/install-criu.sh (/opt/cryo/criu/bin/criu), then `criu` in PATH.
std::string default_path();

class Session {
 public:
  // Starts `criu swrk`.  keep_fds are left open in the criu child.
  static Result<Session> start(const std::string& criu_path, const std::vector<int>& keep_fds = {});
  Session(Session&& o) noexcept
      : sk_(std::move(o.sk_)),
        pid_(std::exchange(o.pid_, -1)),
        owner_(o.owner_),
        asked_(o.asked_),
        armed_(std::exchange(o.armed_, false)),
        armed_for_(std::move(o.armed_for_)),
        path_(std::move(o.path_)) {}
  Session& operator=(Session&& o) noexcept {
    if (this != &o) {
      finish();
      sk_ = std::move(o.sk_);
      pid_ = std::exchange(o.pid_, -1);
      owner_ = o.owner_;
      asked_ = o.asked_;
      armed_ = std::exchange(o.armed_, false);
      armed_for_ = std::move(o.armed_for_);
      path_ = std::move(o.path_);
    }
    return *this;
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  Result<Version> version();
  // criu check: succeeds if the kernel supports what CRIU needs.
  Status check();
  // log_path: where CRIU's log lands, for error messages.  An armed
  // session continues the request it was armed with (see armed_for);
  // *not_started then says whether it failed before freezing anything,
  // so that a new CRIU may try.
  Status dump(const DumpRequest& req, const std::string& log_path, bool* not_started = nullptr);
  // Sends a dump request ahead of time.  CRIU sets up and probes the kernel
  // (at every start where /run is not a tmpfs, where it would keep its probe), then
  // waits at its pre-dump notification, before it freezes anything; dump()
  // answers it.  Only the process that started CRIU may arm it: CRIU opens
  // req's directories through that process's /proc/PID/fd, which must keep
  // them open until CRIU has (at its pre-dump notification).
  Status arm_dump(const DumpRequest& req);
  bool armed() const { return armed_; }
  // Whether the armed request is req's, but for its directories and notify.
  bool armed_for(const DumpRequest& req) const;
  // Tells an armed CRIU not to go on; it ends without touching the job.
  void disarm();
  // Returns the host PID of the restored root task.
  Result<pid_t> restore(const RestoreRequest& req, const std::string& log_path);

  pid_t pid() const { return pid_; }
  // Whether CRIU is there to take a request: its end of the socket is open.
  bool waiting() const;

  // Leaves the session to a child this process forked, which holds the
  // socket too: closes this end without waiting for CRIU, which ends when
  // its last peer closes and is reaped by this process (its parent).
  void release();

 private:
  Session(UniqueFd sk, pid_t pid, std::string path)
      : sk_(std::move(sk)), pid_(pid), owner_(::getpid()), path_(std::move(path)) {}
  void finish();
  Result<::criu_resp> ask(const ::criu_req& req, const NotifyFn& notify);
  static void fill_dump(::criu_req& req, const DumpRequest& r);
  // dump()'s two ways to CRIU's final answer: sending r now, or answering
  // the request it was armed with.
  Result<::criu_resp> send_dump(const DumpRequest& r);
  Result<::criu_resp> go_on(const DumpRequest& r, bool* not_started);

  UniqueFd sk_;
  pid_t pid_ = -1;
  pid_t owner_ = -1;  // the process that started CRIU: its parent, and its peer
  bool asked_ = false;
  bool armed_ = false;  // a dump request is out, its pre-dump notification unanswered
  struct Armed {
    pid_t pid = 0;
    bool leave_running = false, tcp_established = false;
    std::vector<std::string> external;
  } armed_for_;
  std::string path_;
};

// Checks that the CRIU at path runs and is new enough.  The error names the
// exact fix.
Result<Version> probe(const std::string& criu_path);

// A hint for a CRIU failure whose log says `log`, or "" if cryo knows none.
std::string hint_for_log(const std::string& log);
// The first "Error" line of a CRIU log that says why it failed (not a
// harmless one), without its source location.
std::string first_error(const std::string& log);

}  // namespace cryo::criu
