// Thin wrappers over the system calls cryo uses.  Each retries on EINTR,
// opens with O_CLOEXEC, and turns errno into an Error naming the object.
// No other code reads errno.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace cryo::sys {

Result<UniqueFd> open(const std::string& path, int flags, mode_t mode = 0644);
Result<UniqueFd> openat(int dirfd, const std::string& path, int flags, mode_t mode = 0644);
Result<UniqueFd> open_dir(const std::string& path);
Status write_all(int fd, std::string_view data, const std::string& what);
// Reads until EOF.
Result<std::string> read_all(int fd, const std::string& what);
Result<std::string> read_file(const std::string& path);
// Writes path atomically: temp file, fsync, rename, fsync of the directory.
// With durable false, only atomic: no fsync (for files that are rewritten
// often and may be lost in a crash, such as progress reports).
Status write_file_atomic(const std::string& path, std::string_view data, mode_t mode = 0644, bool durable = true);
// Reads exactly n bytes at off; a short file is an error.
Status pread_exact(int fd, void* buf, size_t n, uint64_t off, const std::string& what);
Status pwrite_all(int fd, const void* buf, size_t n, uint64_t off, const std::string& what);
Status fsync_fd(int fd, const std::string& what);
Status fsync_path(const std::string& path);
Status mkdir_p(const std::string& path, mode_t mode = 0755);
Status rename(const std::string& from, const std::string& to);
Status remove_tree(const std::string& path);
Result<struct stat> stat(const std::string& path);
Result<struct stat> lstat(const std::string& path);
Result<struct stat> fstat(int fd, const std::string& what);
bool exists(const std::string& path);
Result<std::vector<std::string>> list_dir(const std::string& path);  // sorted, no . and ..
// Everything below dir but directories (files, links, ...), as paths
// relative to it, sorted.
Result<std::vector<std::string>> files_below(const std::string& dir);
Result<std::string> readlink(const std::string& path);
Status symlink_atomic(const std::string& target, const std::string& linkpath);
// Total size in bytes of the regular files below path.
uint64_t tree_size(const std::string& path);
// The bytes the files below path take on disk (holes take none), as du.
uint64_t disk_usage(const std::string& path);
Result<std::string> realpath(const std::string& path);
bool pid_alive(pid_t pid);

// A flock on path (created 0600 if missing), held while the fd is open.
// Without wait, a lock held elsewhere fails with code EWOULDBLOCK.
Result<UniqueFd> lock_file(const std::string& path, bool exclusive, bool wait);

struct FsSpace {
  uint64_t total = 0;      // bytes
  uint64_t available = 0;  // bytes an unprivileged writer may still use
  bool tmpfs = false;      // memory-backed: its pages come out of RAM
  // A file system that other nodes can mount too (NFS, Lustre, GPFS,
  // BeeGFS, CephFS, SMB, ...; FUSE counts, since site file systems use it).
  bool shared = false;
};
Result<FsSpace> fs_space(const std::string& path);
// The mount that holds a path: where it is mounted, its file system type,
// and the file system's own options (tmpfs: "rw,size=...,huge=within_size").
struct Mount {
  std::string point, fstype, options;
};
// From the text of /proc/self/mountinfo, for an absolute path without
// symbolic links: the last mount at or above it.
Result<Mount> mount_from_mountinfo(const std::string& mountinfo, const std::string& real_path);
Result<Mount> mount_of(const std::string& path);
// From /proc/meminfo, in bytes; 0 if unknown.
uint64_t mem_total();
uint64_t mem_available();
std::string hostname();
std::string kernel_release();
std::string user_name(uid_t uid);
// The number of a signal named "USR1" or "SIGUSR1"; 0 if there is none.
int signal_number(const std::string& name);
// Seconds since the epoch, as a double.
double now();
// A non-blocking timerfd that fires every `seconds` (> 0), first after one
// period.
UniqueFd interval_timer(double seconds);
std::string iso_time(double t);
// The directory of the running executable.
std::string self_dir();

// Where execvp would find cmd: cmd itself if it has a '/', else the first
// executable entry of the search path; "" if there is none.  The search
// path is the process's PATH, as the settings read it (set_search_path,
// from cli/main.cc), else /usr/local/bin:/usr/bin:/bin.
std::string find_in_path(const std::string& cmd);
void set_search_path(const std::string& path);

// One packet on a SOCK_SEQPACKET socket, with descriptors (SCM_RIGHTS).
Status send_packet(int sock, std::string_view data, const std::vector<int>& fds = {});
// Receives one packet of at most `max` bytes; a longer one, or a closed
// peer, is an error.  Descriptors that came with it go to *fds (if given;
// else they are closed), each close-on-exec.
Result<std::string> recv_packet(int sock, size_t max, std::vector<UniqueFd>* fds = nullptr);

// Runs argv[0] (searched in PATH) with `input` on its stdin and waits for
// it.  Returns its stdout; a failure names the command and carries its stderr.
Result<std::string> run_command(const std::vector<std::string>& argv, const std::string& input = "");

}  // namespace cryo::sys
