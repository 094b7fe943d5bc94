#include "store/staging.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <thread>
#include <fmt/format.h>

#include "base/log.h"
#include "base/identity.h"
#include "base/sys.h"

namespace cryo::store {

std::string restore_log_name(const std::string& id) {
  return "criu-restore-" + id + "-" + std::to_string(static_cast<long>(sys::now())) + ".log";
}

namespace {

constexpr const char* kDefaultFastRoot = "/dev/shm/cryo";

std::string boot_id() {
  auto b = sys::read_file("/proc/sys/kernel/random/boot_id");
  if (!b) return "";
  std::string s = *b;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

Result<uint64_t> parse_size(const std::string& text) {
  auto bad = [&] {
    return make_error("invalid fast tier size '" + text + "'")
        .with_hint("give bytes with an optional K, M, G or T suffix (e.g. 8G), or a share of memory (e.g. 25%)");
  };
  if (text.empty()) return bad();
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || v < 0) return bad();
  std::string unit(end);
  if (unit == "%") return static_cast<uint64_t>(static_cast<double>(sys::mem_total()) * v / 100);
  static const std::pair<const char*, double> units[] = {
      {"", 1}, {"K", 1024.0}, {"M", 1024.0 * 1024}, {"G", 1024.0 * 1024 * 1024}, {"T", 1024.0 * 1024 * 1024 * 1024}};
  for (const auto& [u, mul] : units)
    if (unit == u || (unit.size() == 2 && unit[0] == u[0] && (unit[1] == 'B' || unit[1] == 'i')))
      return static_cast<uint64_t>(v * mul);
  return bad();
}

// Every id a directory's entries use: "0004", ".tmp-0004-PID", ".trash-0004-PID".
int max_id_in(const std::string& dir) {
  int best = 0;
  auto names = sys::list_dir(dir);
  if (!names) return 0;
  for (const auto& n : *names) {
    std::string s = n;
    if (s.rfind(".tmp-", 0) == 0) s = s.substr(5);
    s = s.substr(0, s.find('-'));
    if (is_checkpoint_id(s)) best = std::max(best, std::atoi(s.c_str()));
  }
  return best;
}

}  // namespace

size_t remove_leftovers(const std::string& dir) {
  size_t n = 0;
  auto names = sys::list_dir(dir);
  if (!names) return 0;
  for (const auto& entry : *names) {
    const std::string& name = entry;
    if (name.rfind(".tmp-", 0) != 0 && name.rfind(".trash-", 0) != 0) continue;
    pid_t owner = std::atoi(name.substr(name.rfind('-') + 1).c_str());
    if (sys::pid_alive(owner)) continue;
    CRYO_LOG("store", info) << "removing leftover " << dir << "/" << name;
    (void)sys::remove_tree(dir + "/" + name);
    n++;
  }
  return n;
}

namespace {

std::string staging_dir(const JobDir& job) { return job.store_file("staging"); }

// Moves a staged dump out of the way as .trash-ID-PID, which nothing reads
// and remove_leftovers removes once this process is gone; returns its path,
// or "" if it stays (a restore is reading the fast copy: it holds the
// copy's lock shared).
std::string set_aside(const Staged& s) {
  if (s.fast) {
    auto lock = sys::lock_file(s.dir + "/.lock", true, false);
    if (!lock) return "";
  }
  std::string parent = s.dir.substr(0, s.dir.rfind('/'));
  std::string trash = trash_path(parent, s.id);
  return sys::rename(s.dir, trash) ? trash : "";
}

// The fast copy at dir is a committed checkpoint (its store holds it), so
// dropping the copy loses nothing.
bool durable_elsewhere(const std::string& dir) {
  auto text = sys::read_file(dir + "/dump.json");
  if (!text) return false;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("store_job_dir")) return false;
  std::string id = j.value("id", "");
  return is_checkpoint_id(id) && sys::exists(j["store_job_dir"].get<std::string>() + "/checkpoints/" + id + "/manifest.json");
}

// Drops durable fast copies, oldest first, until `need` more bytes fit
// under the limit, `freeing` bytes of the tier being on their way out.  A
// copy a restore is reading is skipped.
void evict_for(const FastTier& tier, uint64_t need, uint64_t freeing) {
  struct Copy {
    double mtime;
    std::string dir;
  };
  std::vector<Copy> copies;
  auto jobs = sys::list_dir(tier.root);
  if (!jobs) return;
  for (const auto& j : *jobs)
    if (auto ids = sys::list_dir(tier.root + "/" + j))
      for (const auto& id : *ids)
        if (is_checkpoint_id(id)) {
          std::string d = tier.root + "/" + j + "/" + id;
          if (auto st = sys::stat(d)) copies.push_back({static_cast<double>(st->st_mtime), d});
        }
  std::sort(copies.begin(), copies.end(), [](const Copy& a, const Copy& b) { return a.mtime < b.mtime; });
  for (const auto& c : copies) {
    if (sys::tree_size(tier.root) + need <= tier.limit + freeing) return;
    if (!durable_elsewhere(c.dir)) continue;
    std::string id = c.dir.substr(c.dir.rfind('/') + 1);
    discard_staged({id, c.dir, true});
  }
}

// `freeing`: bytes of the tier set aside for removal, which still count in
// its size, its file system and the node's memory until they are removed.
bool fits_fast(const FastTier& tier, uint64_t estimate, uint64_t freeing) {
  uint64_t need = estimate + estimate / 16 + (16 << 20);
  auto used = [&] {
    uint64_t n = sys::tree_size(tier.root);
    return n > freeing ? n - freeing : 0;
  };
  if (used() + need > tier.limit) evict_for(tier, need, freeing);
  if (uint64_t u = used(); u + need > tier.limit) {
    CRYO_LOG("store", info) << "fast tier: " << u << " + " << need << " bytes exceed its limit " << tier.limit;
    return false;
  }
  auto space = sys::fs_space(tier.root);
  if (!space || space->available + freeing < need) return false;
  if (space->tmpfs) {
    // tmpfs pages come out of the same memory the job (and its restore) needs.
    uint64_t total = sys::mem_total();
    uint64_t reserve = std::max<uint64_t>(1ull << 30, total / 20);
    if (sys::mem_available() + freeing < need + reserve) {
      CRYO_LOG("store", info) << "fast tier: not enough free memory for " << need << " bytes";
      return false;
    }
  }
  return true;
}

// `armed`: a directory of make_armed_dir under parent, renamed into the
// pending one if it can be, rather than a new one made.
Result<Pending> make_pending(const JobDir& job, const std::string& parent, const std::string& id, bool fast,
                             const std::string& armed = "") {
  AsRoot root;
  if (auto st = sys::mkdir_p(parent, 0700); !st) return store_error(st.error());
  Pending p;
  p.id = id;
  p.fast = fast;
  p.job_dir = job.path();
  p.dir = temp_path(parent, id);
  if (!armed.empty() && armed.rfind(parent + "/", 0) == 0 && sys::rename(armed, p.dir)) {
    p.armed = true;
    return p;
  }
  if (::mkdir(p.dir.c_str(), 0700) < 0) return store_error(sys_error("cannot create checkpoint directory '" + p.dir + "'"));
  CRYO_TRY(sys::mkdir_p(p.dir + "/images", 0700));
  return p;
}

}  // namespace

