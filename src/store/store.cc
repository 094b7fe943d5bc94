#include "store/store.h"

#include <fcntl.h>
#include <ftw.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fmt/format.h>

#include "base/fault.h"
#include "base/log.h"
#include "base/identity.h"
#include "base/sys.h"
#include "store/signing.h"

namespace cryo::store {

bool is_checkpoint_id(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

namespace {
Tuning g_tuning;
}  // namespace

void configure(const Tuning& t) { g_tuning = t; }
const Tuning& tuning() { return g_tuning; }

Status validate_job_name(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 64 && name[0] != '.' &&
            std::all_of(name.begin(), name.end(), [](char c) {
              return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
            });
  if (!ok)
    return make_error(ErrorKind::usage, "invalid job name '" + name + "'")
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

Error store_error(Error e) {
  if (e.code == ENOSPC) e.hint = "the store's disk is full: free space there, or choose another --store";
  if (e.code == EROFS) e.hint = "the store is on a read-only file system: choose a writable one with --store";
  if (e.code == EDQUOT) e.hint = "your disk quota on the store is used up";
  if (e.code == EACCES) e.hint = "choose a store you can write to with --store or CRYO_STORE";
  return e;
}

std::string temp_path(const std::string& parent, const std::string& what) {
  return fmt::format("{}/.tmp-{}-{}", parent, what, ::getpid());
}
std::string trash_path(const std::string& parent, const std::string& what) {
  return fmt::format("{}/.trash-{}-{}", parent, what, ::getpid());
}
bool is_temporary(const std::string& name) { return name.rfind(".tmp-", 0) == 0; }

JobDir::JobDir(std::string root, std::string name)
    : root_(std::move(root)), name_(std::move(name)), path_(root_ + "/" + name_) {}

std::string JobDir::file(JobFile f) const {
  const char* name = "";
  switch (f) {
    case JobFile::config: name = "job.json"; break;
    case JobFile::state: name = "state.json"; break;
    case JobFile::lock: name = "lock"; break;
    case JobFile::control: name = "control.sock"; break;
    case JobFile::events: name = "cryo.log"; break;
    case JobFile::criu_logs: name = "logs"; break;
    case JobFile::init_copy: name = "cryo-init"; break;
    case JobFile::mpi: name = "mpi"; break;
    case JobFile::agents: name = "agents"; break;
    case JobFile::hostfile: name = "hostfile"; break;
    case JobFile::container: name = "container.json"; break;
    case JobFile::container_cut: name = "container-cut"; break;
    case JobFile::container_stopping: name = "container-stopping"; break;
    case JobFile::blocked_ip: name = "blocked-ip"; break;
    case JobFile::criu_conf: name = "criu.conf"; break;
    case JobFile::criu_hook: name = "criu-hook"; break;
    case JobFile::rootfs: name = "rootfs"; break;
    case JobFile::flush_lock: name = "flush.lock"; break;
  }
  return path_ + "/" + name;
}

JobDir JobDir::part(uint32_t k) const { return JobDir(path_ + "/parts", "p" + std::to_string(k)); }

Status JobDir::link_outputs(uint32_t k) const {
  for (const char* stream : {"stdout", "stderr"}) {
    std::string target = fmt::format("parts/p{}/{}.log", k, stream);
    if (::symlink(target.c_str(), output_log(stream).c_str()) < 0 && errno != EEXIST)
      return sys_error("cannot link " + output_log(stream) + " to " + target);
  }
  return {};
}

uint64_t JobDir::stored_bytes() const { return sys::disk_usage(path_ + "/chunks") + sys::disk_usage(checkpoints_dir()); }

bool JobDir::exists() const { return sys::exists(path_); }

Status check_store_private(const std::string& root) {
  uid_t me = acting_for().uid;
  if (me == 0) return {};
  auto st = sys::stat(root);
  if (!st) return st.error();
  if (st->st_uid != me)
    return make_error(ErrorKind::denied, "the store " + root + " belongs to user " + sys::user_name(st->st_uid) +
                      ", not to you (" + sys::user_name(me) + ")")
        .with_hint("use your own store: the site's cryo.conf names it (docs/admin.md)");
  if (st->st_mode & 077)
    return make_error(ErrorKind::denied, fmt::format("the store {} can be read or written by other users (mode {:04o})",
                                                     root, st->st_mode & 07777))
        .with_hint("make it yours alone: chmod 700 " + root);
  return {};
}

Status JobDir::create() {
  CRYO_TRY(validate_job_name(name_));
  if (auto st = sys::mkdir_p(root_, 0700); !st) return store_error(st.error().context("cannot create the store"));
  CRYO_TRY(check_store_private(root_));
  // mkdir is the claim on the name: of two concurrent creators, one fails.
  if (::mkdir(path_.c_str(), 0700) < 0) {
    if (errno == EEXIST)
      return make_error("job '" + name_ + "' already exists in " + root_)
          .with_hint("continue it with 'cryo restore " + name_ + "', delete it with 'cryo rm " + name_ +
                     "', or pick another --name");
    return store_error(sys_error("cannot create job directory '" + path_ + "'"));
  }
  return sys::mkdir_p(path_ + "/checkpoints", 0700);
}

Status JobDir::check_access() const {
  if (sys::exists(root_)) CRYO_TRY(check_store_private(root_));
  if (!exists())
    return make_error(ErrorKind::not_found, "no job named '" + name_ + "' in " + root_)
        .with_hint("'cryo ls' lists the jobs; use --store or CRYO_STORE if the job is in another store");
  auto st = sys::stat(path_);
  if (!st) return st.error();
  uid_t me = acting_for().uid;
  if (me != 0 && st->st_uid != me)
    return make_error(ErrorKind::denied, "job '" + name_ + "' belongs to user " + sys::user_name(st->st_uid) +
                      "; you are " + sys::user_name(me))
        .with_hint("only its owner or root may use it");
  return {};
}

Result<std::vector<std::string>> JobDir::checkpoint_ids() const {
  auto names = sys::list_dir(path_ + "/checkpoints");
  if (!names) return names.error();
  std::vector<std::string> ids;
  for (const auto& n : *names)
    if (is_checkpoint_id(n)) ids.push_back(n);
  return ids;  // fixed-width ids sort numerically
}

Result<std::string> JobDir::latest_id() const {
  std::string link = path_ + "/latest";
  if (!sys::exists(link)) return std::string();
  auto target = sys::readlink(link);
  if (!target) return target.error();
  auto pos = target->rfind('/');
  std::string id = pos == std::string::npos ? *target : target->substr(pos + 1);
  if (!is_checkpoint_id(id)) return make_error("the link '" + link + "' points to '" + *target + "', not to a checkpoint");
  return id;
}

Result<std::string> JobDir::manifest_text(const std::string& id) const {
  if (!is_checkpoint_id(id) || !sys::exists(checkpoint_dir(id)))
    return make_error(ErrorKind::not_found, "job '" + name_ + "' has no checkpoint '" + id + "'")
        .with_hint("'cryo status " + name_ + "' lists its checkpoints");
  auto text = sys::read_file(checkpoint_dir(id) + "/manifest.json");
  if (!text)
    return text.error()
        .of_kind(ErrorKind::corrupt)
        .with_hint("this checkpoint is incomplete or damaged; restore an older one with --from");
  return text;
}

Result<Manifest> JobDir::load_manifest(const std::string& id) const {
  auto text = manifest_text(id);
  if (!text) return text.error();
  return manifest_from_json(*text, checkpoint_dir(id) + "/manifest.json");
}

Result<std::string> JobDir::next_id() const {
  auto ids = checkpoint_ids();
  if (!ids) return ids.error();
  int last = ids->empty() ? 0 : std::atoi(ids->back().c_str());
  return fmt::format("{:04d}", last + 1);
}

Status JobDir::commit(Manifest& m, const std::function<Status(const std::string& dir)>& fill) const {
  std::string tmp = temp_path(checkpoints_dir(), m.id);
  (void)sys::remove_tree(tmp);
  if (::mkdir(tmp.c_str(), 0700) < 0) return store_error(sys_error("cannot create '" + tmp + "'"));
  auto st = [&]() -> Status {
    if (fill) CRYO_TRY(fill(tmp));
    fault_point("store.before_manifest");
    m.durable_seconds = sys::now() - m.created;
    auto text = signed_manifest_text(m);
    if (!text) return text.error();
    CRYO_TRY(sys::write_file_atomic(tmp + "/manifest.json", *text, 0600));
    fault_point("store.before_rename");
    CRYO_TRY(sys::rename(tmp, checkpoint_dir(m.id)));
    CRYO_TRY(sys::fsync_path(path_ + "/checkpoints"));
    fault_point("store.before_latest");
    return sys::symlink_atomic("checkpoints/" + m.id, path_ + "/latest");
  }();
  if (!st && sys::exists(tmp)) (void)sys::remove_tree(tmp);
  return st;
}

Result<std::vector<std::string>> JobDir::apply_retention(int keep) const {
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

Status JobDir::remove_checkpoint(const std::string& id) const {
  // Rename first so that a crash never leaves a half-deleted checkpoint
  // under a committed name.
  std::string trash = trash_path(checkpoints_dir(), id);
  CRYO_TRY(sys::rename(checkpoint_dir(id), trash));
  (void)sys::fsync_path(path_ + "/checkpoints");
  return sys::remove_tree(trash);
}

Status JobDir::remove() {
  std::string trash = trash_path(root_, name_);
  CRYO_TRY(sys::rename(path_, trash));
  return sys::remove_tree(trash);
}

}  // namespace cryo::store
