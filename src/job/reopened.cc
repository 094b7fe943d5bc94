#include "job/reopened.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>

#include <fmt/format.h>

#include "base/identity.h"
#include "base/log.h"
#include "base/sys.h"
#include "job/files.h"
#include "job/mounts.h"

namespace cryo::job {

namespace {

// Where the path `path` of the restored mount namespace lies on the node:
// under the deepest of the job's mounts that holds it, bound back from
// the node (its root file system, or an external mount), or "" on a mount
// of the job's own that CRIU makes from the images.
// `ids`: those of images.mounts.
std::string node_path(const std::string& path, const ImageFiles& images, const std::set<uint32_t>& ids,
                      const criu::RestoreRequest& req) {
  if (images.mounts.empty()) return path;  // a job in the node's own mount namespace
  const ImageMount* best = nullptr;
  for (const auto& m : images.mounts) {
    bool holds = m.point == "/" || path == m.point || path.starts_with(m.point + "/");
    if (holds && (!best || m.point.size() > best->point.size())) best = &m;
  }
  if (!best) return "";
  std::string from;
  if (!ids.count(best->parent)) {
    from = req.root.empty() ? "/" : req.root;
  } else if (!best->ext_key.empty()) {
    std::string key = "mnt[" + best->ext_key + "]:";
    for (const auto& e : req.external)
      if (e.starts_with(key)) from = e.substr(key.size());
    if (from.empty()) return "";  // CRIU refuses a mount it is given no source for
  } else {
    return "";
  }
  std::string rest = best->point == "/" ? path : path.substr(best->point.size());
  if (from == "/") return rest.empty() ? "/" : rest;
  return from + rest;
}

// How she opens it: with the access the job had, never creating,
// truncating, blocking or taking a terminal.
int open_flags(uint32_t job_flags) {
  if (job_flags & O_PATH) return O_PATH | O_CLOEXEC;
  return static_cast<int>(job_flags & O_ACCMODE) | O_NOCTTY | O_NONBLOCK | O_CLOEXEC;
}

// A named pipe the job had open only for writing, its reader outside the
// job: opened so without blocking, it fails (ENXIO) while nobody reads.
// Her right to write it is checked on the inode instead, which the
// descriptor (O_PATH) holds.
UniqueFd writable_fifo(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) < 0) return {};
  if (!S_ISFIFO(st.st_mode)) {
    errno = ENXIO;
    return {};
  }
  // AT_EACCESS: with her fsuid and groups, not the real ids.
  if (::faccessat(fd.get(), "", W_OK, AT_EMPTY_PATH | AT_EACCESS) < 0) return {};
  return fd;
}

}  // namespace

Result<HeldFiles> HeldFiles::open_as_owner(const ImageFiles& images, const criu::RestoreRequest& req,
                                           const std::string& checkpoint) {
  HeldFiles out;
  std::set<std::pair<std::string, int>> done;
  std::set<uint32_t> ids;
  for (const auto& m : images.mounts) ids.insert(m.id);
  // CRIU removes a socket found at a bound socket's path, binds it there
  // and connects its peers to it, all as root, by a path she could point
  // anywhere: her checkpoints have none (job/checkpoint.cc), and a
  // checkpoint that has one is not restored for her.
  for (const auto& path : images.socket_paths) {
    if (path[0] == '/' && node_path(path, images, ids, req).empty()) continue;  // on a mount of the job's own
    return make_error(ErrorKind::denied,
                      fmt::format("checkpoint {} is not restored: the job had a Unix socket bound at '{}', which "
                                  "CRIU would bind again, and connect to, by that path as root; a restore for {} "
                                  "does not do that",
                                  checkpoint, path, sys::user_name(acting_for().uid)))
        .with_hint("a checkpoint of a user's job holds no such socket; this one was taken another way "
                   "(docs/security.md)");
  }
  AsOwner her;
  for (const auto& f : images.files) {
    if (f.external || images.remapped.count(f.id)) continue;
    std::string path = node_path(f.path, images, ids, req);
    if (path.empty()) continue;
    int flags = open_flags(f.flags);
    if (!done.insert({path, flags}).second) continue;
    UniqueFd fd(::open(path.c_str(), flags));
    if (!fd.valid() && errno == ENXIO && (flags & O_ACCMODE) == O_WRONLY) fd = writable_fifo(path);
    struct stat st {};
    if (!fd.valid() || ::fstat(fd.get(), &st) < 0)
      return make_error(ErrorKind::denied,
                        fmt::format("checkpoint {} is not restored: the job had '{}' open, and {} cannot open what "
                                    "is there now: {}",
                                    checkpoint, f.path, sys::user_name(acting_for().uid), std::strerror(errno)))
          .with_hint("put back what was at that path at the checkpoint; a restore opens the job's files only as "
                     "their owner could herself (docs/security.md)");
    out.inodes_.emplace(Inode{st.st_dev, st.st_ino}, f.path);
    CRYO_LOG("job", debug) << "restore opens " << path << " as its owner: inode " << st.st_ino;
    out.fds_.push_back(std::move(fd));
  }
  return out;
}