Result<FastTier> FastTier::configure(const std::string& root_opt, const std::string& size_opt) {
  FastTier t;
  std::string root = root_opt.empty() ? kDefaultFastRoot : root_opt;
  if (root == "none") return t;
  std::string size = size_opt.empty() ? "50%" : size_opt;
  auto limit = parse_size(size);
  if (!limit) return limit.error();
  t.limit = *limit;
  // Shared by every user's jobs, like /tmp; each job's directory is its own.
  if (!sys::exists(root)) {
    AsRoot as_root;
    if (auto st = sys::mkdir_p(root, 0700); !st) {
      CRYO_LOG("store", info) << "no fast tier: " << st.error().message;
      return FastTier{};
    }
    ::chmod(root.c_str(), 01777);
  }
  t.root = root;
  return t;
}

namespace {
// "NAME-KEY": the job's directory in any fast tier.
std::string fast_dir_name(const JobDir& job) {
  auto real = sys::realpath(job.path());
  std::string key = real ? *real : job.path();
  return fmt::format("{}-{:08x}", job.name(), static_cast<uint32_t>(XXH3_64bits(key.data(), key.size())));
}
}  // namespace

std::string fast_dir(const FastTier& tier, const JobDir& job) {
  if (!tier.enabled()) return "";
  return tier.root + "/" + fast_dir_name(job);
}

