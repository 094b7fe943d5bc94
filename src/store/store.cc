#include "store/store.h"

#include <fcntl.h>
#include <ftw.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fmt/format.h>

#include "base/fault.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/sys.h"

namespace cryo::store {

namespace {

bool is_id(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Regular files below dir, as paths relative to it, sorted.
Result<std::vector<std::string>> files_below(const std::string& dir) {
  std::vector<std::string> out;
  std::vector<std::string> todo{""};
  while (!todo.empty()) {
    std::string rel = todo.back();
    todo.pop_back();
    auto names = sys::list_dir(rel.empty() ? dir : dir + "/" + rel);
    if (!names) return names.error();
    for (const auto& n : *names) {
      std::string r = rel.empty() ? n : rel + "/" + n;
      auto st = sys::lstat(dir + "/" + r);
      if (!st) return st.error();
      if (S_ISDIR(st->st_mode))
        todo.push_back(r);
      else
        out.push_back(r);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status fsync_dirs_below(const std::string& dir) {
  std::vector<std::string> todo{dir};
  while (!todo.empty()) {
    std::string d = todo.back();
    todo.pop_back();
    CRYO_TRY(sys::fsync_path(d));
    auto names = sys::list_dir(d);
    if (!names) return names.error();
    for (const auto& n : *names) {
      auto st = sys::lstat(d + "/" + n);
      if (st && S_ISDIR(st->st_mode)) todo.push_back(d + "/" + n);
    }
  }
  return {};
}

}  // namespace

std::string default_root() {
  if (const char* s = std::getenv("CRYO_STORE"); s && *s) return s;
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return std::string(x) + "/cryo";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/tmp") + "/.local/share/cryo";
}

Status validate_job_name(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 64 && name[0] != '.' &&
            std::all_of(name.begin(), name.end(), [](char c) {
              return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
            });
  if (!ok)
    return make_error("invalid job name '" + name + "'")
        .with_hint("use up to 64 letters, digits, '.', '_' or '-', not starting with '.'");
  return {};
}

Result<std::vector<std::string>> list_jobs(const std::string& root) {
  if (!sys::exists(root)) return std::vector<std::string>{};
  auto names = sys::list_dir(root);
  if (!names) return names.error();
  std::vector<std::string> jobs;
  for (const auto& n : *names)
    if (n[0] != '.' && sys::exists(root + "/" + n + "/job.json")) jobs.push_back(n);
  return jobs;
}

JobDir::JobDir(std::string root, std::string name)
    : root_(std::move(root)), name_(std::move(name)), path_(root_ + "/" + name_) {}

bool JobDir::exists() const { return sys::exists(path_); }

Status JobDir::create() {
  CRYO_TRY(validate_job_name(name_));
  if (auto st = sys::mkdir_p(root_, 0755); !st) {
    Error e = st.error().context("cannot create the store");
    if (e.code == EROFS) e.hint = "the store is on a read-only file system: choose another with --store";
    return e;
  }
  // mkdir is the claim on the name: of two concurrent creators, one fails.
  if (::mkdir(path_.c_str(), 0700) < 0) {
    if (errno == EEXIST)
      return make_error("job '" + name_ + "' already exists in " + root_)
          .with_hint("continue it with 'cryo restore " + name_ + "', delete it with 'cryo rm " + name_ +
                     "', or pick another --name");
    Error e = sys_error("cannot create job directory '" + path_ + "'");
    if (e.code == EROFS) e.hint = "the store is on a read-only file system: choose another with --store";
    if (e.code == ENOSPC) e.hint = "the store's disk is full: free space there, or choose another --store";
    if (e.code == EACCES) e.hint = "choose a store you can write to with --store or CRYO_STORE";
    return e;
  }
  return sys::mkdir_p(path_ + "/checkpoints", 0700);
}

Status JobDir::check_access() const {
  if (!exists())
    return make_error("no job named '" + name_ + "' in " + root_)
        .with_hint("'cryo ls' lists the jobs; use --store or CRYO_STORE if the job is in another store");
  auto st = sys::stat(path_);
  if (!st) return st.error();
  uid_t me = ::getuid();
  if (me != 0 && st->st_uid != me)
    return make_error("job '" + name_ + "' belongs to user " + sys::user_name(st->st_uid) +
                      "; you are " + sys::user_name(me))
        .with_hint("only its owner or root may use it");
  return {};
}

Result<std::vector<std::string>> JobDir::checkpoint_ids() const {
  auto names = sys::list_dir(path_ + "/checkpoints");
  if (!names) return names.error();
  std::vector<std::string> ids;
  for (const auto& n : *names)
    if (is_id(n)) ids.push_back(n);
  return ids;  // fixed-width ids sort numerically
}

Result<std::string> JobDir::latest_id() const {
  std::string link = path_ + "/latest";
  if (!sys::exists(link)) return std::string();
  auto target = sys::readlink(link);
  if (!target) return target.error();
  auto pos = target->rfind('/');
  std::string id = pos == std::string::npos ? *target : target->substr(pos + 1);
  if (!is_id(id)) return make_error("the link '" + link + "' points to '" + *target + "', not to a checkpoint");
  return id;
}

Result<Manifest> JobDir::load_manifest(const std::string& id) const {
  if (!is_id(id) || !sys::exists(checkpoint_dir(id)))
    return make_error("job '" + name_ + "' has no checkpoint '" + id + "'")
        .with_hint("'cryo status " + name_ + "' lists its checkpoints");
  std::string path = checkpoint_dir(id) + "/manifest.json";
  auto text = sys::read_file(path);
  if (!text) return text.error().with_hint("this checkpoint is incomplete or damaged; restore an older one with --from");
  return manifest_from_json(*text, path);
}

Result<Pending> JobDir::begin() {
  std::string cdir = path_ + "/checkpoints";
  auto names = sys::list_dir(cdir);
  if (!names) return names.error();
  int next = 1;
  for (const auto& n : *names) {
    if (is_id(n)) next = std::max(next, std::stoi(n) + 1);
    // .tmp-<id>-<pid> and .trash-<id>-<pid> of writers that are gone.
    if (n.rfind(".tmp-", 0) == 0 || n.rfind(".trash-", 0) == 0) {
      pid_t owner = std::atoi(n.substr(n.rfind('-') + 1).c_str());
      if (!sys::pid_alive(owner)) {
        CRYO_LOG("store", info) << "removing leftover " << n;
        (void)sys::remove_tree(cdir + "/" + n);
      } else if (n.rfind(".tmp-", 0) == 0) {
        next = std::max(next, std::atoi(n.substr(5).c_str()) + 1);
      }
    }
  }
  Pending p;
  p.id = fmt::format("{:04d}", next);
  p.dir = fmt::format("{}/.tmp-{}-{}", cdir, p.id, ::getpid());
  if (::mkdir(p.dir.c_str(), 0700) < 0) {
    Error e = sys_error("cannot create checkpoint directory '" + p.dir + "'");
    if (e.code == ENOSPC) e.hint = "the store's disk is full: free space there, or choose another --store";
    if (e.code == EROFS) e.hint = "the store is on a read-only file system";
    return e;
  }
  CRYO_TRY(sys::mkdir_p(p.dir + "/images", 0700));
  return p;
}

void JobDir::abort(const Pending& p) { (void)sys::remove_tree(p.dir); }

Status JobDir::commit(const Pending& p, Manifest& m, const ProgressFn& progress) {
  auto rels = files_below(p.dir);
  if (!rels) return rels.error();
  uint64_t total = 0;
  for (const auto& r : *rels) total += sys::stat(p.dir + "/" + r).value().st_size;
  uint64_t done_before = 0;
  double hashing = 0, syncing = 0;
  m.files.clear();
  m.id = p.id;
  for (const auto& r : *rels) {
    std::string path = p.dir + "/" + r;
    double t0 = sys::now();
    auto sum = hash_file(path, [&](uint64_t d) {
      if (progress) progress("checksumming", done_before + d, total);
    });
    if (!sum) return sum.error();
    auto fd = sys::open(path, O_RDONLY);
    if (!fd) return fd.error();
    auto st = sys::fstat(fd->get(), "'" + path + "'");
    if (!st) return st.error();
    double t1 = sys::now();
    CRYO_TRY(sys::fsync_fd(fd->get(), "'" + path + "'"));
    hashing += t1 - t0;
    syncing += sys::now() - t1;
    m.files.push_back({r, static_cast<uint64_t>(st->st_size), *sum});
    done_before += st->st_size;
    fault_point("store.checksum");
  }
  m.total_bytes = total;
  CRYO_LOG("store", info) << "checkpoint " << p.id << ": " << total << " bytes checksummed in " << hashing
                          << " s, synced in " << syncing << " s";
  if (progress) progress("syncing", total, total);
  fault_point("store.before_manifest");
  CRYO_TRY(sys::write_file_atomic(p.dir + "/manifest.json", to_json(m).dump(2) + "\n", 0600));
  CRYO_TRY(fsync_dirs_below(p.dir));
  fault_point("store.before_rename");
  CRYO_TRY(sys::rename(p.dir, checkpoint_dir(p.id)));
  CRYO_TRY(sys::fsync_path(path_ + "/checkpoints"));
  fault_point("store.before_latest");
  CRYO_TRY(sys::symlink_atomic("checkpoints/" + p.id, path_ + "/latest"));
  return {};
}

Result<std::vector<std::string>> JobDir::apply_retention(int keep) {
  std::vector<std::string> removed;
  if (keep <= 0) return removed;
  auto ids = checkpoint_ids();
  if (!ids) return ids.error();
  auto latest = latest_id();
  if (!latest) return latest.error();
  int excess = static_cast<int>(ids->size()) - keep;
  for (const auto& id : *ids) {
    if (excess <= 0) break;
    if (id == *latest) continue;
    CRYO_TRY(remove_checkpoint(id));
    removed.push_back(id);
    excess--;
  }
  return removed;
}

Status JobDir::remove_checkpoint(const std::string& id) {
  // Rename first so that a crash never leaves a half-deleted checkpoint
  // under a committed name.
  std::string trash = fmt::format("{}/checkpoints/.trash-{}-{}", path_, id, ::getpid());
  CRYO_TRY(sys::rename(checkpoint_dir(id), trash));
  (void)sys::fsync_path(path_ + "/checkpoints");
  return sys::remove_tree(trash);
}

Status JobDir::verify(const std::string& id, const ProgressFn& progress) const {
  auto m = load_manifest(id);
  if (!m) return m.error();
  std::string dir = checkpoint_dir(id);
  auto hint = "this checkpoint is damaged and will not be restored; restore an older one with "
              "'cryo restore " + name_ + " --from ID' or take a new checkpoint";
  auto rels = files_below(dir);
  if (!rels) return rels.error();
  for (const auto& r : *rels) {
    if (r == "manifest.json") continue;
    bool listed = std::any_of(m->files.begin(), m->files.end(), [&](const FileSum& f) { return f.path == r; });
    if (!listed) return make_error("checkpoint " + id + " of job '" + name_ + "' has a file its manifest does not list: " + dir + "/" + r).with_hint(hint);
  }
  uint64_t done_before = 0;
  for (const auto& f : m->files) {
    std::string path = dir + "/" + f.path;
    auto st = sys::stat(path);
    if (!st) return make_error("checkpoint " + id + " of job '" + name_ + "' is missing " + path).with_hint(hint);
    if (static_cast<uint64_t>(st->st_size) != f.size)
      return make_error(fmt::format("checkpoint {} of job '{}' is damaged: {} has {} bytes, its manifest says {}",
                                    id, name_, path, st->st_size, f.size)).with_hint(hint);
    auto sum = hash_file(path, [&](uint64_t d) {
      if (progress) progress("verifying", done_before + d, m->total_bytes);
    });
    if (!sum) return sum.error();
    if (*sum != f.xxh3)
      return make_error("checkpoint " + id + " of job '" + name_ + "' is damaged: the checksum of " + path +
                        " does not match its manifest").with_hint(hint);
    done_before += f.size;
  }
  return {};
}

Status JobDir::remove() {
  std::string trash = fmt::format("{}/.trash-{}-{}", root_, name_, ::getpid());
  CRYO_TRY(sys::rename(path_, trash));
  return sys::remove_tree(trash);
}

}  // namespace cryo::store
