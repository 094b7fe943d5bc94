// Regular files the job has open for writing or maps shared and writable.
// CRIU records an open file's size and refuses to restore if it changed,
// and keeps only the name of a mapped file; a job that kept running after a
// checkpoint will have changed both.  So a checkpoint copies each such file
// into the checkpoint (files/N) while the job is frozen, and a restore puts
// the copies back first.
#pragma once

#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace cryo::job {

struct SavedFile {
  std::string path;      // where the job has it
  std::string saved_as;  // relative to the checkpoint directory
  uint64_t size = 0;
  mode_t mode = 0600;
  uid_t uid = 0;
  gid_t gid = 0;
  bool fifo = false;     // a named pipe: recreated empty, no content saved
};

// A file CRIU opens again by its path at a restore: an executable, a mapped
// library or file, a file or directory the job has open (its working
// directory too).  CRIU refuses one whose size (or, for an ELF file, whose
// build-ID) is not what it was; a restore checks first (job/preflight.h).
struct NeededFile {
  std::string path;
  bool dir = false;
  uint64_t size = 0;      // of a regular file
  std::string build_id;   // hex, of an ELF file that has one
};

// Every task in the tree rooted at root (host PID), root included.
std::vector<pid_t> process_tree(pid_t root);
// Resident memory of the whole tree, in bytes.
uint64_t tree_rss(pid_t root);

// Copies the regular files that the tree has open for writing, or maps
// shared and writable, into ckpt_dir/files/, but those on the file systems
// own_devices (the job's own mounts, which CRIU dumps itself: job/mounts.h).
// The tree must be frozen.
Result<std::vector<SavedFile>> save_written_files(pid_t root, const std::string& ckpt_dir,
                                                  const std::set<dev_t>& own_devices);
// The files the frozen tree needs at a restore, but those on own_devices
// and those `saved` puts back; build_id is not filled in (add_build_ids
// reads them, once the tree runs again).
std::vector<NeededFile> needed_files(pid_t root, const std::set<dev_t>& own_devices,
                                     const std::vector<SavedFile>& saved);
void add_build_ids(std::vector<NeededFile>& files);
// The GNU build-ID of the ELF file at path, in hex; "" if it is not ELF or has none.
std::string elf_build_id(const std::string& path);

// A Unix socket that a process of the tree has bound to a path (not an
// abstract name), as the job's mount namespace names the path.  CRIU
// binds it again, and connects its peers to it, by that path.
struct BoundSocket {
  pid_t pid = 0;
  std::string path;
};
// Those the tree rooted at root holds, but those on own_devices.
std::vector<BoundSocket> bound_sockets(pid_t root, const std::set<dev_t>& own_devices);

// Puts the saved copies back: into each file that is still there and
// still the job's owner's (its inode, links, owner, mode and extended
// attributes stay), or as a new file with the saved owner and mode.  The
// error names the file.
Status put_back_files(const std::vector<SavedFile>& files, const std::string& ckpt_dir);


}  // namespace cryo::job