namespace {
void note_fast_dir(const JobDir& job, const std::string& dir) {
  auto text = sys::read_file(job.store_file("fast-dirs"));
  std::string list = text ? *text : "";
  if (("\n" + list).find("\n" + dir + "\n") != std::string::npos) return;
  (void)sys::write_file_atomic(job.store_file("fast-dirs"), list + dir + "\n", 0600, false);
}
}  // namespace

std::vector<std::string> fast_dirs_used(const JobDir& job) {
  std::string own = "/" + fast_dir_name(job);
  std::vector<std::string> out;
  auto text = sys::read_file(job.store_file("fast-dirs"));
  std::istringstream lines(text ? *text : "");
  for (std::string d; std::getline(lines, d);) {
    struct stat st;
    bool named = d.size() > own.size() && d[0] == '/' && d.compare(d.size() - own.size(), own.size(), own) == 0 &&
                 d.find("/../") == std::string::npos && d.find("/./") == std::string::npos;
    if (named && ::lstat(d.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid()) out.push_back(d);
  }
  return out;
}

std::vector<std::string> fast_dirs(const FastTier& tier, const JobDir& job) {
  std::vector<std::string> out;
  if (tier.enabled()) out.push_back(fast_dir(tier, job));
  for (auto& d : fast_dirs_used(job))
    if (std::find(out.begin(), out.end(), d) == out.end()) out.push_back(std::move(d));
  return out;
}

class Removal {
 public:
  explicit Removal(std::vector<std::string> dirs)
      : thread_([dirs = std::move(dirs)] {
          AsRoot root;
          for (const auto& d : dirs) (void)sys::remove_tree(d);
        }) {}
  ~Removal() { thread_.join(); }
  Removal(const Removal&) = delete;
  Removal& operator=(const Removal&) = delete;

 private:
  std::thread thread_;
};

Result<std::string> make_armed_dir(const JobDir& job, const FastTier& tier) {
  if (!tier.enabled()) return make_error("no fast tier");
  std::string fast = fast_dir(tier, job);
  std::string dir;
  {
    AsRoot root;
    CRYO_TRY(sys::mkdir_p(fast, 0700));
    // A name never used before: an earlier armed CRIU's directory may still be
    // on its way to becoming a dump's (its worker renames it), and a CRIU
    // armed with a directory that was removed would dump into nothing.
    static int made = 0;
    for (;;) {
      dir = temp_path(fast, fmt::format("arm-{}", ++made));
      if (::mkdir(dir.c_str(), 0700) == 0) break;
      if (errno != EEXIST) return sys_error("cannot create '" + dir + "'");
    }
    CRYO_TRY(sys::mkdir_p(dir + "/images", 0700));
  }
  note_fast_dir(job, fast);
  return dir;
}

Result<Pending> begin_dump(const JobDir& job, const FastTier& tier, uint64_t estimate, const std::string& armed) {
  std::string fast = fast_dir(tier, job);
  // Dump directories are root's, in the fast tier and in the store's
  // staging alike (base/identity.h): CRIU writes there as root, and what it
  // wrote is read back to be signed.  The checkpoints are the job's owner's.
  remove_leftovers(job.store_file("checkpoints"));
  AsRoot root;
  std::vector<std::string> dirs = fast_dirs(tier, job);
  dirs.push_back(staging_dir(job));
  for (const auto& d : dirs) remove_leftovers(d);
  dirs.push_back(job.store_file("checkpoints"));
  int next = 0;
  if (auto ids = job.checkpoint_ids(); ids && !ids->empty()) next = std::atoi(ids->back().c_str());
  for (const auto& d : dirs) next = std::max(next, max_id_in(d));
  std::string id = fmt::format("{:04d}", next + 1);
  // The job's fast copies of durable checkpoints go: the new dump replaces
  // them, and reuses their memory (freshly freed pages come much faster
  // than untouched ones, where a hypervisor takes freed memory back).  They are freed while CRIU starts,
  // which takes far longer than that before it writes a page.
  std::vector<std::string> replaced;
  uint64_t freeing = 0;
  if (auto staged = list_staged(job, tier))
    for (const auto& s : *staged)
      if (s.fast && sys::exists(job.checkpoint_dir(s.id) + "/manifest.json"))
        if (auto trash = set_aside(s); !trash.empty()) {
          if (trash.rfind(tier.root + "/", 0) == 0) freeing += sys::tree_size(trash);
          replaced.push_back(std::move(trash));
        }
  bool fits = tier.enabled() && fits_fast(tier, estimate, freeing);
  auto removal = replaced.empty() ? nullptr : std::make_shared<Removal>(std::move(replaced));
  if (fits) {
    auto p = make_pending(job, fast, id, true, armed);
    if (p) {
      {
        AsOwner owner;
        note_fast_dir(job, fast);
      }
      p->freeing = removal;
      return p;
    }
    CRYO_LOG("store", info) << "fast tier: " << p.error().message << "; dumping to the store";
  }
  if (acting_for_other())
    return make_error(ErrorKind::no_space,
                      tier.enabled() ? "the node's fast tier has no room for this dump" : "this node has no fast tier")
        .with_hint("a job of a user other than root is dumped only into the fast tier, which only root may enter; the "
                   "admin sets its size in cryo.conf's [fast_tier] (docs/admin.md), or the job's memory must shrink");
  auto p = make_pending(job, staging_dir(job), id, false);
  if (p) p->freeing = removal;
  return p;
}

Result<Pending> begin_dump_in_store(const JobDir& job, const std::string& id) {
  AsRoot root;
  return make_pending(job, staging_dir(job), id, false);
}

Result<Staged> end_dump(const Pending& p, const Manifest& base) {
  AsRoot root;
  nlohmann::json j = to_json(base);
  j["id"] = p.id;
  j["boot_id"] = boot_id();
  j["store_job_dir"] = p.job_dir;
  // durable: a staged dump in the store must survive a crash of cryo, not
  // of the node (then boot_id differs and it is not used).
  CRYO_TRY(sys::write_file_atomic(p.dir + "/dump.json", j.dump(1) + "\n", 0600, false));
  std::string parent = p.dir.substr(0, p.dir.rfind('/'));
  std::string final_dir = parent + "/" + p.id;
  CRYO_TRY(sys::rename(p.dir, final_dir));
  return Staged{p.id, final_dir, p.fast};
}

void abort_dump(const Pending& p) {
  AsRoot root;
  (void)sys::remove_tree(p.dir);
}

std::string keep_failed_dump_log(const JobDir& job, const Pending& p) {
  auto log = [&] {
    AsRoot root;
    return sys::read_file(p.dir + "/" + kDumpLog);
  }();
  if (!log) return "";
  std::string logs = job.file(JobFile::criu_logs);
  // A zero-padded time in microseconds: the names sort oldest first, and
  // failures of the same checkpoint id in one second keep apart.
  std::string path = fmt::format("{}/criu-dump-{}-failed-{:016}.log", logs, p.id,
                                 static_cast<long long>(sys::now() * 1e6));
  if (!sys::mkdir_p(logs, 0700) || !sys::write_file_atomic(path, *log, 0600, false)) return "";
  if (auto names = sys::list_dir(logs)) {
    std::vector<std::string> failed;
    for (const auto& n : *names)
      if (n.rfind("criu-dump-", 0) == 0 && n.find("-failed-") != std::string::npos) failed.push_back(n);
    std::sort(failed.begin(), failed.end(), [](const std::string& a, const std::string& b) {
      return a.substr(a.find("-failed-")) < b.substr(b.find("-failed-"));
    });
    for (size_t i = 0; i + kFailedDumpLogs < failed.size(); i++) (void)sys::remove_tree(logs + "/" + failed[i]);
  }
  return path;
}

Result<std::vector<Staged>> list_staged(const JobDir& job, const FastTier& tier) {
  AsRoot root;
  std::vector<Staged> out;
  std::string boot = boot_id();
  std::vector<std::pair<std::string, bool>> dirs;
  for (auto& d : fast_dirs(tier, job)) dirs.emplace_back(std::move(d), true);
  dirs.emplace_back(staging_dir(job), false);
  for (const auto& [dir, fast] : dirs) {
    if (!sys::exists(dir)) continue;
    auto names = sys::list_dir(dir);
    if (!names) return names.error();
    for (const auto& n : *names) {
      if (!is_checkpoint_id(n)) continue;
      Staged s{n, dir + "/" + n, fast};
      auto m = sys::read_file(s.dir + "/dump.json");
      if (!m) continue;  // being deleted
      auto j = nlohmann::json::parse(*m, nullptr, false);
      if (!j.is_object() || j.value("boot_id", "") != boot) {
        CRYO_LOG("store", info) << "dropping " << s.dir << ": written before this boot";
        discard_staged(s);
        continue;
      }
      out.push_back(s);
    }
  }
  std::sort(out.begin(), out.end(), [](const Staged& a, const Staged& b) { return a.id < b.id || (a.id == b.id && a.fast); });
  return out;
}

Result<Manifest> load_dump_manifest(const Staged& s) {
  AsRoot root;
  std::string path = s.dir + "/dump.json";
  auto text = sys::read_file(path);
  if (!text) return text.error();
  return manifest_from_json(*text, path);
}

void discard_staged(const Staged& s) {
  AsRoot root;
  if (auto trash = set_aside(s); !trash.empty()) (void)sys::remove_tree(trash);
}

std::vector<FastCopy> list_fast_copies(const FastTier& tier) {
  AsRoot root;
  std::vector<FastCopy> out;
  if (!tier.enabled()) return out;
  std::string boot = boot_id();
  // Anyone may write in the tier: only real directories count, so that a
  // planted link never leads the sweep (and the lock it takes) elsewhere.
  auto real_dir = [](const std::string& path) {
    auto st = sys::lstat(path);
    return st && S_ISDIR(st->st_mode);
  };
  auto jobs = sys::list_dir(tier.root);
  if (!jobs) return out;
  for (const auto& j : *jobs) {
    if (!real_dir(tier.root + "/" + j)) continue;
    auto ids = sys::list_dir(tier.root + "/" + j);
    if (!ids) continue;
    for (const auto& id : *ids) {
      FastCopy c;
      c.dir = tier.root + "/" + j + "/" + id;
      if (!is_checkpoint_id(id) || !real_dir(c.dir)) continue;
      c.id = id;
      auto text = sys::read_file(c.dir + "/dump.json");
      if (!text) continue;  // being deleted
      auto m = nlohmann::json::parse(*text, nullptr, false);
      if (!m.is_object()) continue;
      c.store_job_dir = m.value("store_job_dir", "");
      c.stale = m.value("boot_id", "") != boot;
      c.durable = durable_elsewhere(c.dir);
      out.push_back(std::move(c));
    }
  }
  return out;
}

std::vector<FastCopy> sweep_fast_tier(const FastTier& tier,
                                      const std::function<bool(const std::string& store_job_dir)>& keep) {
  AsRoot root;
  std::vector<FastCopy> freed;
  for (auto& c : list_fast_copies(tier)) {
    if (c.store_job_dir.empty()) continue;
    bool job_gone = !sys::exists(c.store_job_dir) && sys::exists(c.store_job_dir.substr(0, c.store_job_dir.rfind('/')));
    if (!job_gone && !c.stale && !(c.durable && !keep(c.store_job_dir))) continue;
    Staged s{c.id, c.dir, true};
    if (auto trash = set_aside(s); !trash.empty()) {
      CRYO_LOG("store", info) << "freeing the fast copy " << c.dir
                              << (job_gone ? ": its job is gone" : c.stale ? ": written before this boot" : "");
      (void)sys::remove_tree(trash);
      freed.push_back(std::move(c));
    }
  }
  return freed;
}

void free_durable_copies(const FastTier& tier, const JobDir& job) {
  AsRoot root;
  for (const auto& d : fast_dirs(tier, job)) {
    auto ids = sys::list_dir(d);
    if (!ids) continue;
    for (const auto& id : *ids)
      if (is_checkpoint_id(id) && durable_elsewhere(d + "/" + id)) discard_staged(Staged{id, d + "/" + id, true});
  }
}

Result<UniqueFd> hold_copy(const Staged& s, bool wait) {
  AsRoot root;
  auto lock = sys::lock_file(s.dir + "/.lock", false, wait);
  if (!lock) return lock.error();
  if (!sys::exists(s.dir + "/dump.json")) return make_error("the fast copy " + s.dir + " was removed");
  return lock;
}

}  // namespace cryo::store
