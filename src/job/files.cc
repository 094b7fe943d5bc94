#include "job/files.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "base/fd.h"
#include "base/identity.h"
#include "base/sys.h"
#include "store/staging.h"

namespace cryo::job {

std::vector<pid_t> process_tree(pid_t root) {
  std::vector<pid_t> out{root};
  for (size_t i = 0; i < out.size(); i++) {
    std::string base = "/proc/" + std::to_string(out[i]) + "/task";
    auto tids = sys::list_dir(base);
    if (!tids) continue;
    for (const auto& t : *tids) {
      auto kids = sys::read_file(base + "/" + t + "/children");
      if (!kids) continue;
      std::istringstream ss(*kids);
      pid_t k;
      while (ss >> k) out.push_back(k);
    }
  }
  return out;
}

uint64_t tree_rss(pid_t root) {
  uint64_t total = 0;
  uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  for (pid_t p : process_tree(root)) {
    auto statm = sys::read_file("/proc/" + std::to_string(p) + "/statm");
    unsigned long size, resident;
    if (statm && std::sscanf(statm->c_str(), "%lu %lu", &size, &resident) == 2) total += resident * page;
  }
  return total;
}

namespace {

bool open_for_writing(pid_t pid, const std::string& fd) {
  auto info = sys::read_file("/proc/" + std::to_string(pid) + "/fdinfo/" + fd);
  if (!info) return false;
  auto p = info->find("flags:");
  if (p == std::string::npos) return false;
  unsigned long flags = std::stoul(info->substr(p + 6), nullptr, 8);
  return (flags & O_ACCMODE) == O_WRONLY || (flags & O_ACCMODE) == O_RDWR;
}

Status copy_fd(int from, int to, uint64_t size, const std::string& what) {
  off_t off = 0;
  while (static_cast<uint64_t>(off) < size) {
    ssize_t n = ::sendfile(to, from, &off, size - static_cast<uint64_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("cannot copy " + what);
    }
    if (n == 0) break;
  }
  return {};
}

}  // namespace

Result<std::vector<SavedFile>> save_written_files(pid_t root, const std::string& ckpt_dir,
                                                  const std::set<dev_t>& own_devices) {
  std::vector<SavedFile> saved;
  std::set<std::pair<dev_t, ino_t>> seen;
  // link: a /proc magic link to the file, as an open fd or a mapping.
  auto save = [&](const std::string& link, const std::string& why) -> Status {
    auto st = sys::stat(link);
    if (!st || !S_ISREG(st->st_mode) || own_devices.count(st->st_dev)) return {};
    if (!seen.insert({st->st_dev, st->st_ino}).second) return {};
    auto path = sys::readlink(link);
    if (!path || path->empty() || (*path)[0] != '/') return {};
    // CRIU saves unlinked files itself.
    if (path->size() > 10 && path->compare(path->size() - 10, 10, " (deleted)") == 0) return {};
    CRYO_TRY(sys::mkdir_p(ckpt_dir + "/" + store::kSavedFilesDir, 0700));
    SavedFile f;
    f.path = *path;
    f.saved_as = std::string(store::kSavedFilesDir) + "/" + std::to_string(saved.size());
    f.size = static_cast<uint64_t>(st->st_size);
    f.mode = st->st_mode & 07777;
    f.uid = st->st_uid;
    f.gid = st->st_gid;
    auto in = sys::open(link, O_RDONLY);
    if (!in) return in.error().context("cannot save '" + f.path + "', which the job " + why);
    auto out = sys::open(ckpt_dir + "/" + f.saved_as, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!out) return out.error();
    CRYO_TRY(copy_fd(in->get(), out->get(), f.size, "'" + f.path + "' into the checkpoint"));
    saved.push_back(f);
    return {};
  };
  // Named pipes the job opened by path: CRIU reopens them by name.
  auto save_fifo = [&](const std::string& link) {
    auto st = sys::stat(link);
    if (!st || !S_ISFIFO(st->st_mode) || own_devices.count(st->st_dev) || !seen.insert({st->st_dev, st->st_ino}).second) return;
    auto path = sys::readlink(link);
    if (!path || path->empty() || (*path)[0] != '/') return;  // "pipe:[...]" is anonymous
    SavedFile f;
    f.path = *path;
    f.mode = st->st_mode & 07777;
    f.uid = st->st_uid;
    f.gid = st->st_gid;
    f.fifo = true;
    saved.push_back(f);
  };
  for (pid_t pid : process_tree(root)) {
    std::string proc = "/proc/" + std::to_string(pid);
    if (auto names = sys::list_dir(proc + "/fd"))
      for (const auto& fd : *names) {
        save_fifo(proc + "/fd/" + fd);
        if (open_for_writing(pid, fd)) CRYO_TRY(save(proc + "/fd/" + fd, "has open for writing"));
      }
    // Shared writable mappings of files (MPI's shared-memory segments, for
    // one): CRIU keeps only the file's name, not what the job wrote into it.
    auto maps = sys::read_file(proc + "/maps");
    if (!maps) continue;
    std::istringstream lines(*maps);
    std::string line;
    while (std::getline(lines, line)) {
      char range[64], perms[8];
      if (std::sscanf(line.c_str(), "%63s %7s", range, perms) != 2) continue;
      if (perms[1] != 'w' || perms[3] != 's' || line.find(" /") == std::string::npos) continue;
      CRYO_TRY(save(proc + "/map_files/" + range, "maps shared and writable"));
    }
  }
  return saved;
}

Status put_back_files(const std::vector<SavedFile>& files, const std::string& ckpt_dir) {
  for (const auto& f : files) {
    auto fail = [&](const Error& e) {
      return e.context("cannot put back '" + f.path + "', which the job had open for writing at the checkpoint")
          .with_hint("make its directory exist and be writable, then restore again");
    };
    // On another node the directory may not exist yet.
    if (auto st = sys::mkdir_p(f.path.substr(0, f.path.rfind('/')), 0755); !st) return fail(st.error());
    if (f.fifo) {
      if (::mkfifo(f.path.c_str(), f.mode) < 0 && errno != EEXIST) return fail(sys_error("cannot create the named pipe"));
      if (::chown(f.path.c_str(), f.uid, f.gid) < 0 && ::getuid() == 0) return fail(sys_error("cannot set the owner"));
      continue;
    }
    auto in = [&] {
      AsRoot root;  // the checkpoint's copy, laid out in root's directory
      return sys::open(ckpt_dir + "/" + f.saved_as, O_RDONLY);
    }();
    if (!in) return fail(in.error());
    // The file still there takes the saved bytes itself: it keeps its
    // inode, so its hard links, owner, mode and extended attributes stay,
    // and whoever outside the job has it open sees what the job sees.  A
    // symbolic link in its place is not followed, and a file of another
    // owner than the job's is not written (a hard link planted there to
    // someone else's file, for a restore as root to overwrite): either is
    // replaced, as a missing file is created.
    UniqueFd out(::open(f.path.c_str(), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat st {};
    if (out.valid() && ::fstat(out.get(), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == f.uid) {
      if (auto r = copy_fd(in->get(), out.get(), f.size, "'" + f.path + "'"); !r) return fail(r.error());
      if (::ftruncate(out.get(), static_cast<off_t>(f.size)) < 0) return fail(sys_error("cannot set its size"));
      if (auto r = sys::fsync_fd(out.get(), "'" + f.path + "'"); !r) return fail(r.error());
      continue;
    }
    if (!out.valid() && errno != ENOENT && errno != ELOOP && errno != ENXIO && errno != EISDIR)
      return fail(sys_error("cannot open it"));
    out.reset();
    // Made anew, never opened through whatever is at its name.
    std::string tmp = f.path + ".cryo-restore";
    (void)::unlink(tmp.c_str());
    auto created = sys::open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, f.mode);
    if (!created) return fail(created.error());
    if (auto r = copy_fd(in->get(), created->get(), f.size, "'" + f.path + "'"); !r) return fail(r.error());
    ::fchmod(created->get(), f.mode);
    if (::fchown(created->get(), f.uid, f.gid) < 0 && ::getuid() == 0) return fail(sys_error("cannot set the owner"));
    if (auto r = sys::fsync_fd(created->get(), "'" + tmp + "'"); !r) return fail(r.error());
    if (auto r = sys::rename(tmp, f.path); !r) return fail(r.error());
  }
  return {};
}

namespace {

// The paths of the Unix sockets in a network namespace's table
// (/proc/PID/net/unix: "Num RefCount Protocol Flags Type St Inode Path"),
// by inode; abstract names ("@...") and unbound sockets are left out.
std::map<ino_t, std::string> unix_socket_paths(const std::string& table) {
  std::map<ino_t, std::string> out;
  auto text = sys::read_file(table);
  if (!text) return out;
  std::istringstream lines(*text);
  std::string line;
  std::getline(lines, line);  // the header
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string field, path;
    unsigned long long inode = 0;
    for (int k = 0; k < 6; k++) f >> field;
    f >> inode >> std::ws;
    std::getline(f, path);
    if (!path.empty() && path[0] != '@') out[static_cast<ino_t>(inode)] = path;
  }
  return out;
}

}  // namespace

std::vector<BoundSocket> bound_sockets(pid_t root, const std::set<dev_t>& own_devices) {
  std::vector<BoundSocket> out;
  std::map<std::string, std::map<ino_t, std::string>> by_net;  // the table of each network namespace
  for (pid_t pid : process_tree(root)) {
    std::string proc = "/proc/" + std::to_string(pid);
    auto fds = sys::list_dir(proc + "/fd");
    auto net = sys::readlink(proc + "/ns/net");
    if (!fds || !net) continue;  // it ended meanwhile
    for (const auto& fd : *fds) {
      auto link = sys::readlink(proc + "/fd/" + fd);
      if (!link || !link->starts_with("socket:[")) continue;
      auto [table, fresh] = by_net.try_emplace(*net);
      if (fresh) table->second = unix_socket_paths(proc + "/net/unix");
      auto named = table->second.find(static_cast<ino_t>(std::strtoull(link->c_str() + 8, nullptr, 10)));
      if (named == table->second.end()) continue;
      // A relative name, or one whose file is gone, is not on the job's own mounts.
      struct stat st {};
      if (named->second[0] == '/' && ::stat((proc + "/root" + named->second).c_str(), &st) == 0 &&
          own_devices.count(st.st_dev))
        continue;
      out.push_back({pid, named->second});
    }
  }
  return out;
}

std::vector<NeededFile> needed_files(pid_t root, const std::set<dev_t>& own_devices,
                                     const std::vector<SavedFile>& saved) {
  std::vector<NeededFile> out;
  std::set<std::string> seen;
  for (const auto& f : saved) seen.insert(f.path);
  // link: a /proc magic link to the file; path: where the job has it.
  auto add = [&](const std::string& link, const std::string& path) {
    if (path.empty() || path[0] != '/' || path.ends_with(" (deleted)") || seen.count(path)) return;
    auto st = sys::stat(link);
    if (!st || own_devices.count(st->st_dev) || !(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))) return;
    seen.insert(path);
    out.push_back({path, S_ISDIR(st->st_mode), S_ISREG(st->st_mode) ? static_cast<uint64_t>(st->st_size) : 0, ""});
  };
  for (pid_t pid : process_tree(root)) {
    std::string proc = "/proc/" + std::to_string(pid);
    for (const char* l : {"/exe", "/cwd"})
      if (auto p = sys::readlink(proc + l)) add(proc + l, *p);
    if (auto names = sys::list_dir(proc + "/fd"))
      for (const auto& fd : *names)
        if (auto p = sys::readlink(proc + "/fd/" + fd)) add(proc + "/fd/" + fd, *p);
    auto maps = sys::read_file(proc + "/maps");
    if (!maps) continue;
    std::istringstream lines(*maps);
    std::string line;
    while (std::getline(lines, line)) {
      auto slash = line.find(" /");
      if (slash == std::string::npos) continue;
      add(proc + "/map_files/" + line.substr(0, line.find(' ')), line.substr(slash + 1));
    }
  }
  return out;
}

void add_build_ids(std::vector<NeededFile>& files) {
  for (auto& f : files)
    if (!f.dir) f.build_id = elf_build_id(f.path);
}

std::string elf_build_id(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return "";
  Elf64_Ehdr eh;
  if (::pread(fd.get(), &eh, sizeof eh, 0) != sizeof eh || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 512)
    return "";
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  ssize_t want = static_cast<ssize_t>(ph.size() * sizeof(Elf64_Phdr));
  if (::pread(fd.get(), ph.data(), static_cast<size_t>(want), static_cast<off_t>(eh.e_phoff)) != want) return "";
  for (const auto& p : ph) {
    if (p.p_type != PT_NOTE || p.p_filesz > 65536) continue;
    std::string notes(p.p_filesz, '\0');
    if (::pread(fd.get(), notes.data(), notes.size(), static_cast<off_t>(p.p_offset)) != static_cast<ssize_t>(notes.size()))
      continue;
    for (size_t at = 0; at + sizeof(Elf64_Nhdr) <= notes.size();) {
      Elf64_Nhdr n;
      std::memcpy(&n, notes.data() + at, sizeof n);
      size_t name = at + sizeof n, desc = name + ((n.n_namesz + 3) & ~3u), next = desc + ((n.n_descsz + 3) & ~3u);
      if (next > notes.size()) break;
      if (n.n_type == NT_GNU_BUILD_ID && n.n_namesz == 4 && std::memcmp(notes.data() + name, "GNU", 4) == 0) {
        std::string hex;
        for (size_t i = 0; i < n.n_descsz; i++) hex += fmt::format("{:02x}", static_cast<unsigned char>(notes[desc + i]));
        return hex;
      }
      at = next;
    }
  }
  return "";
}

}  // namespace cryo::job
