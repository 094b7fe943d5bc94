// Will this checkpoint restore here?  The checks a restore makes before
// anything on the node changes, and that 'cryo restore --dry-run' prints:
// what CRIU would otherwise refuse half-way, or what would make the job
// fail after it came back.
//   cpu       the node's CPU has every instruction set the CPU the job
//             started on had (its code, glibc's included, chose among
//             them when it started, and goes on using them wherever it is
//             restored: a missing one is a SIGILL later);
//   kernel    not older than the one the checkpoint was taken on (warned);
//   criu      CRIU runs, and is not older than the one that dumped;
//   files     each file CRIU opens again by path (job/files.h) is there,
//             of the same kind and size, the same build (ELF build-ID),
//             and readable;
//   mounts    each mount point of the host the job had (job/mounts.h);
//   memory    the node's available memory holds the checkpoint's pages;
//   network   (a part of a multi-node job, network_check) the bridge that
//             joins the parts is on this node.
// The key (the manifest's signature) and whether the job runs already are
// checked by the caller, which has them (app/jobs.cc).
#pragma once

#include <sys/stat.h>

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "criu/client.h"
#include "job/record.h"
#include "store/manifest.h"

namespace cryo::job {

enum class Verdict { pass, warn, fail };
const char* verdict_name(Verdict v);  // "pass", "warn", "fail"

struct Check {
  std::string name;    // "cpu", "kernel", "criu", "files", "mounts", "memory", "key", "job"
  Verdict verdict = Verdict::pass;
  std::string detail;  // what was found
  std::string fix;     // for a warn or fail: what to do
  ErrorKind kind = ErrorKind::unfit;  // of the error a fail becomes
};
nlohmann::json to_json(const Check& c);

// The node a restore would run on.  (A seam: tests describe another.)
struct Node {
  std::set<std::string> cpu_flags;  // instruction sets, as cpu_flags() gives them
  std::string kernel;               // uname's release
  std::optional<Result<criu::Version>> criu;  // unset: leave out the CRIU check
  uint64_t mem_available = 0;
  std::function<Result<struct stat>(const std::string&)> stat;
  std::function<bool(const std::string&)> readable;
  std::function<std::string(const std::string&)> build_id;
  std::function<bool(const std::string&)> has_bridge;  // a network bridge of that name
};
// This node; its CRIU is for the caller to probe.
Node this_node();

// The instruction-set flags of /proc/cpuinfo's text (x86's "flags" line,
// Arm's "Features"), without those that say nothing of what code may use
// (bugs, virtualisation, power management).
std::vector<std::string> cpu_flags(const std::string& cpuinfo);
std::vector<std::string> cpu_flags_here();

// The checks of checkpoint m (its record r) on `node`, in the order above;
// what m's job kind does not need is left out.
std::vector<Check> check_restore(const store::Manifest& m, const RestoreRecord& r, const Node& node);

// The CRIU check alone, for a caller that probes CRIU while it does other work.
Check criu_check(const store::Manifest& m, const Result<criu::Version>& criu);

// A part of a multi-node job, at `address` on the parts' network: its
// node must have the bridge that joins the parts.
Check network_check(const std::string& bridge, const std::string& address, const Node& node);

// The first failed check as an error (its detail, its fix), or success.
Status first_failure(const std::vector<Check>& checks);

}  // namespace cryo::job