Status HeldFiles::check_tree(pid_t root, const std::string& criu_log, const std::string& checkpoint) const {
  std::set<dev_t> own;
  auto allowed = inodes_;
  {
    AsRoot as_root;
    auto m = job_mounts(root);
    if (!m) return m.error();
    own = m->own;
    if (auto log = sys::stat(criu_log)) allowed.emplace(Inode{log->st_dev, log->st_ino}, criu_log);
  }
  return check_held(root, allowed, own, checkpoint);
}

Status check_held(pid_t root, const std::map<Inode, std::string>& held, const std::set<dev_t>& own,
                  const std::string& checkpoint) {
  AsRoot as_root;  // every process's /proc entries
  auto check = [&](pid_t pid, const std::string& link) -> Status {
    auto name = sys::readlink(link);
    if (!name || name->empty() || (*name)[0] != '/') return {};  // a pipe, socket or anonymous file
    auto st = sys::stat(link);
    if (!st || st->st_nlink == 0 || own.count(st->st_dev)) return {};
    bool device = S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode);
    if (!device && !S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode) && !S_ISFIFO(st->st_mode)) return {};
    if (held.count({st->st_dev, st->st_ino})) return {};
    if (device) {
      AsOwner her;
      if (UniqueFd fd(::open(link.c_str(), O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)); fd.valid()) return {};
    }
    return make_error(ErrorKind::denied,
                      fmt::format("checkpoint {} is not restored: CRIU opened '{}' for process {} as root, and that "
                                  "is not what its owner {} could open there before the restore (it was changed "
                                  "while CRIU restored the job); the restored processes were killed",
                                  checkpoint, *name, pid, sys::user_name(acting_for().uid)))
        .with_hint("leave the job's files alone while it is restored, then restore again (docs/security.md)");
  };
  auto tree = process_tree(root);
  for (pid_t pid : tree) {
    std::string proc = "/proc/" + std::to_string(pid);
    CRYO_TRY(check(pid, proc + "/exe"));
    if (auto maps = sys::list_dir(proc + "/map_files"))
      for (const auto& m : *maps) CRYO_TRY(check(pid, proc + "/map_files/" + m));
    auto tasks = sys::list_dir(proc + "/task");
    if (!tasks) continue;
    for (const auto& t : *tasks) {
      std::string task = proc + "/task/" + t;
      CRYO_TRY(check(pid, task + "/cwd"));
      CRYO_TRY(check(pid, task + "/root"));
      if (auto fds = sys::list_dir(task + "/fd"))
        for (const auto& fd : *fds) CRYO_TRY(check(pid, task + "/fd/" + fd));
    }
  }
  CRYO_LOG("job", debug) << "the files of the " << tree.size() << " restored processes are what their owner opened";
  return {};
}

}  // namespace cryo::job
