// The files CRIU opens again by path when it restores a user's job.
//
// CRIU runs as root and reopens, by path and with root's rights, every
// file the job had open or mapped, its executable and its working and
// root directories.  Between her checkpoint and her restore the user may
// have put anything at those paths: a symbolic link to a file or named
// pipe of root's, her directory swapped for a link to one she cannot
// enter.  So a restore
// for her first opens each such file as her (her fsuid, fsgid and groups),
// with the access the job had it open for, and refuses the checkpoint if
// she cannot; it holds those files open, so that their inodes stay.  Once
// CRIU has restored the tree, and before it runs (CRIU's pre-resume
// notification; at post-restore, CRIU's own descriptors are still open in
// the tree), every file the tree holds on a file system of the node must
// be one of those inodes: a path changed while CRIU opened it kills the
// restored tree instead of handing it what she could not open.
//
// A Unix socket bound to a path on the node is refused instead: CRIU
// removes what socket is there, binds it and connects its peers to it by
// that path, as root, and no descriptor of hers can stand in for it.
//
// CRIU's inherit-fd would hand it her descriptors instead, but it matches
// them by path alone: two descriptors the job had on one file, at two
// offsets or with two modes, would come back as one.
#pragma once

#include <sys/types.h>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "criu/client.h"
#include "job/images.h"

namespace cryo::job {

using Inode = std::pair<dev_t, ino_t>;

class HeldFiles {
 public:
  HeldFiles() = default;
  // Opens, with the file-system identity of this process (the user a
  // root cryo acts for), each file of `images` that CRIU opens again on a
  // mount of the node, resolved as `req` binds the job's mounts back: its
  // root file system at req.root, each external mount at the path given
  // for its key.  Files on the job's own mounts (its /proc, /dev/shm),
  // and files that had lost their name, come from the images; they are
  // left out.  Fails (kind denied) naming the first file she cannot open,
  // or the first Unix socket bound to a path on the node.
  static Result<HeldFiles> open_as_owner(const ImageFiles& images, const criu::RestoreRequest& req,
                                         const std::string& checkpoint);
  // After CRIU restored the tree rooted at `root` (host PID), before it
  // runs (CRIU's pre-resume notification): each file the tree holds is
  // one of these, or CRIU's log (`criu_log`), which each restored process
  // may keep open until it resumes.
  Status check_tree(pid_t root, const std::string& criu_log, const std::string& checkpoint) const;

  const std::map<Inode, std::string>& inodes() const { return inodes_; }

 private:
  std::vector<UniqueFd> fds_;
  std::map<Inode, std::string> inodes_;  // what she opened, and at which path
};

// The check, given the inodes she opened and the devices of the tree's
// own mounts: every regular file, directory, named pipe or device with a
// name that a process of the tree holds (open, mapped, as its executable,
// working or root directory) on another device is one she opened, or (a
// device: a terminal CRIU made again) one she can open.  The error names
// the first that is not.
Status check_held(pid_t root, const std::map<Inode, std::string>& held, const std::set<dev_t>& own,
                  const std::string& checkpoint);

}  // namespace cryo::job
